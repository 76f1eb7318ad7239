"""Weight-free metrics on generated clips whose properties are known by construction."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _quality_clips import (
    FPS,
    HEIGHT,
    SQUARE_PX_PER_FRAME,
    black_frames,
    moving_square_frames,
    static_frames,
    strobe_frames,
    texture,
    write_clip,
)

from abebeats_lab import Settings, VideoRequest
from abebeats_lab.errors import DownloadError, LabError
from abebeats_lab.quality import catalogue, metrics
from abebeats_lab.quality.measure import profile
from abebeats_lab.quality.metrics import METRICS, QUALITY_DB, measure, score
from abebeats_lab.run import api as runner

FULL_SCALE_SINE_LUFS = -3.01
"""ITU-R BS.1770-4: a 0 dBFS 1 kHz sine in one channel reads −3.01 LKFS."""
LOUDNESS_TOLERANCE_LU = 0.5
"""AAC is near-transparent for a steady tone but not exact, and the encoder's priming and
the last partial 400 ms block move the gated mean slightly; EBU Tech 3341 allows ±0.1 LU
for the meter alone, so 0.5 LU leaves room for the codec and still catches a 3 dB slip
(a channel counted twice or not at all) or a wrong amplitude."""
FLAT_LEVELS = 0.5
"""Near-lossless H.264 of identical frames: differences below half a luma level."""


def test_a_static_clip_has_no_motion_and_no_flicker(tmp_path: Path) -> None:
    values = measure(write_clip(tmp_path / "static.mp4", static_frames()))
    assert values["flicker"] is not None and values["flicker"] < FLAT_LEVELS
    assert values["motion"] == pytest.approx(0.0, abs=1e-6)
    assert values["dynamic_degree"] == 0.0
    assert values["frozen_fraction"] == 1.0  # nothing changes: every pair is frozen
    assert values["black_fraction"] == 0.0
    assert values["clipped_fraction"] == 0.0
    assert values["sharpness"] is not None and values["sharpness"] > 0
    assert values["has_audio"] is False and values["loudness_lufs"] is None
    assert values["conforms"] is None  # no request to conform to


def test_a_strobing_clip_flickers_without_moving(tmp_path: Path) -> None:
    values = measure(write_clip(tmp_path / "strobe.mp4", strobe_frames()))
    assert values["flicker"] is not None and values["flicker"] > 200  # of 255 levels
    # Uniform frames carry no texture to match: a strobe is not motion.
    assert values["motion"] == pytest.approx(0.0, abs=1e-6)
    assert values["frozen_fraction"] == 0.0
    assert values["black_fraction"] == pytest.approx(0.5, abs=0.1)


def test_a_black_clip_is_flagged_black(tmp_path: Path) -> None:
    values = measure(write_clip(tmp_path / "black.mp4", black_frames()))
    assert values["black_fraction"] == 1.0
    assert values["mean_luma"] == pytest.approx(0.0, abs=0.01)
    assert values["clipped_fraction"] == 1.0
    assert values["rms_contrast"] == pytest.approx(0.0, abs=0.01)


def test_a_moving_square_moves_at_its_known_speed(tmp_path: Path) -> None:
    moving = measure(write_clip(tmp_path / "square.mp4", moving_square_frames()))
    still = measure(write_clip(tmp_path / "static.mp4", static_frames()))
    assert moving["motion"] is not None and still["motion"] is not None
    assert moving["motion"] > still["motion"]
    # 2 px a frame at 24 fps on a 90 px short side.
    expected = SQUARE_PX_PER_FRAME * FPS / HEIGHT
    assert moving["motion"] == pytest.approx(expected, rel=0.15)
    assert moving["dynamic_degree"] == 1.0 and moving["frozen_fraction"] == 0.0


def test_a_blurred_picture_is_less_sharp(tmp_path: Path) -> None:
    sharp = texture()
    blurred = ((sharp[:-2:2] / 2 + sharp[2::2] / 2).repeat(2, axis=0)).astype(np.uint8)
    blurred = np.concatenate([blurred, blurred[-2:]])
    sharp_value = measure(write_clip(tmp_path / "sharp.mp4", [sharp] * FPS))["sharpness"]
    soft_value = measure(write_clip(tmp_path / "soft.mp4", [blurred] * FPS))["sharpness"]
    assert sharp_value is not None and soft_value is not None
    assert soft_value < sharp_value


@pytest.mark.parametrize(("layout", "channel_gain_db"), [("mono", 0.0), ("stereo", 3.01)])
def test_a_tone_is_metered_at_its_known_loudness(
    tmp_path: Path, layout: str, channel_gain_db: float
) -> None:
    amplitude = 0.5
    clip = write_clip(
        tmp_path / "tone.mp4", static_frames(), tone_amplitude=amplitude, layout=layout
    )
    values = measure(clip)
    expected = FULL_SCALE_SINE_LUFS + 20 * math.log10(amplitude) + channel_gain_db
    assert values["has_audio"] is True
    assert values["loudness_lufs"] == pytest.approx(expected, abs=LOUDNESS_TOLERANCE_LU)


def test_conformance_is_the_runs_own_check(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "static.mp4", static_frames())
    asked = VideoRequest(prompt="", duration_s=2, aspect_ratio="16:9", resolution="90p")
    assert measure(clip, asked)["conforms"] is False  # 90p is no resolution we know
    assert measure(clip, asked.replace(duration_s=8, resolution="240p"))["conforms"] is False


def test_a_file_that_is_no_video_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"not a video at all")
    with pytest.raises(DownloadError, match=r"bogus\.mp4: not a playable video"):
        measure(bogus)


def test_every_metric_is_documented() -> None:
    for name, record in METRICS.items():
        assert record.name == name and record.version >= 1
        assert record.definition and record.reference and record.unit
        assert record.direction in {"higher", "lower", "neither"}
        assert record.cpu_s_per_video_s > 0


def test_profile_names_a_cost_for_every_step(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "tone.mp4", moving_square_frames(), tone_amplitude=0.1)
    values, spent = profile(clip)
    assert values == measure(clip)
    assert set(spent) == set(catalogue.STAGE_CPU_S_PER_VIDEO_S)
    assert {m.stage for m in METRICS.values()} <= set(spent)


# -- score() on a real run -------------------------------------------------------------------


PROMPTS = ["a red kite over green hills", "rain on a neon street"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    settings = Settings(duration_s=2, resolution="240p", generate_audio=True)
    done = asyncio.run(runner.compare(PROMPTS, ["local:procedural"], settings, run_dir=folder))
    assert {r.state for r in done.rows} == {"succeeded"}
    return folder


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts what it was given."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_score_measures_every_succeeded_row_through_the_given_executor(run_dir: Path) -> None:
    with CountingExecutor() as pool:
        table = score(run_dir, executor=pool, refresh=True)
        assert pool.submitted == len(PROMPTS)
        again = score(run_dir, executor=pool)
        assert pool.submitted == len(PROMPTS)  # same files, same versions: reused
    assert list(table["route"]) == ["local:procedural"] * len(PROMPTS)
    assert table["error"].isna().all()
    assert (table["conforms"] == True).all()  # noqa: E712 - a pandas column
    assert (table["has_audio"] == True).all()  # noqa: E712
    assert table["motion"].gt(0).all() and table["loudness_lufs"].lt(0).all()
    assert again.equals(table)
    assert metrics.load_scores(run_dir).equals(table)


def test_score_keeps_figures_in_its_own_database(run_dir: Path) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        score(run_dir, executor=pool)
    with sqlite3.connect(run_dir / QUALITY_DB) as db:
        names = {name for (name,) in db.execute("SELECT DISTINCT name FROM metrics")}
        runs = {run for (run,) in db.execute("SELECT DISTINCT run_id FROM metrics")}
    # No CLIP weights in a test's cache: clip_score is not stored, so a pass with them measures it.
    assert names == set(METRICS) - {"clip_score"}
    assert runs == {runner.load_run(run_dir).run_id}
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "metrics" not in tables


def test_score_with_the_default_process_pool(run_dir: Path) -> None:
    table = score(run_dir, refresh=True)
    assert len(table) == len(PROMPTS) and table["error"].isna().all()
    assert table["flicker"].notna().all()


LOOP_HANG_GUARD_S = 60.0
"""How long a finished clip waits for the event loop to run one callback: only a guard
against a loop blocked on the clip (that wait would never end), never a measured figure."""


class LoopWatchingExecutor(ThreadPoolExecutor):
    """A real one-thread pool that, for each clip, asks the event loop to run a callback
    while the clip is measured, and records whether the loop ran it before the clip returned
    its result: a loop blocked on the clip (or measuring it itself) cannot."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(max_workers=1)
        self.loop = loop
        self.loop_turned: list[bool] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        return super().submit(self._watched, fn, *args, **kwargs)

    def _watched(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        turned = threading.Event()
        self.loop.call_soon_threadsafe(turned.set)
        result = fn(*args, **kwargs)
        # The result is not handed back until the loop has turned (or never could); once a
        # clip found the loop blocked, the next ones do not wait the guard out again.
        guard = LOOP_HANG_GUARD_S if all(self.loop_turned) else 0.0
        self.loop_turned.append(turned.wait(guard))
        return result


async def test_score_async_runs_off_the_event_loop(run_dir: Path) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(tick())
    with LoopWatchingExecutor(asyncio.get_running_loop()) as pool:
        table = await metrics.score_async(run_dir, executor=pool, refresh=True)
    ticker.cancel()
    assert len(table) == len(PROMPTS)
    assert ticks > len(PROMPTS)
    # Every clip went through the pool, and the loop kept turning while each was measured.
    assert pool.loop_turned == [True] * len(PROMPTS)


def test_a_clip_that_cannot_be_read_gets_an_error_row(tmp_path: Path, run_dir: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    first = runner.load_run(copy).rows[0]
    (copy / str(first.output_path)).write_bytes(b"truncated")
    with ThreadPoolExecutor(max_workers=2) as pool:
        table = score(copy, executor=pool, refresh=True)
    broken = table[table["prompt_index"] == first.prompt_index].iloc[0]
    assert "not a playable video" in broken["error"]
    assert broken[list(METRICS)].isna().all()
    assert table[table["prompt_index"] != first.prompt_index]["error"].isna().all()


async def test_score_called_from_a_running_loop_still_works(run_dir: Path) -> None:
    # A notebook cell runs on an event loop; the blocking form must not need its own loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        table = score(run_dir, executor=pool, refresh=True)
    assert table["error"].isna().all() and len(table) == len(PROMPTS)


def test_a_single_clip_is_measured_in_this_process(tmp_path: Path) -> None:
    settings = Settings(duration_s=1, resolution="240p")
    asyncio.run(runner.compare(["one clip"], ["local:procedural"], settings, run_dir=tmp_path))
    table = score(tmp_path)
    assert len(table) == 1 and table.loc[0, "conforms"] == True  # noqa: E712
    assert table.loc[0, "has_audio"] == False and table.loc[0, "loudness_lufs"] is None  # noqa: E712


def test_score_of_a_folder_without_a_run_is_one_clear_error(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(LabError, match="no run store in"):
        score(tmp_path)
    with pytest.raises(LabError, match="run_id='nope' is not allowed; allowed: a run of"):
        score(run_dir, run_id="nope")
    assert not (tmp_path / QUALITY_DB).exists()
