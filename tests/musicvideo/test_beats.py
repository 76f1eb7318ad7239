"""Beat analysis on generated audio: tempo, beat times and sections, in every input format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abebeats_lab.errors import ValidationError
from abebeats_lab.media.render import FPS
from abebeats_lab.musicvideo.assemble import click_track, write_audio
from abebeats_lab.musicvideo.beats import (
    ANALYSIS_RATE,
    analyze,
    analyze_samples,
    load_audio,
    probe_audio,
)

ONE_FRAME_S = 1 / FPS
OFFSET_S = 0.3


def _truth(bpm: float, duration_s: float, offset_s: float = OFFSET_S) -> np.ndarray:
    times = offset_s + np.arange(int(duration_s * bpm / 60) + 1) * 60 / bpm
    return times[times < duration_s]


@pytest.mark.parametrize(
    ("bpm", "suffix"),
    [
        (90, ".wav"),
        (100, ".mp3"),
        (117, ".m4a"),
        (120, ".flac"),
        (128, ".mp3"),
        (140, ".m4a"),
        (150, ".wav"),
    ],
)
def test_tempo_and_beats_on_click_tracks(bpm: int, suffix: str, tmp_path: Path) -> None:
    path = write_audio(tmp_path / f"click{suffix}", click_track(bpm, 12, offset_s=OFFSET_S))
    result = analyze(path)
    assert result.tempo_bpm == pytest.approx(bpm, rel=0.02)
    truth, found = _truth(bpm, 12), np.array(result.beats)
    assert len(found) == len(truth)
    assert np.abs(found - truth).max() < ONE_FRAME_S


def test_every_format_decodes_to_the_same_exact_length(tmp_path: Path) -> None:
    samples = click_track(120, 3.3)
    for suffix in (".wav", ".flac", ".mp3", ".m4a"):
        path = write_audio(tmp_path / f"a{suffix}", np.stack([samples, samples]))
        info = probe_audio(path)
        assert (info.samples, info.sample_rate, info.channels) == (len(samples), 44_100, 2), suffix
        assert len(load_audio(path)) == round(3.3 * ANALYSIS_RATE), suffix


def test_decoded_audio_matches_what_was_written(tmp_path: Path) -> None:
    samples = click_track(100, 2.0, sample_rate=ANALYSIS_RATE)
    decoded = load_audio(write_audio(tmp_path / "a.flac", samples, ANALYSIS_RATE))
    assert np.abs(decoded - samples).max() < 1e-3


def test_sections_are_found_where_the_sound_changes(tmp_path: Path) -> None:
    path = write_audio(
        tmp_path / "a.wav", click_track(120, 20, offset_s=OFFSET_S, changes=(6.0, 13.0))
    )
    sections = analyze(path).sections
    beat = 60 / 120
    assert len(sections) == 3
    assert [s.start_s for s in sections] == pytest.approx([0.0, 6.0, 13.0], abs=beat)
    assert sections[-1].end_s == pytest.approx(20.0)
    # The middle section has the louder, brighter drone.
    assert sections[1].energy == 1.0
    assert max(sections[0].energy, sections[2].energy) < sections[1].energy


def test_a_steady_track_is_one_section(tmp_path: Path) -> None:
    result = analyze(write_audio(tmp_path / "a.wav", click_track(128, 16, offset_s=OFFSET_S)))
    assert len(result.sections) == 1
    assert (result.sections[0].start_s, result.sections[0].end_s) == (0.0, pytest.approx(16.0))


def test_silence_has_no_tempo_and_no_beats() -> None:
    result = analyze_samples(np.zeros(ANALYSIS_RATE * 3, np.float32))
    assert (result.tempo_bpm, result.beats, result.duration_s) == (0.0, (), 3.0)
    assert len(result.sections) == 1


def test_a_click_on_the_first_sample_does_not_shift_the_grid(tmp_path: Path) -> None:
    result = analyze(write_audio(tmp_path / "a.wav", click_track(110, 10, offset_s=0.0)))
    found = np.array(result.beats)
    truth = _truth(110, 10, 0.0)
    assert all(np.abs(truth - b).min() < ONE_FRAME_S for b in found)
    assert len(found) >= len(truth) - 1


def test_an_unreadable_file_is_a_validation_error(tmp_path: Path) -> None:
    bogus = tmp_path / "song.mp3"
    bogus.write_bytes(b"not audio at all" * 100)
    with pytest.raises(ValidationError, match=r"audio='song\.mp3'"):
        analyze(bogus)
