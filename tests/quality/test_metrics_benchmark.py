"""The metrics benchmark runs end to end in its ``--quick`` form, so it cannot rot.

It checks the JSON's shape and that every step was measured; never a timing (figures depend
on the machine; the benchmark reports its own verdict against the goal).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from abebeats_lab.quality.catalogue import METRICS, STAGE_CPU_S_PER_VIDEO_S

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300


def test_quick_benchmark_writes_a_cost_for_every_step(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "metrics.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads((tmp_path / "metrics-latest-quick.json").read_text())
    assert document["mode"] == "quick" and document["config"]["height"] == 720
    assert set(document["results"]) == {"procedural", "detailed"}
    for result in document["results"].values():
        assert set(result["cpu_s_per_video_s"]) == set(STAGE_CPU_S_PER_VIDEO_S)
        assert result["total_cpu_s_per_video_s"] > 0
        assert result["verdict"] in {"PASS", "MISS"}
        verdict = f"{result['total_cpu_s_per_video_s']:.3f} {result['verdict']}"
        assert verdict in done.stdout
    for stage in {m.stage for m in METRICS.values()}:
        assert f"| {stage} |" in done.stdout
