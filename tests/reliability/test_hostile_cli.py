"""Two processes on one run, a full disk, a read-only folder, undecodable arguments, a
megabyte of failure text, a video written over its own soundtrack (issue 17: 1, 8, 12, 13).

Every test drives the CLI as a user does (a subprocess) or the public API, against the
emulators over loopback (served by this process, so their request log counts what a
provider really received) or a real constrained resource (a small tmpfs, a read-only bind
mount), and asserts what the user sees: the exit code, one line, the rows, the creates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _reliability import ROUTES, point_at, reset

from abebeats_lab import Settings
from abebeats_lab._text import ERROR_TEXT_CHARS
from abebeats_lab._types import Route
from abebeats_lab.capabilities import capabilities_for
from abebeats_lab.cli.exits import EXIT_INTERRUPTED
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.errors import ValidationError
from abebeats_lab.musicvideo.pipeline import make_music_video
from abebeats_lab.run.api import compare, list_runs, load_run
from abebeats_lab.run.plan import new_run_id, plan_jobs
from abebeats_lab.store import DB_NAME, RunStore

CLI = [sys.executable, "-m", "abebeats_lab.cli"]
CLI_TIMEOUT_S = 180
START_TIMEOUT_S = 60.0
"""Generous: a child imports PyAV and numpy on a machine shared with other test runs."""
POLL_S = 0.02
RUNWAY = ROUTES["runway"]
PIKA = ROUTES["pika"]
LOCAL_JOB = ["--route", "local:procedural", "--duration", "1", "--resolution", "240p"]
REPEATS = 4
"""Twice Runway's concurrency (2): while the first two jobs run, two rows wait unsent."""
SLOW_RUN_S = 3.0
"""Jobs the SIGKILLed owner leaves running: the kill, once two ids are stored, normally finds
both still running (two rows unsent); short so that `resume` soon collects them."""
RUNWAY_SLOTS = capabilities_for(RUNWAY).concurrency
WAITED_ON = frozenset({"queued", "running"})
"""Row states of a job sent, answered and not yet seen finished."""
COLLECTED = frozenset({"downloading", "succeeded"})
"""Row states of a job seen finished (allowed only if its provider had finished it)."""
UNSENT = frozenset({"planned", "submitting"})
"""Row states without a job id: not sent yet, or its create's answer not stored."""
OWNED_RUN_S = 600.0
"""Far longer than two commands can take to start and finish: the owner is stopped instead."""
FAILURE_CHARS = 1_000_000
"""A megabyte of failure text (kept under any cap on a provider's whole answer)."""
READ_ONLY_MODE = 0o555
SMALL_DISK = "size=200k"
"""Room for the run store's first pages, not for eight jobs' rows and videos."""


def cli(*args: str | bytes, cwd: Path, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        **options,  # type: ignore[call-overload]
    )


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def stored(run_dir: Path) -> list[sqlite3.Row]:
    """Every job row, read the way another process would (empty until the schema exists)."""
    if not (run_dir / DB_NAME).exists():
        return []
    with contextlib.closing(sqlite3.connect(run_dir / DB_NAME, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        try:
            return list(db.execute("SELECT * FROM jobs ORDER BY run_id, prompt_index, repeat"))
        except sqlite3.OperationalError:
            return []


def wait_until(ready: Callable[[], bool], child: subprocess.Popen[str]) -> None:
    give_up = time.monotonic() + START_TIMEOUT_S
    while not ready():
        assert child.poll() is None, child.communicate()[1][-2000:]
        assert time.monotonic() < give_up, "the run never got there"
        time.sleep(POLL_S)


def two_in_flight(run_dir: Path) -> Callable[[], bool]:
    """Both concurrency slots hold a job whose id is stored; the other rows wait unsent."""
    return lambda: sum(bool(r["job_id"]) for r in stored(run_dir)) == 2


def ids_stored(run_dir: Path, count: int) -> Callable[[], bool]:
    """At least ``count`` rows have their job id stored."""
    return lambda: sum(bool(r["job_id"]) for r in stored(run_dir)) >= count


def check_killed_owner_rows(rows: list[sqlite3.Row], finished: set[str]) -> None:
    """Each row is as a SIGKILLed owner may leave it, given the jobs Runway had ``finished``.

    A row is seen finished only once its job is; a planned row is sent only once a job has
    freed one of Runway's slots (normally none has: two rows in flight, two planned).
    """
    for row in rows:
        job_id = row["job_id"]
        allowed = UNSENT if not job_id else WAITED_ON
        if job_id in finished:
            allowed |= COLLECTED
        assert row["state"] in allowed, (row["repeat"], row["state"], job_id, finished)
    taken = sum(row["state"] != "planned" for row in rows)
    freed = sum(row["job_id"] in finished for row in rows)
    assert taken <= RUNWAY_SLOTS + freed, [tuple(row) for row in rows]


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("abebeats-lab: ")
    return line


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    with Emulators(("runway", "pika"), Scenario.fast()) as emus:
        yield emus


@pytest.fixture
def env(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> Emulators:
    """Emulators reached through the variables a user sets, with fresh logs."""
    for provider in ("runway", "pika"):
        reset(emulators, provider, Scenario.fast())
    return point_at(emulators, monkeypatch)


# -- 1. one owner per run ---------------------------------------------------------------


def test_resume_of_a_live_run_is_refused_and_sends_nothing(env: Emulators, tmp_path: Path) -> None:
    # The owner's jobs outlast both commands below however slowly they start; it is stopped
    # (Ctrl-C) once they are done, so it owns the run throughout.
    runway = reset(env, "runway", Scenario.fast().with_times(0.05, OWNED_RUN_S))
    run = tmp_path / "run"
    args = ["compare", "a kite", "--route", RUNWAY, "--repeats", str(REPEATS), "--run-dir", "run"]
    owner = start(*args, cwd=tmp_path)
    wait_until(two_in_flight(run), owner)

    refused = cli("resume", "run", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    line = one_line(refused)
    assert f"pid {owner.pid}" in line and "compare" in line and "since" in line
    assert "nothing was sent" in line

    # Another run in the same folder is not held up by this one's lock: it finishes while
    # the owner still runs.
    other = cli("compare", "a boat", "--route", PIKA, "--run-dir", "run", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert owner.poll() is None, owner.communicate()[1][-2000:]

    owner.send_signal(signal.SIGINT)
    _, errors = owner.communicate(timeout=CLI_TIMEOUT_S)
    assert owner.returncode == EXIT_INTERRUPTED, errors[-2000:]
    runs = {r.kind + str(r.jobs): r for r in list_runs(run)}
    assert sorted(runs) == ["compare1", f"compare{REPEATS}"]
    mine = load_run(run, runs[f"compare{REPEATS}"].run_id).rows
    assert [r.state for r in mine] == ["canceled"] * REPEATS  # none finished, none failed
    sent = {r.job_id for r in mine if r.job_id}
    assert runway.count("create") == len(sent) == 2  # only the owner's two: resume sent none
    [boat] = load_run(run, runs["compare1"].run_id).rows
    assert boat.state == "succeeded"


def test_a_sigkilled_owner_leaves_no_lock_and_resume_finishes(
    env: Emulators, tmp_path: Path
) -> None:
    runway = reset(env, "runway", Scenario.fast().with_times(0.05, SLOW_RUN_S))
    run = tmp_path / "run"
    args = ["compare", "a kite", "--route", RUNWAY, "--repeats", str(REPEATS), "--run-dir", "run"]
    owner = start(*args, cwd=tmp_path)
    wait_until(ids_stored(run, RUNWAY_SLOTS), owner)
    owner.send_signal(signal.SIGKILL)
    owner.communicate()
    killed_at = time.time()
    finished = {j.id for j in runway.jobs.values() if j.phase(killed_at) == "succeeded"}
    rows_at_kill = stored(run)
    assert len(rows_at_kill) == REPEATS
    check_killed_owner_rows(rows_at_kill, finished)
    at_kill = {r["repeat"]: r["job_id"] for r in rows_at_kill}
    # A create cut off by the kill (normally none): Runway cannot look it up, so its row ends
    # ambiguous and is never sent again.
    cut_off = {r["repeat"] for r in rows_at_kill if r["state"] == "submitting"}

    done = cli("resume", "run", cwd=tmp_path)
    assert done.returncode == (1 if cut_off else 0), done.stderr[-2000:]
    if not cut_off:
        assert done.stdout.strip().splitlines()[-1] == f"all {REPEATS} job(s) succeeded"
    rows = load_run(run).rows
    expected = {i: "ambiguous" if i in cut_off else "succeeded" for i in at_kill}
    assert {r.repeat: r.state for r in rows} == expected
    for row in rows:  # the rows in flight were re-attached, not sent again
        if at_kill[row.repeat]:
            assert row.job_id == at_kill[row.repeat]
    paid = [r.job_id for r in rows if r.job_id]
    assert len(set(paid)) == len(paid)  # no job collected twice
    # One create per row; a cut-off create may not have reached Runway.
    assert REPEATS - len(cut_off) <= runway.count("create") <= REPEATS


# -- 8. arguments, read-only folders, a full disk ---------------------------------------


def test_undecodable_prompt_bytes_are_one_line_before_anything_is_written(tmp_path: Path) -> None:
    utf8 = {**os.environ, "LC_ALL": "C.UTF-8"}  # bytes that are not UTF-8 arrive as surrogates
    done = cli("compare", b"\xff a kite", *LOCAL_JOB, "--run-dir", "run", cwd=tmp_path, env=utf8)
    assert done.returncode == 2
    assert "UTF-8" in one_line(done)
    assert not (tmp_path / "run").exists() and not (tmp_path / "abebeats-runs").exists()
    with pytest.raises(ValidationError, match="UTF-8"):
        asyncio.run(compare("\udcff a kite", ["local:procedural"], run_dir=tmp_path / "api"))
    assert not (tmp_path / "api").exists()


def test_undecodable_path_bytes_still_work(tmp_path: Path) -> None:
    utf8 = {**os.environ, "LC_ALL": "C.UTF-8"}
    args = ["generate", "a kite", *LOCAL_JOB, "--run-dir", b"\xffrun", "--out", b"\xff.mp4"]
    done = subprocess.run(
        [*CLI, *args], cwd=tmp_path, capture_output=True, timeout=CLI_TIMEOUT_S, env=utf8
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == b"\xff.mp4"
    assert (tmp_path / os.fsdecode(b"\xff.mp4")).stat().st_size > 0


@contextlib.contextmanager
def mounted(*commands: list[str], target: Path) -> Iterator[Path]:
    """Run mount commands for ``target`` (skip when this machine does not allow them)."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", str(target)], capture_output=True, check=False)
            pytest.skip(f"cannot mount here ({done.stderr.strip()}): needs root in a VM or so")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def _pending_run(run_dir: Path) -> None:
    """A run with one job planned and never sent (what a crash before the first create leaves)."""
    run_id = new_run_id()
    settings = Settings(duration_s=1, resolution="240p")
    (planned,) = plan_jobs(run_id, ["a kite"], [Route.parse("local:procedural")], settings)
    with RunStore(run_dir) as store:
        store.add_run(run_id, "2026-01-01T00:00:00+00:00", "compare", {"prompts": ["a kite"]})
        store.insert([planned.row])


def test_a_read_only_run_folder_is_read_and_never_a_traceback(tmp_path: Path) -> None:
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    made = cli(
        "compare", "a kite", "--route", PIKA, "--emulate", "--run-dir", "shelf/run", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr[-2000:]
    _pending_run(shelf / "pending")
    bind = ["mount", "--bind", str(shelf), str(shelf)]
    read_only = ["mount", "-o", "remount,ro,bind", str(shelf)]
    with mounted(bind, read_only, target=shelf):
        with pytest.raises(OSError, match="Read-only"):
            (shelf / "probe").write_text("x")

        report = cli("report", "shelf/run", "--out", "elsewhere/report.html", cwd=tmp_path)
        assert report.returncode == 0, report.stderr[-2000:]
        assert "a kite" in (tmp_path / "elsewhere" / "report.html").read_text()
        listed = cli("runs", "shelf/run", cwd=tmp_path)
        assert listed.returncode == 0 and "1 succeeded" in listed.stdout, listed.stderr
        finished = cli("resume", "shelf/run", "--emulate", cwd=tmp_path)  # nothing left to do
        assert finished.returncode == 0, finished.stderr[-2000:]

        pending = cli("resume", "shelf/pending", cwd=tmp_path)
        assert pending.returncode == 1
        assert "Read-only file system" in one_line(pending)
        in_place = cli("report", "shelf/run", cwd=tmp_path)
        assert in_place.returncode == 1 and "Read-only file system" in one_line(in_place)
        # It says what to do, not which temporary file failed.
        assert "--out FILE" in one_line(in_place) and ".part" not in in_place.stderr
        scored = cli("score", "shelf/run", "--no-clip", cwd=tmp_path)
        assert scored.returncode == 1 and "Read-only file system" in one_line(scored)
        assert "writable copy" in one_line(scored) and "database" not in scored.stderr
    assert [r.state for r in load_run(shelf / "pending").rows] == ["planned"]


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[Path]:
    """``folder`` read-only to this process: chmod for a user; a read-only bind mount for root,
    whom chmod does not stop (skipped where neither is possible)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        folder.chmod(READ_ONLY_MODE)
        try:
            yield folder
        finally:
            folder.chmod(mode)
        return
    bind = ["mount", "--bind", str(folder), str(folder)]
    read_only = ["mount", "-o", "remount,ro,bind", str(folder)]
    with mounted(bind, read_only, target=folder):
        yield folder


KILLED_AFTER_A_CHECKPOINT = """
import contextlib, os, signal, sqlite3, sys
from pathlib import Path
from abebeats_lab import Settings
from abebeats_lab._types import JobState, Route
from abebeats_lab.run.plan import new_run_id, plan_jobs
from abebeats_lab.store import DB_NAME, RunStore

run_dir = Path(sys.argv[1])
run_id = new_run_id()
settings = Settings(duration_s=1, resolution="240p")
(planned,) = plan_jobs(run_id, ["a kite"], [Route.parse("local:procedural")], settings)
store = RunStore(run_dir)
store.add_run(run_id, "2026-01-01T00:00:00+00:00", "compare", {"prompts": ["a kite"]})
store.insert([planned.row])
store.flush()
with contextlib.closing(sqlite3.connect(run_dir / DB_NAME)) as db:
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the planned row reaches run.sqlite ...
store.save(planned.row.evolve(state=JobState.RUNNING, job_id="JOB-1"))  # ... this one does not
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_in_a_folder_this_user_cannot_write_shows_every_stored_row(
    env: Emulators, tmp_path: Path
) -> None:
    reset(env, "runway", Scenario.fast().with_times(0.05, OWNED_RUN_S))
    run = tmp_path / "run"
    args = ["compare", "a kite", "--route", RUNWAY, "--repeats", str(REPEATS), "--run-dir", "run"]
    owner = start(*args, cwd=tmp_path)
    wait_until(two_in_flight(run), owner)
    owner.send_signal(signal.SIGKILL)
    owner.communicate()
    assert (run / f"{DB_NAME}-wal").stat().st_size > 0  # its rows are in SQLite's log
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with unwritable(run):
        assert not os.access(run, os.W_OK)
        listed = cli("runs", "run", cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)})
        seen = [(r.repeat, r.state, r.job_id) for r in load_run(run).rows]
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert f"{REPEATS - RUNWAY_SLOTS} planned" in listed.stdout
    assert list(scratch.iterdir()) == []  # the private copy is gone
    assert sum(bool(job_id) for _, _, job_id in seen) == RUNWAY_SLOTS
    assert seen == [(r.repeat, r.state, r.job_id) for r in load_run(run).rows]  # as its owner


def test_a_run_killed_after_a_checkpoint_never_shows_its_older_rows(tmp_path: Path) -> None:
    run = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_A_CHECKPOINT, str(run)], timeout=CLI_TIMEOUT_S
    )
    assert killed.returncode == -signal.SIGKILL
    with unwritable(run):
        listed = cli("runs", "run", cwd=tmp_path)
        (row,) = load_run(run).rows
    assert listed.returncode == 0 and "1 running" in listed.stdout, listed.stderr[-2000:]
    assert (row.state, row.job_id) == ("running", "JOB-1")


def test_a_full_disk_is_a_line_naming_it_and_the_command_that_finishes(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    tmpfs = ["mount", "-t", "tmpfs", "-o", SMALL_DISK, "tmpfs", str(disk)]
    with mounted(tmpfs, target=disk):
        args = ["compare", "a kite", "--route", RUNWAY, "--repeats", "8", "--emulate", "--json"]
        done = cli(*args, "--run-dir", "disk/run", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    *lines, verdict = done.stderr.strip().splitlines()
    # Jobs left unfinished: one line per state says why, whatever their number.
    left = [line for line in lines if re.match(r"abebeats-lab: \d+ job\(s\) left ", line)]
    causes = [line for line in lines if line not in left]
    assert len(left) <= len({line.split()[4] for line in left}), left
    assert 1 <= len(causes) <= 2, causes  # a cause once, however many jobs it stopped
    assert all(line.startswith("abebeats-lab: ") for line in causes)
    assert any("disk is full" in line or "No space left" in line for line in causes), causes
    assert "of 8 job(s) did not succeed" in verdict
    assert "to finish the unfinished ones: abebeats-lab resume disk/run" in verdict


def test_jobs_left_downloading_print_why_once_and_resume_collects_them(
    env: Emulators, tmp_path: Path
) -> None:
    reset(env, "runway", Scenario.fast().with_times(0.05, SLOW_RUN_S))
    run = tmp_path / "run"
    outputs = run / "outputs"
    args = ["compare", "a kite", "--route", RUNWAY, "--repeats", "2", "--run-dir", "run"]
    child = subprocess.Popen(
        [*CLI, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_until(ids_stored(run, 2), child)
    # The outputs folder turns read-only while both jobs still run at the provider.
    bind = ["mount", "--bind", str(outputs), str(outputs)]
    read_only = ["mount", "-o", "remount,ro,bind", str(outputs)]
    try:
        with mounted(bind, read_only, target=outputs):
            stdout, stderr = child.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if child.poll() is None:  # the mount was refused (skipped): stop the run
            child.kill()
            child.communicate()

    assert child.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    [why] = [line for line in stderr.splitlines() if "left downloading" in line]
    assert why.startswith(f"abebeats-lab: 2 job(s) left downloading; why ({RUNWAY}): ")
    assert "Read-only file system" in why, why
    assert "2 of 2 job(s) did not succeed (2 downloading)" in stdout

    finished = cli("resume", "run", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [r.state for r in load_run(run).rows] == ["succeeded", "succeeded"]


# -- 12. a megabyte of failure text ------------------------------------------------------


def test_a_huge_failure_text_is_stored_and_printed_cut(env: Emulators, tmp_path: Path) -> None:
    huge = "x" * FAILURE_CHARS
    reset(env, "runway", Scenario.fast(fail=True, failure_message=huge))
    done = cli("compare", "a kite", "--route", RUNWAY, "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 1
    assert len(done.stdout) + len(done.stderr) < 4 * ERROR_TEXT_CHARS
    (row,) = load_run(tmp_path / "run").rows
    assert row.state == "failed" and row.error is not None
    assert row.error.startswith("x" * ERROR_TEXT_CHARS)
    assert len(row.error) < ERROR_TEXT_CHARS + 100
    noted = re.search(r"… \[([\d,]+) chars, cut\]$", row.error)
    assert noted and int(noted[1].replace(",", "")) > FAILURE_CHARS  # the full length (+ code)

    report = cli("report", "run", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    html = (tmp_path / "run" / "report.html").read_text()
    assert "x" * (ERROR_TEXT_CHARS + 1) not in html and "chars, cut]" in html

    fallback = cli("generate", "a kite", "--route", RUNWAY, "--run-dir", "gen", cwd=tmp_path)
    assert fallback.returncode == 1
    assert len(fallback.stderr) < 2 * ERROR_TEXT_CHARS


# -- 13. a music video written over its own soundtrack ------------------------------------


@pytest.mark.parametrize("out", ["track.wav", "./sub/../track.wav", "link.wav", "hard.wav"])
def test_music_video_out_equal_to_audio_is_refused(tmp_path: Path, out: str) -> None:
    track = tmp_path / "track.wav"
    track.write_bytes(b"RIFF the only copy of a song")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.wav").symlink_to(track)
    os.link(track, tmp_path / "hard.wav")
    before = sorted(p.name for p in tmp_path.iterdir())

    done = cli("music-video", "a kite", "--audio", "track.wav", "--out", out, cwd=tmp_path)
    assert done.returncode == 2
    line = one_line(done)
    assert "out=" in line and "audio track" in line
    with pytest.raises(ValidationError, match="audio track"):
        asyncio.run(make_music_video("a kite", track, out=tmp_path / out, run_dir=tmp_path / "r"))
    assert track.read_bytes() == b"RIFF the only copy of a song"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder either
