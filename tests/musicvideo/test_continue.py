"""An interrupted or killed music video, finished by the command it prints: never paid twice.

The provider's emulator runs in this process and outlives the CLI child, so its jobs and
requests show what was paid for: a job is paid unless the provider cancelled it before it
finished. Rows are checked against what the emulator had finished at the interrupt, never
against timings.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from abebeats_lab.emulator import Emulators, EmulatorState, Scenario
from abebeats_lab.errors import LabError
from abebeats_lab.media.probe import probe
from abebeats_lab.musicvideo.assemble import FPS, click_track, write_audio
from abebeats_lab.run.api import load_run, was_interrupted
from abebeats_lab.run.resume_plan import may_still_run
from abebeats_lab.store import DB_NAME, JobRow

CLI = [sys.executable, "-m", "abebeats_lab.cli"]
VEO = "veo:veo-3.1-fast-generate-001"
"""Cannot cancel a job: an interrupted one runs on, and is paid for."""
RUNWAY = "runway:gen4.5"
"""Is asked to cancel: whether it did, only the provider can say."""
TRACK_S = 12
BPM = 120
JOB_S = 4.0
"""Jobs long enough that the interrupt, once a job is sent, normally finds it running."""
CHILD_TIMEOUT_S = 120.0
"""Only a hung child reaches it."""
POLL_S = 0.02
EXIT_INTERRUPTED = 130
ONE_FRAME_S = 1 / FPS
IN_FLIGHT = frozenset({"queued", "running"})
COLLECTED = frozenset({"downloading", "succeeded"})
"""Row states of a job seen finished (allowed only if its provider had finished it)."""


def _shots(run_dir: Path) -> list[dict[str, Any]]:
    """The finished video's shot list: one entry per shot, with the clip it uses."""
    document = json.loads((run_dir / "music_video.shots.json").read_text(encoding="utf-8"))
    shots: list[dict[str, Any]] = document["shots"]
    return shots


def _db_rows(run_dir: Path) -> list[JobRow]:
    """The child's rows so far (none while it is still creating its store)."""
    if not (run_dir / DB_NAME).is_file():
        return []
    try:
        return load_run(run_dir).rows
    except (sqlite3.Error, LabError):  # the child is still writing its first run
        return []


def _wait_for(child: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not ready():
        assert child.poll() is None, child.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the music video never sent a job"
        time.sleep(POLL_S)


def _job(row: JobRow) -> str:
    """The emulator's id of a row's job (Veo's job id is an operation name ending in it)."""
    return (row.job_id or "").rsplit("/", 1)[-1]


def _finished(state: EmulatorState) -> set[str]:
    """Ids of the jobs the provider has finished (succeeded) by now."""
    now = time.time()
    return {j.id for j in state.jobs.values() if j.phase(now) == "succeeded"}


def _paid(state: EmulatorState) -> list[str]:
    """Ids of the jobs the provider made a video for: every job it did not cancel first."""
    now = time.time()
    return [j.id for j in state.jobs.values() if j.phase(now) != "canceled"]


def _check_interrupted(rows: Sequence[JobRow], finished: set[str]) -> None:
    """Each row is as a Ctrl-C leaves it: collected only if its job had finished, else
    cancelled by the interrupt (a shot not started yet has no row)."""
    for row in rows:
        if row.state in COLLECTED:
            assert _job(row) in finished, (row.key, row.job_id, finished)
        else:
            assert was_interrupted(row), (row.key, row.state, row.error)


@pytest.mark.parametrize("route", [VEO, RUNWAY], ids=["cannot-cancel", "asked-to-cancel"])
def test_an_interrupted_music_video_is_finished_by_the_printed_command_paying_once_per_shot(
    route: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_audio(tmp_path / "click.wav", click_track(BPM, TRACK_S, offset_s=0.3))
    provider = route.split(":")[0]
    with Emulators([provider], Scenario.fast().with_times(0.05, JOB_S)) as emulators:
        for name, value in emulators.env().items():
            monkeypatch.setenv(name, value)
        argv = ["music-video", "--audio", "click.wav", "harbour at dawn", "--route", route]
        child = subprocess.Popen(
            [*CLI, *argv, "--run-dir", "mv run"],
            cwd=tmp_path,
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        run_dir = tmp_path / "mv run"
        _wait_for(child, lambda: any(r.job_id and r.state in IN_FLIGHT for r in _db_rows(run_dir)))
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
        state = emulators.states[provider]
        finished = _finished(state)
        assert child.returncode == EXIT_INTERRUPTED, stderr[-2000:]
        command = stderr.strip().splitlines()[-1].strip()
        assert shlex.split(command) == ["abebeats-lab", *argv, "--run-dir", "mv run"]
        interrupted = load_run(run_dir).rows
        _check_interrupted(interrupted, finished)
        # Normally the job seen running is still running: it may finish, so it is collected.
        attached = {r.prompt_index: _job(r) for r in interrupted if may_still_run(r, False)}

        done = subprocess.run(
            [*CLI, *shlex.split(command)[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        creates, paid = state.count("create"), _paid(state)
    video = tmp_path / done.stdout.strip().splitlines()[-1]
    assert video.resolve() == (run_dir / "music_video.mp4").resolve()
    assert abs(probe(video).duration_s - TRACK_S) <= ONE_FRAME_S
    shots = _shots(run_dir)
    rows = load_run(run_dir).rows
    won = {r.prompt_index: r for r in rows if r.state == "succeeded"}
    assert sorted(won) == [s["index"] for s in shots]  # every shot has its clip
    for shot in shots:
        clip = tmp_path / shot["clip"]  # as the child wrote it: relative to its folder
        assert clip == run_dir / (won[shot["index"]].output_path or "missing")
        assert clip.is_file()
    # Each shot paid once: every job the provider did not cancel made the one clip it uses.
    assert sorted(paid) == sorted(map(_job, won.values()))
    if provider == "veo":  # Veo cannot cancel: every job it was sent is one it made
        assert creates == len(shots)
    for index, job_id in attached.items():
        if job_id in paid:  # the provider finished it: collected, not sent again
            assert _job(won[index]) == job_id


def test_a_killed_emulated_music_video_is_finished_by_asking_for_it_again(
    tmp_path: Path,
) -> None:
    write_audio(tmp_path / "click.wav", click_track(BPM, TRACK_S, offset_s=0.3))
    argv = [
        *("music-video", "harbour at dawn", "--audio", "click.wav", "--route", RUNWAY),
        *("--emulate", "--run-dir", "mv5"),
    ]
    child = subprocess.Popen(
        [*CLI, *argv], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    run_dir = tmp_path / "mv5"
    # The emulators' jobs take about a second: the kill normally finds some in flight (they
    # die with the child), a late one finds them finished; either way the same command ends it.
    _wait_for(child, lambda: any(r.job_id for r in _db_rows(run_dir)))
    child.kill()
    child.communicate()
    killed = load_run(run_dir).rows

    done = subprocess.run(
        [*CLI, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = load_run(run_dir).rows
    assert len({r.run_id for r in rows}) == 1  # the same run, continued
    won = {r.prompt_index: r for r in rows if r.state == "succeeded"}
    shots = _shots(run_dir)
    assert sorted(won) == [s["index"] for s in shots]
    for shot in shots:
        clip = tmp_path / shot["clip"]
        assert clip == run_dir / (won[shot["index"]].output_path or "missing")
    for row in killed:  # a clip made before the kill is the one the video uses
        if row.state == "succeeded":
            assert won[row.prompt_index].job_id == row.job_id
    assert abs(probe(run_dir / "music_video.mp4").duration_s - TRACK_S) <= ONE_FRAME_S
