"""Assembly with PyAV: conform, cut at exact frames, mux the full audio track; test audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from abebeats_lab.errors import ValidationError
from abebeats_lab.media.probe import probe
from abebeats_lab.musicvideo.assemble import (
    FPS,
    Shot,
    assemble,
    click_track,
    frame_index,
    write_audio,
)
from abebeats_lab.musicvideo.beats import probe_audio

RED, BLUE, GREEN = (220, 30, 30), (30, 30, 220), (30, 200, 30)


def _solid_clip(
    path: Path, colours: list[tuple[int, int, int]], *, fps: int, size: tuple[int, int]
) -> Path:
    """A clip whose frame ``i`` is one flat colour, so the output shows which frame was used."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, colour in enumerate(colours):
            pixels = np.empty((height, width, 3), np.uint8)
            pixels[:] = colour
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _output_colours(path: Path) -> list[str]:
    """The dominant channel of every output frame: ``r``, ``g`` or ``b``."""
    names = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
            names.append("rgb"[int(np.argmax(mean))])
    return names


def _audio_duration(path: Path) -> Fraction:
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 1
        stream = container.streams.audio[0]
        return Fraction(stream.duration) * stream.time_base


def test_click_track_puts_each_click_on_its_sample() -> None:
    samples = click_track(120, 2.0, sample_rate=8000, offset_s=0.25)
    onsets = np.flatnonzero(np.abs(np.diff(samples)) > 0.2)
    starts = onsets[np.concatenate([[True], np.diff(onsets) > 400])]
    assert list(starts) == pytest.approx([2000, 6000, 10000, 14000], abs=2)


def test_write_audio_refuses_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ogg"):
        write_audio(tmp_path / "a.ogg", click_track(120, 1))


def test_shots_are_cut_at_their_frames_and_the_audio_is_whole(tmp_path: Path) -> None:
    audio = write_audio(tmp_path / "track.m4a", click_track(120, 3.05))
    red = _solid_clip(tmp_path / "red.mp4", [RED] * 48, fps=24, size=(320, 240))
    blue = _solid_clip(tmp_path / "blue.mp4", [BLUE] * 60, fps=30, size=(240, 320))
    total = frame_index(3.05)
    shots = [Shot(red, 0, 31), Shot(blue, 31, total)]
    result = assemble(shots, audio, tmp_path / "out.mp4", width=320, height=240)

    assert _output_colours(result.path) == ["r"] * 31 + ["b"] * (total - 31)
    info = probe(result.path)
    assert (info.width, info.height, info.fps, info.codec) == (320, 240, float(FPS), "h264")
    assert info.duration_s == pytest.approx(3.05, abs=1 / FPS)
    assert _audio_duration(result.path) == Fraction(probe_audio(audio).samples, 44_100)
    assert result.held_frames == (0, 0)


def test_other_frame_rates_take_the_latest_source_frame(tmp_path: Path) -> None:
    audio = write_audio(tmp_path / "track.wav", click_track(120, 1.0))
    # 12 fps source: each source frame must cover exactly two output frames.
    clip = _solid_clip(tmp_path / "c.mp4", [RED, GREEN, BLUE] * 4, fps=12, size=(320, 240))
    result = assemble([Shot(clip, 0, 24)], audio, tmp_path / "out.mp4", width=160, height=120)
    assert _output_colours(result.path) == list("rrggbb" * 4)


def test_a_short_clip_holds_its_last_frame_and_says_so(tmp_path: Path) -> None:
    audio = write_audio(tmp_path / "track.flac", click_track(100, 1.0))
    clip = _solid_clip(tmp_path / "c.mp4", [RED] * 10 + [GREEN] * 2, fps=24, size=(320, 240))
    result = assemble([Shot(clip, 0, 24)], audio, tmp_path / "out.mp4", width=320, height=240)
    assert _output_colours(result.path) == ["r"] * 10 + ["g"] * 14
    assert result.held_frames == (12,)


@pytest.mark.parametrize(
    "shots",
    [[], [Shot(Path("a.mp4"), 1, 5)], [Shot(Path("a.mp4"), 0, 5), Shot(Path("b.mp4"), 6, 9)]],
)
def test_shots_must_tile_the_output(shots: list[Shot], tmp_path: Path) -> None:
    audio = write_audio(tmp_path / "track.wav", click_track(120, 1.0))
    with pytest.raises(ValidationError, match="shot"):
        assemble(shots, audio, tmp_path / "out.mp4", width=320, height=240)
    assert not list(tmp_path.glob("*.mp4*"))


def test_a_broken_clip_leaves_no_output(tmp_path: Path) -> None:
    audio = write_audio(tmp_path / "track.wav", click_track(120, 1.0))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(ValidationError, match=r"broken\.mp4"):
        assemble([Shot(broken, 0, 24)], audio, tmp_path / "out.mp4", width=320, height=240)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "track.wav"]
