"""The music-video pipeline end to end, offline, on generated audio only."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np
import pytest

from abebeats_lab import Settings
from abebeats_lab.capabilities import capabilities_for
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.errors import AllRoutesFailed, MissingKeyError, ValidationError
from abebeats_lab.media.probe import probe
from abebeats_lab.musicvideo.assemble import FPS, click_track, write_audio
from abebeats_lab.musicvideo.beats import BeatAnalysis, Section, analyze, probe_audio
from abebeats_lab.musicvideo.pipeline import (
    SHOT_CONCURRENCY,
    MusicVideo,
    generate_from_prompt,
    make_music_video,
)
from abebeats_lab.musicvideo.plan import plan_shots
from abebeats_lab.run.api import load_run
from abebeats_lab.store import DB_NAME, JobRow, RunStore
from abebeats_lab.waiting import WaitPolicy

ONE_FRAME_S = 1 / FPS
LOCAL = "local:procedural"
RUNWAY = "runway:gen4.5"
FAST = WaitPolicy(deadline_s=60, min_interval_s=0.05, max_interval_s=0.3)
START_TIMEOUT_S = 60.0
POLL_S = 0.01
LOW = Settings(resolution="240p")
"""Cheap local clips."""


def _stream_seconds(path: Path, kind: str) -> list[Fraction]:
    with av.open(str(path)) as container:
        streams = container.streams.audio if kind == "audio" else container.streams.video
        return [Fraction(s.duration) * s.time_base for s in streams]


@pytest.fixture
def song(tmp_path: Path) -> Path:
    return write_audio(tmp_path / "song.m4a", click_track(120, 20, offset_s=0.3))


@pytest.fixture(scope="module")
def kite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MusicVideo]:
    """One 20 s video at 120 BPM, shared by the tests that only inspect it."""
    folder = tmp_path_factory.mktemp("kite")
    song = write_audio(folder / "song.m4a", click_track(120, 20, offset_s=0.3))
    video = asyncio.run(
        make_music_video(
            "a red kite", song, routes=[LOCAL], settings=Settings(resolution="240p", seed=42),
            style="film grain", run_dir=folder / "run", out=folder / "kite.mp4", policy=FAST,
        )
    )  # fmt: skip
    return song, video


def test_a_click_track_becomes_a_video_cut_on_its_beats(kite: tuple[Path, MusicVideo]) -> None:
    song, video = kite
    audio = probe_audio(song)
    info = probe(video.path)
    assert video.path.name == "kite.mp4"
    assert (info.width, info.height, info.fps, info.codec) == (426, 240, float(FPS), "h264")
    assert abs(info.duration_s - audio.duration_s) <= ONE_FRAME_S
    assert _stream_seconds(video.path, "audio") == [Fraction(audio.samples, audio.sample_rate)]
    (video_s,) = _stream_seconds(video.path, "video")
    assert abs(video_s - Fraction(audio.samples, audio.sample_rate)) <= ONE_FRAME_S

    beats = np.array(analyze(song).beats)
    assert len(video.cuts_s) >= 3
    for cut in video.cuts_s:
        assert np.abs(beats - cut).min() <= ONE_FRAME_S
    # The cuts are also on the real clicks, not only on what was detected.
    clicks = 0.3 + np.arange(40) * 0.5
    assert all(np.abs(clicks - cut).min() <= ONE_FRAME_S for cut in video.cuts_s)


def test_the_shot_list_records_each_clip_and_its_figures(kite: tuple[Path, MusicVideo]) -> None:
    _, video = kite
    document = json.loads(video.shot_list.read_text())
    assert video.shot_list == video.path.with_name("kite.shots.json")
    assert (document["routes"], document["seed"], document["fps"]) == ([LOCAL], 42, FPS)
    assert document["analysis"]["tempo_bpm"] == pytest.approx(120, rel=0.02)
    shots = document["shots"]
    assert [s["start_frame"] for s in shots[1:]] == [s["end_frame"] for s in shots[:-1]]
    assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == round(20 * FPS)
    allowed = capabilities_for(LOCAL).durations
    for shot in shots:
        assert shot["prompt"].startswith("a red kite, ") and shot["prompt"].endswith("film grain")
        assert shot["clip_duration_s"] in allowed
        assert shot["clip_duration_s"] >= (shot["end_frame"] - shot["start_frame"]) / FPS
        assert shot["route"] == LOCAL and Path(shot["clip"]).is_file()
        assert shot["held_frames"] == 0
        (attempt,) = shot["attempts"]
        assert attempt["state"] == "succeeded" and attempt["seed"] == 42
        assert attempt["total_s"] > 0 and attempt["duration_s"] == shot["clip_duration_s"]
    assert len({s["prompt"] for s in shots}) == len(shots)


def _most_at_once(rows: Sequence[JobRow]) -> int:
    """The most rows whose stored [submitted_at, finished_at] intervals overlap."""
    edges = []
    for row in rows:
        assert row.submitted_at and row.finished_at
        edges += [(datetime.fromisoformat(row.submitted_at), 1)]
        edges += [(datetime.fromisoformat(row.finished_at), -1)]
    running = most = 0
    for _, step in sorted(edges):  # a finish sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_every_shot_is_a_row_of_one_run_under_the_routes_cap(
    kite: tuple[Path, MusicVideo],
) -> None:
    _, video = kite
    with RunStore(video.run_dir) as store:
        (run,) = store.runs()
    rows = load_run(video.run_dir).rows
    assert run.kind == "music-video" and {r.run_id for r in rows} == {run.run_id}
    assert sorted(r.prompt_index for r in rows) == [s.shot.index for s in video.shots]
    assert [r.prompt for r in sorted(rows, key=lambda r: r.prompt_index)] == [
        s.shot.prompt for s in video.shots
    ]
    # More shots run at once than the local renderer's cap: the cap still holds across them.
    cap = capabilities_for(LOCAL).concurrency
    assert cap < SHOT_CONCURRENCY and len(rows) > cap
    assert _most_at_once(rows) <= cap


async def test_a_route_cap_given_holds_across_shots(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "s.wav", click_track(120, 6, offset_s=0.3))
    video = await make_music_video(
        "a lighthouse", song, settings=LOW, run_dir=tmp_path / "r", policy=FAST,
        target_beats=4, route_concurrency={"local": 1},
    )  # fmt: skip
    rows = load_run(video.run_dir).rows
    assert len(rows) == len(video.shots) >= 2
    assert _most_at_once(rows) == 1


async def test_emulated_shots_share_one_set_of_emulators(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "s.wav", click_track(120, 6, offset_s=0.3))
    video = await make_music_video(
        "neon city", song, routes=[RUNWAY], run_dir=tmp_path / "r", policy=FAST, emulate=True,
        target_beats=4,
    )  # fmt: skip
    rows = load_run(video.run_dir).rows
    assert len(rows) == len(video.shots) >= 2 and all(r.emulated for r in rows)
    # Every job was asked for at the same emulator: one server for the whole video.
    servers = {urlsplit(str(r.handles["task_url"])).netloc for r in rows}
    assert len(servers) == 1


async def test_asked_again_the_video_reuses_its_clips(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "s.wav", click_track(120, 6, offset_s=0.3))
    options = {"settings": LOW, "run_dir": tmp_path / "r", "policy": FAST, "target_beats": 4}
    first = await make_music_video("a lighthouse", song, **options)  # type: ignore[arg-type]
    again = await make_music_video("a lighthouse", song, **options)  # type: ignore[arg-type]
    with RunStore(tmp_path / "r") as store:
        assert len(store.runs()) == 1 and len(store.rows()) == len(first.shots)
    assert [r.clip for r in again.shots] == [r.clip for r in first.shots]
    assert [r.attempts for r in again.shots] == [r.attempts for r in first.shots]
    other = await make_music_video("a harbour", song, **options)  # type: ignore[arg-type]
    with RunStore(tmp_path / "r") as store:
        assert len(store.runs()) == 2  # another video in the same folder is its own run
    assert {r.clip for r in other.shots}.isdisjoint(r.clip for r in first.shots)


@pytest.fixture
def failing_runway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    """Runway's emulator on loopback, failing every job; the client finds it through env."""
    with Emulators(["runway"], Scenario.fast(fail=True)) as emulators:
        for name, value in emulators.env().items():
            monkeypatch.setenv(name, value)
        yield emulators


async def test_the_fallback_route_fills_every_shot(
    failing_runway: Emulators, tmp_path: Path
) -> None:
    song = write_audio(tmp_path / "short.wav", click_track(120, 6, offset_s=0.3))
    video = await make_music_video(
        "neon city", song, routes=[RUNWAY, LOCAL], run_dir=tmp_path / "run", policy=FAST,
        target_beats=4,
    )  # fmt: skip
    assert len(video.shots) >= 2
    for record in video.shots:
        assert record.route == LOCAL
        assert [(a["route"], a["state"]) for a in record.attempts] == [
            (RUNWAY, "failed"),
            (LOCAL, "succeeded"),
        ]
        assert "failed" in (record.attempts[0]["error"] or "")
    document = json.loads(video.shot_list.read_text())
    assert all(len(s["attempts"]) == 2 for s in document["shots"])
    assert failing_runway.states["runway"].count("create") == len(video.shots)
    assert probe(video.path).width == 1280  # runway:gen4.5 only takes 720p, so both use it


async def test_without_fallback_a_failing_route_fails_the_video(
    failing_runway: Emulators, tmp_path: Path
) -> None:
    song = write_audio(tmp_path / "short.wav", click_track(120, 3, offset_s=0.3))
    with pytest.raises(AllRoutesFailed, match=r"shot 0 runway:gen4\.5"):
        await make_music_video(
            "neon city", song, routes=[RUNWAY, LOCAL], fallback=False, run_dir=tmp_path / "run",
            policy=FAST,
        )  # fmt: skip
    assert not list((tmp_path / "run").glob("*.mp4"))


async def test_settings_no_route_can_take_fail_before_any_job(song: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="resolution='240p'"):
        await make_music_video(
            "x", song, routes=[RUNWAY, LOCAL], settings=LOW, run_dir=tmp_path / "r"
        )
    with pytest.raises(ValidationError, match="seed"):
        await make_music_video(
            "x", song, routes=[LOCAL], settings=LOW.replace(seed=-1), run_dir=tmp_path / "r"
        )
    assert not (tmp_path / "r").exists()


async def test_the_settings_reach_every_shot_but_the_beats_choose_the_duration(
    song: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match=r"duration_s=4 .*clip length follows the beats"):
        await make_music_video(
            "x", song, settings=LOW.replace(duration_s=4), run_dir=tmp_path / "no"
        )
    assert not (tmp_path / "no").exists()
    short = write_audio(tmp_path / "s.wav", click_track(120, 6, offset_s=0.3))
    video = await make_music_video(
        "a kite", short, settings=LOW.replace(negative_prompt="text, logos"),
        run_dir=tmp_path / "r", policy=FAST, target_beats=4,
    )  # fmt: skip
    rows = load_run(video.run_dir).rows
    assert len(rows) == len(video.shots) >= 2
    assert {r.settings["negative_prompt"] for r in rows} == {"text, logos"}
    assert {r.settings["aspect_ratio"] for r in rows} == {"16:9"}  # one frame for every shot
    assert json.loads(video.shot_list.read_text())["negative_prompt"] == "text, logos"


async def test_a_missing_key_is_one_clear_error(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "s.wav", click_track(120, 9, offset_s=0.3))
    with pytest.raises(MissingKeyError, match="RUNWAYML_API_SECRET"):
        await make_music_video("x", song, routes=[RUNWAY], run_dir=tmp_path / "r", target_beats=4)
    assert not list(tmp_path.glob("r/*.mp4"))


async def test_generate_from_prompt_is_the_same_pipeline(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "s.flac", click_track(100, 2.5, offset_s=0.2))
    video = await generate_from_prompt(
        "a lighthouse", audio_path=song, settings=LOW, run_dir=tmp_path / "r"
    )
    assert len(video.shots) == 1
    assert abs(probe(video.path).duration_s - 2.5) <= ONE_FRAME_S


async def test_the_default_folder_is_named_after_the_run_inside(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "s.flac", click_track(100, 2.5, offset_s=0.2))
    video = await make_music_video("a lighthouse", song, settings=LOW, policy=FAST)
    assert video.run_dir.name == f"music-video-{load_run(video.run_dir).run_id}"
    named = await make_music_video("a lighthouse", song, settings=LOW, run_id="lighthouse-1")
    assert named.run_dir.name == "music-video-lighthouse-1"
    assert load_run(named.run_dir).run_id == "lighthouse-1"


def _steady(bpm: float, duration_s: float, sections: tuple[float, ...] = ()) -> BeatAnalysis:
    beats = tuple(
        0.25 + i * 60 / bpm
        for i in range(int(duration_s * bpm / 60))
        if 0.25 + i * 60 / bpm < duration_s
    )
    starts = (0.0, *sections)
    ends = (*sections, duration_s)
    parts = tuple(
        Section(s, e, -20.0, i / max(1, len(starts) - 1))
        for i, (s, e) in enumerate(zip(starts, ends, strict=True))
    )
    return BeatAnalysis(duration_s, bpm, beats, parts)


@pytest.mark.parametrize("durations", [(4, 6, 8), (5,), (2, 3), tuple(range(1, 11))])
def test_shots_fit_the_allowed_durations_and_cut_on_beats(durations: tuple[int, ...]) -> None:
    analysis = _steady(97, 61.3)
    shots = plan_shots(analysis, "p", durations)
    beat_frames = {round(b * FPS) for b in analysis.beats}
    assert shots[0].start_frame == 0 and shots[-1].end_frame == round(61.3 * FPS)
    for before, after in itertools.pairwise(shots):
        assert before.end_frame == after.start_frame
        assert after.start_frame in beat_frames
    for shot in shots:
        assert shot.frames <= max(durations) * FPS
        assert shot.clip_duration_s in durations and shot.clip_duration_s * FPS >= shot.frames


def test_section_changes_are_cuts_and_change_the_mood() -> None:
    analysis = _steady(120, 30, sections=(10.25, 20.25))
    shots = plan_shots(analysis, "p", (4, 6, 8))
    starts = {s.start_s for s in shots}
    assert {10.25, 20.25} <= starts
    moods = {s.section: s.prompt.split(", ", 2)[2] for s in shots}
    assert len(set(moods.values())) == 3


def test_a_track_without_beats_is_still_covered() -> None:
    analysis = BeatAnalysis(23.0, 0.0, (), (Section(0.0, 23.0, -90.0, 0.5),))
    shots = plan_shots(analysis, "p", (4, 6, 8))
    assert shots[-1].end_frame == 23 * FPS
    assert all(s.frames <= 8 * FPS for s in shots)


CHILD = """
import asyncio, sys
from abebeats_lab.musicvideo.pipeline import make_music_video
from abebeats_lab.waiting import WaitPolicy

policy = WaitPolicy(deadline_s=60, min_interval_s=0.05, max_interval_s=0.3)
asyncio.run(make_music_video("neon city", sys.argv[1], routes=["runway:gen4.5"],
                             run_dir=sys.argv[2], target_beats=4, policy=policy))
"""


def _jobs_in_flight(run_dir: Path) -> int:
    """Rows of the child's run whose create answered and whose job still runs (read-only)."""
    if not (run_dir / DB_NAME).exists():
        return 0
    try:
        uri = f"file:{run_dir / DB_NAME}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as db:
            query = "SELECT COUNT(*) FROM jobs WHERE job_id IS NOT NULL AND state != 'succeeded'"
            (count,) = db.execute(query).fetchone()
    except sqlite3.Error:
        return 0  # the child is still creating the schema
    return int(count)


KILLED_RUN_S = 3.0
"""Jobs long enough that the kill, once the route's cap is full, normally finds them running."""
WAITED_ON = frozenset({"queued", "running"})
"""Row states of a job sent, answered and not yet seen finished."""
COLLECTED = frozenset({"downloading", "succeeded"})
"""Row states of a job seen finished (allowed only if its provider had finished it)."""
UNSENT = frozenset({"planned", "submitting"})
"""Row states without a job id: not sent yet, or its create's answer not stored."""


def _check_rows_at_kill(rows: Sequence[JobRow], finished: set[str], cap: int) -> None:
    """Each row is as a SIGKILLed run may leave it, given the jobs the provider had ``finished``.

    A row is seen finished only once its job is; a shot waits for a slot until a job frees one
    (normally none has: the cap's worth of rows in flight, the other shots waiting).
    """
    for row in rows:
        allowed = UNSENT if not row.job_id else WAITED_ON
        if row.job_id in finished:
            allowed |= COLLECTED
        assert row.state in allowed, (row.key, row.state, row.job_id, finished)
    taken = sum(row.state != "planned" for row in rows)
    assert taken <= cap + sum(row.job_id in finished for row in rows), rows


async def test_a_killed_music_video_is_resumed_then_finished_without_paying_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    song = write_audio(tmp_path / "s.wav", click_track(120, 12, offset_s=0.3))
    run_dir = tmp_path / "run"
    cap = capabilities_for(RUNWAY).concurrency
    with Emulators(["runway"], Scenario.fast().with_times(0.05, KILLED_RUN_S)) as emulators:
        for name, value in emulators.env().items():
            monkeypatch.setenv(name, value)
        argv = [sys.executable, "-c", CHILD, str(song), str(run_dir)]
        child = subprocess.Popen(argv, stderr=subprocess.PIPE, env=dict(os.environ))
        try:
            give_up = time.monotonic() + START_TIMEOUT_S
            # Once the route's cap is full, every later shot waits for a slot.
            while _jobs_in_flight(run_dir) < cap and child.poll() is None:
                assert time.monotonic() < give_up, "the music video never got going"
                time.sleep(POLL_S)
        finally:
            child.send_signal(signal.SIGKILL)
            _, errors = child.communicate()
        assert child.returncode == -signal.SIGKILL, errors.decode()[-2000:]
        runway = emulators.states["runway"]
        killed_at = time.time()
        finished = {j.id for j in runway.jobs.values() if j.phase(killed_at) == "succeeded"}
        stored = load_run(run_dir).rows
        _check_rows_at_kill(stored, finished, cap)
        shots = plan_shots(analyze(song), "x", capabilities_for(RUNWAY).durations, target_beats=4)
        if not finished:  # no slot freed yet: shots not started have no row, resume leaves them
            assert len(stored) < len(shots)
        # A create cut off by the kill (normally none): Runway cannot look it up, so resume
        # leaves its row ambiguous and never sends it again.
        cut_off = {r.key for r in stored if r.state == "submitting"}

        resume = [sys.executable, "-m", "abebeats_lab.cli", "resume", str(run_dir)]
        done = subprocess.run(resume, capture_output=True, timeout=120, check=False)
        assert done.returncode == (1 if cut_off else 0), done.stderr.decode()[-2000:]
        resumed = load_run(run_dir).rows
        expected = [(r.key, "ambiguous" if r.key in cut_off else "succeeded") for r in stored]
        assert [(r.key, r.state) for r in resumed] == expected
        if cut_off:  # the rest of this test is about a run whose every create was answered
            sent = sum(bool(r.job_id) for r in resumed)
            assert sent <= runway.count("create") <= sent + len(cut_off)  # none sent twice
            return

        video = await make_music_video(
            "neon city", song, routes=[RUNWAY], run_dir=run_dir, target_beats=4, policy=FAST
        )
        creates = emulators.states["runway"].count("create")
    rows = load_run(run_dir).rows
    assert len({r.run_id for r in rows}) == 1
    assert sorted(r.prompt_index for r in rows) == [s.shot.index for s in video.shots]
    assert {r.state for r in rows} == {"succeeded"} and creates == len(video.shots)
    kept = {r.key: r.output_path for r in resumed}
    for record in video.shots:  # the clips resume collected are the ones the video uses
        assert len(record.attempts) == 1
        if (record.shot.index, RUNWAY, 0) in kept:
            assert record.clip == str(run_dir / (kept[(record.shot.index, RUNWAY, 0)] or ""))
    assert abs(probe(video.path).duration_s - 12) <= ONE_FRAME_S
