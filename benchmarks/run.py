"""One command for every benchmark: ``python benchmarks/run.py [--quick]``.

Starts the emulators in a separate process on 127.0.0.1, runs the scenarios side by side
(wait efficiency on short and on long jobs, client CPU against the official SDKs, fan-out,
scale, download, import), prints a table with each target from issues 6, 14 and 16 next to
the measured figure, and writes JSON with machine, versions and date to
``benchmarks/results/<YYYY-MM-DD>.json`` and ``benchmarks/results/latest.json``.
``--quick`` shrinks every scenario (job times, the peers' sleep constants and the Replicate
hold by 0.05-0.1) so the code paths run in about a minute; its figures are not comparable
with a full run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import client_cpu
import download
import fanout
import import_time
import report
import scale
import wait_efficiency
from _common import BENCH_DIR, EmulatorProcess

SCENARIOS = ("wait", "wait_long", "cpu", "fanout", "scale", "download", "import")
LONG_JOBS = 12
"""Long jobs per waiter: all run at once, so the pass lasts about the longest job (~3 min)."""
QUICK_LONG_SCALE = 0.03
"""--quick shrinks the long distributions (Kling ~N(3.6, 1.2) s) and the Replicate hold (2 s)."""
FULL: dict[str, Any] = {
    "wait": wait_efficiency.WaitConfig(),
    "wait_long": wait_efficiency.WaitConfig(jobs=LONG_JOBS, lanes=wait_efficiency.LONG_LANES),
    "cpu": client_cpu.CpuConfig(),
    "fanout": fanout.FanoutConfig(),
    "scale": scale.ScaleConfig(),
    "download": download.DownloadConfig(),
    "import": import_time.ImportConfig(),
}
QUICK: dict[str, Any] = {
    "wait": wait_efficiency.WaitConfig(
        jobs=3,
        run_mean_s=2.0,
        run_sd_s=0.3,
        queue_mean_s=0.2,
        queue_sd_s=0.05,
        scale=0.1,
        history=5,
    ),
    "wait_long": wait_efficiency.WaitConfig(
        jobs=3,
        queue_mean_s=0.2,
        queue_sd_s=0.05,
        scale=QUICK_LONG_SCALE,
        history=5,
        lanes=wait_efficiency.scaled_lanes(wait_efficiency.LONG_LANES, QUICK_LONG_SCALE),
    ),
    "cpu": client_cpu.CpuConfig(jobs=2, run_mean_s=1.5, run_sd_s=0.2, queue_mean_s=0.1, scale=0.1),
    "fanout": fanout.FanoutConfig(jobs_per_provider=1, cap=1, job_s=1.0),
    "scale": scale.ScaleConfig(jobs=40, run_mean_s=3.0, run_sd_s=0.3),
    "download": download.DownloadConfig(size_bytes=32 * 1024**2),
    "import": import_time.ImportConfig(runs=3),
}


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/run.py", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny configuration (< 1 min)")
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument(
        "--scale-jobs", type=int, default=None, help="jobs in the scale scenario (default 2000)"
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR / "results", help="folder for the JSON results"
    )
    return parser.parse_args()


def _run_scenarios(names: list[str], configs: dict[str, Any]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    needs_emulators = {"wait", "wait_long", "cpu", "fanout", "scale"} & set(names)
    emulators = EmulatorProcess() if needs_emulators else None
    steps: dict[str, Callable[[], dict[str, Any]]] = {
        "wait": lambda: wait_efficiency.run(_need(emulators), configs["wait"]),
        "wait_long": lambda: wait_efficiency.run(_need(emulators), configs["wait_long"]),
        "cpu": lambda: client_cpu.run(_need(emulators), configs["cpu"]),
        "fanout": lambda: fanout.run(_need(emulators), configs["fanout"]),
        "scale": lambda: scale.run(_need(emulators), configs["scale"]),
        "download": lambda: download.run(configs["download"]),
        "import": lambda: import_time.run(configs["import"]),
    }
    try:
        for name in names:
            started = time.monotonic()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = steps[name]()
            results[name]["scenario_wall_s"] = round(time.monotonic() - started, 2)
    finally:
        if emulators is not None:
            emulators.stop()
    return results


def _need(emulators: EmulatorProcess | None) -> EmulatorProcess:
    assert emulators is not None
    return emulators


def main() -> None:
    """Run, print, write."""
    args = _parse()
    configs = dict(QUICK if args.quick else FULL)
    if args.scale_jobs is not None:
        configs["scale"] = dataclasses.replace(configs["scale"], jobs=args.scale_jobs)
    started = time.monotonic()
    results = _run_scenarios(list(args.only), configs)
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": report.machine(),
        "versions": report.versions(),
        "results": results,
        "targets": report.targets(results),
        "total_wall_s": round(time.monotonic() - started, 1),
    }
    print(report.table(document))
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, default=str) + "\n"
    stem = datetime.now(UTC).strftime("%Y-%m-%d") + ("-quick" if args.quick else "")
    (args.out / f"{stem}.json").write_text(text)
    (args.out / ("latest-quick.json" if args.quick else "latest.json")).write_text(text)


if __name__ == "__main__":
    main()
