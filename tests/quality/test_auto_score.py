"""Scoring during a run: every succeeded output gets its metrics, through the executor given."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from abebeats_lab import Settings
from abebeats_lab.quality.metrics import QUALITY_DB, load_scores
from abebeats_lab.run import api as runner

PROMPTS = ["a red kite over green hills", "rain on a neon street"]
SETTINGS = Settings(duration_s=1, resolution="240p")


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts what it was given."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def _succeeded(run_dir: Path) -> set[tuple[int, str, int]]:
    return {r.key for r in runner.load_run(run_dir).rows if r.state == "succeeded"}


async def test_a_run_with_scoring_leaves_metrics_for_every_succeeded_output(
    tmp_path: Path,
) -> None:
    arrived: list[str] = []

    def heard(event: runner.JobEvent) -> None:
        if str(event.state) == "succeeded" and event.output_path:
            arrived.append(event.output_path)

    done = await runner.compare(
        PROMPTS, ["local:procedural"], SETTINGS, run_dir=tmp_path, score=True, on_update=heard
    )
    assert {r.state for r in done.rows} == {"succeeded"}
    assert len(set(arrived)) == len(PROMPTS)  # the caller's own handler still hears every job
    table = load_scores(tmp_path)
    assert set(zip(table["prompt_index"], table["route"], table["repeat"], strict=True)) == (
        _succeeded(tmp_path)
    )
    assert table["error"].isna().all() and table["flicker"].notna().all()
    assert table["conforms"].eq(True).all()
    # The run's own view shows them without scoring again.
    assert done.to_pandas()["flicker"].notna().all()


async def test_a_custom_executor_is_used_and_left_open(tmp_path: Path) -> None:
    with CountingExecutor() as pool:
        results = await runner.generate_many(
            PROMPTS, ["local:procedural"], SETTINGS, run_dir=tmp_path, score=pool
        )
        assert pool.submitted == len(results) == len(PROMPTS)
        assert pool.submit(sum, [1, 2]).result() == 3  # still open: it is the caller's
    assert load_scores(tmp_path)["motion"].notna().all()


async def test_without_scoring_nothing_is_measured(tmp_path: Path) -> None:
    await runner.compare(PROMPTS[:1], ["local:procedural"], SETTINGS, run_dir=tmp_path)
    assert not (tmp_path / QUALITY_DB).exists()


def test_compare_score_on_the_command_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "abebeats_lab.cli", "compare", *PROMPTS, "--route",
         "local:procedural", "--duration", "1", "--resolution", "240p", "--run-dir",
         str(run_dir), "--score", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == len(PROMPTS)
    with sqlite3.connect(run_dir / QUALITY_DB) as db:
        measured = db.execute("SELECT COUNT(DISTINCT prompt_index) FROM metrics").fetchone()[0]
    assert measured == len(PROMPTS)
