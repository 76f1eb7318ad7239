"""What a provider reports a job used, recorded next to the price estimate (issue 16).

Replicate's prediction ``metrics`` (``predict_time``, ``total_time``) and fal's COMPLETED
status ``metrics`` (``inference_time``) are documented; Runway's task reports no usage.
End to end against the emulators, which report them as the real APIs do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _runner_support import FAST, REMOTE, REPLICATE, RUNWAY

from abebeats_lab.run.api import compare, load_run
from abebeats_lab.views.report import write_report

FAL = "fal:fal-ai/kling-video/v3/pro/text-to-video"
ROUNDING_S = 0.01
"""The emulator reports metrics and timestamps rounded to the millisecond."""


async def test_reported_usage_is_recorded_next_to_the_estimate(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = await compare(
        "a kite", [REPLICATE, FAL, RUNWAY], REMOTE, run_dir=run_dir, emulate=True, adapt=True,
        policy=FAST,
    )  # fmt: skip
    rows = {row.route: row for row in result.rows}
    assert {row.state for row in rows.values()} == {"succeeded"}, [r.error for r in result.rows]

    replicate = rows[REPLICATE]
    assert set(replicate.usage) == {"predict_time", "total_time"}
    assert 0 < replicate.usage["predict_time"] <= replicate.usage["total_time"]
    # predict_time is the run from the provider's own started_at to completed_at
    assert replicate.timing.sources["run_s"] == "provider"
    assert replicate.usage["predict_time"] == pytest.approx(replicate.timing.run_s, abs=ROUNDING_S)
    assert set(rows[FAL].usage) == {"inference_time"} and rows[FAL].usage["inference_time"] > 0
    assert rows[RUNWAY].usage == {}  # a Runway task says nothing of what it used

    frame = result.to_pandas()
    columns = list(frame.columns)
    assert columns[columns.index("cost_estimate_usd") + 1] == "usage"
    assert frame.set_index("route").loc[REPLICATE, "usage"] == replicate.usage

    stored = {row.route: row.usage for row in load_run(run_dir).rows}
    assert stored == {route: row.usage for route, row in rows.items()}
    page = write_report(run_dir).read_text(encoding="utf-8")
    shown = f"reported predict_time {replicate.usage['predict_time']:.2f}s"
    assert shown in page and "reported inference_time " in page
