"""The benchmark command runs end to end in its ``--quick`` configuration, so it cannot rot.

It asserts the shape of the JSON and that lag, requests, CPU, memory and throughput were
really measured; never a timing (figures depend on the machine, and targets are reported by
the benchmark itself, not asserted here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PROVIDER_VARS

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"wait", "wait_long", "cpu", "fanout", "scale", "download", "import"}
WAIT_PASSES = ("wait", "wait_long")
LONG_LANES = {"runway", "replicate", "kling", "veo", "pika"}
PEER_WAITERS = {
    "runway": {"runwayml wait_for_task_output"},
    "replicate": {"replicate run() (Prefer: wait)", "replicate Prediction.wait()"},
    "veo": {"genai loop, sleep 10 s", "genai loop, sleep 20 s"},
    "pika": {"fal_client subscribe"},
}
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARS}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=out, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((out / "latest-quick.json").read_text()), done.stdout, out


def test_document_has_metadata_and_every_scenario(quick_run: Any) -> None:
    document, _, out = quick_run
    assert document["mode"] == "quick"
    assert set(document["results"]) == SCENARIOS
    assert document["machine"]["cpu_count"] >= 1 and document["machine"]["python"]
    assert document["versions"]["replicate"] and document["versions"]["runwayml"]
    assert document["date"][:10] in {p.name[:10] for p in out.glob("*-quick.json")}


def test_targets_are_reported_with_a_verdict(quick_run: Any) -> None:
    document, stdout, _ = quick_run
    verdicts = {row["verdict"] for row in document["targets"]}
    assert verdicts <= {"PASS", "MISS"} and verdicts
    lanes = len(PEER_WAITERS) + len(LONG_LANES)
    others = SCENARIOS - {*WAIT_PASSES, "cpu"}  # at least one row each
    assert len(document["targets"]) >= 2 * lanes + len(PEER_WAITERS) + len(others)
    for row in document["targets"]:
        assert f"| {row['target']} | {row['measured']} | {row['verdict']} |" in stdout


@pytest.mark.parametrize("scenario", WAIT_PASSES)
def test_wait_measured_lag_and_requests_for_ours_and_every_peer(
    quick_run: Any, scenario: str
) -> None:
    wait = quick_run[0]["results"][scenario]
    jobs = wait["config"]["jobs"]
    expected = set(PEER_WAITERS) if scenario == "wait" else LONG_LANES
    assert set(wait["lanes"]) == expected
    for name, lane in wait["lanes"].items():
        assert lane["distribution"]["run_mean_s"] > 0 and lane["distribution"]["source"]
        assert lane["policy"]["expected_run_s"] > 0 and lane["policy"]["spread_s"] > 0
        waiters = lane["waiters"]
        assert {"ours", "fixed 5 s loop", *PEER_WAITERS[lane["provider"]]} <= set(waiters)
        for label, figures in waiters.items():
            assert figures["error_count"] == 0, (name, label, figures["errors"])
            assert figures["measured"] == jobs
            assert figures["lag_s"]["median"] is not None
            assert figures["requests_per_job"]["median"] >= 1


def test_cpu_measured_for_ours_and_each_sdk_waiter(quick_run: Any) -> None:
    cpu = quick_run[0]["results"]["cpu"]
    jobs = cpu["config"]["jobs"]
    assert set(cpu["providers"]) == set(PEER_WAITERS)
    for provider, waiters in cpu["providers"].items():
        assert {"ours", "ours, SDK cadence"} <= set(waiters)
        assert len(set(waiters) & PEER_WAITERS[provider]) == 1
        for label, figures in waiters.items():
            assert figures["error_count"] == 0, (provider, label, figures["errors"])
            assert figures["job_ids"] == jobs and figures["cpu_s"] > 0
            assert figures["cpu_ms_per_job"] > 0
            if label != "ours":  # ours as shipped may be pushed its end (no status request)
                assert figures["requests"]["status"] >= jobs
                assert figures["cpu_ms_per_status_request"] > 0


def test_fanout_scale_download_import_measured(quick_run: Any) -> None:
    results = quick_run[0]["results"]
    fanout = results["fanout"]
    assert fanout["jobs"] == fanout["succeeded"] == 4 * fanout["config"]["jobs_per_provider"]
    assert fanout["wall_s"] > 0 and set(fanout["providers"]) == set(PEER_WAITERS)
    scale = results["scale"]
    assert scale["succeeded_waits"] + scale["error_count"] == scale["jobs"]
    assert scale["requests"]["status"] > 0 and scale["cpu_s"] > 0
    assert scale["peak_rss_mib"] >= scale["baseline_rss_mib"] > 0
    download = results["download"]
    for mode in ("bare_httpx", "media_download"):
        assert download[mode]["bytes"] == download["config"]["size_bytes"]
        assert download[mode]["mib_per_s"] > 0
    imports = results["import"]
    assert imports["bare_start_ms"] > 0 and isinstance(imports["heavy_modules"], list)
