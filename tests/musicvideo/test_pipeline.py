"""The music-video pipeline end to end, offline, on generated audio only."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from abebeats_lab.capabilities import capabilities_for
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.errors import AllRoutesFailed, MissingKeyError, ValidationError
from abebeats_lab.media.download import probe
from abebeats_lab.musicvideo.assemble import FPS, click_track, write_audio
from abebeats_lab.musicvideo.beats import BeatAnalysis, Section, analyze, probe_audio
from abebeats_lab.musicvideo.pipeline import (
    MusicVideo,
    generate_from_prompt,
    make_music_video,
    plan_shots,
)
from abebeats_lab.waiting import WaitPolicy

ONE_FRAME_S = 1 / FPS
LOCAL = "local:procedural"
RUNWAY = "runway:gen4.5"
FAST = WaitPolicy(deadline_s=60, min_interval_s=0.05, max_interval_s=0.3)


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
            "a red kite", song, routes=[LOCAL], resolution="240p", style="film grain", seed=42,
            run_dir=folder / "run", out=folder / "kite.mp4", policy=FAST,
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
            "x", song, routes=[RUNWAY, LOCAL], resolution="240p", run_dir=tmp_path / "r"
        )
    with pytest.raises(ValidationError, match="seed"):
        await make_music_video(
            "x", song, routes=[LOCAL], seed=-1, resolution="240p", run_dir=tmp_path / "r"
        )
    assert not (tmp_path / "r").exists()


async def test_a_missing_key_is_one_clear_error(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "s.wav", click_track(120, 9, offset_s=0.3))
    with pytest.raises(MissingKeyError, match="RUNWAYML_API_SECRET"):
        await make_music_video("x", song, routes=[RUNWAY], run_dir=tmp_path / "r", target_beats=4)
    assert not list(tmp_path.glob("r/*.mp4"))


async def test_generate_from_prompt_is_the_same_pipeline(tmp_path: Path) -> None:
    song = write_audio(tmp_path / "s.flac", click_track(100, 2.5, offset_s=0.2))
    video = await generate_from_prompt(
        "a lighthouse", audio_path=song, resolution="240p", run_dir=tmp_path / "r"
    )
    assert len(video.shots) == 1
    assert abs(probe(video.path).duration_s - 2.5) <= ONE_FRAME_S


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
