"""Issue 13 §6: does a comparison in a NEW run folder wait as well as the warm schedule?

Three comparisons of ``jobs`` emulated Veo jobs (``veo:veo-3.1-fast-generate-001``, run time
~N(30 s, 5 s), queue ~0.5 s: `wait_efficiency.WaitConfig`'s scenario), each in its own run
folder, all sharing one per-user run-time history (a temporary ``ABEBEATS_LAB_CACHE_DIR``):

- ``cold``: an empty history, so the route's 60 s prior (polls every 8 s);
- ``warm, new folder``: the history the cold comparison left, in a folder that never saw Veo;
- ``warm reference``: the policy `wait_efficiency.warm_policy` builds (20 past run times drawn
  from the true distribution), passed explicitly: how the project measures the warm schedule.

Lag is when the emulator logged the first status request at or after a job's finish, minus
that finish (both the emulator's clock). Requests per job are the create plus every status and
result request the emulator logged for it. The clients reach the emulator process through the
environment variables it printed (``emulate=False``, as fanout.py does), so the history keys
these runs as real ones; the cache directory is temporary and deleted afterwards.

    python benchmarks/history_folders.py [--jobs 20] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, EmulatorProcess, requests_by_job, summary
from wait_efficiency import WaitConfig, warm_policy

from abebeats_lab import history
from abebeats_lab._types import Settings
from abebeats_lab.run import api as runner
from abebeats_lab.waiting import WaitPolicy

__all__ = ["run"]

ROUTE = "veo:veo-3.1-fast-generate-001"
PROVIDER = "veo"
PROMPT = "a paper boat drifting down a rain gutter, macro, golden hour"
SEED = 7
CREATE_REQUESTS = 1
SECONDS_PER_MINUTE = 60.0
STEPS = ("cold", "warm, new folder", "warm reference")


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _compare(run_dir: Path, jobs: int, policy: WaitPolicy | None) -> Any:
    settings = Settings(duration_s=8, aspect_ratio="16:9", resolution="720p", seed=SEED)
    return asyncio.run(
        runner.compare(
            [PROMPT],
            [ROUTE],
            settings,
            repeats=jobs,
            run_dir=run_dir,
            concurrency={PROVIDER: jobs},
            rate_per_min={PROVIDER: jobs * SECONDS_PER_MINUTE},  # every create at once
            policy=policy,
        )
    )


def _measure(emulators: EmulatorProcess, rows: list[Any]) -> dict[str, Any]:
    """Lag and requests per job, from the emulator's own truth and request log."""
    truth = emulators.truth(PROVIDER)
    records = emulators.requests(PROVIDER)
    counts = requests_by_job(records)
    lags, requests = [], []
    for job_id, job in truth.items():
        if job["finished"] is None:
            continue
        asked = [
            r["at"]
            for r in records
            if r["job_id"] == job_id and r["kind"] == "status" and r["at"] >= job["finished"]
        ]
        if asked:
            lags.append(min(asked) - job["finished"])
        requests.append(float(counts.get(job_id, 0) + CREATE_REQUESTS))
    return {
        "jobs": len(rows),
        "succeeded": sum(row.state == "succeeded" for row in rows),
        "lag_s": _rounded(summary(lags)),
        "requests_per_job": _rounded(summary(requests)),
    }


def _rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 3) for k, v in values.items()}


def run(emulators: EmulatorProcess, config: WaitConfig) -> dict[str, Any]:
    """Cold, warm from another folder, and the reference warm schedule; see the docstring."""
    emulators.set_scenario(config.scenario(seed=0), PROVIDER)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="abebeats-history-") as scratch:
        root = Path(scratch)
        env = {**emulators.env, history.CACHE_DIR_ENV: str(root / "user-cache")}
        with _environ(env):
            reference = warm_policy(config, PROVIDER)
            for index, step in enumerate(STEPS):
                prior = history.run_time_prior(ROUTE, emulated=False)
                policy = reference if step == "warm reference" else None
                emulators.reset(PROVIDER)
                comparison = _compare(root / f"run-{index}", config.jobs, policy)
                results[step] = {
                    "run_folder": f"run-{index}",
                    "policy": _policy(policy, prior),
                    **_measure(emulators, comparison.rows),
                }
    return {"route": ROUTE, "config": asdict(config), "results": results}


def _policy(policy: WaitPolicy | None, prior: tuple[float, float] | None) -> dict[str, Any]:
    if policy is not None:
        return {"from": "explicit", "expected_run_s": policy.expected_run_s,
                "spread_s": policy.spread_s}  # fmt: skip
    if prior is None:
        return {"from": "route prior (no history)"}
    return {"from": "per-user history", "expected_run_s": round(prior[0], 3),
            "spread_s": round(prior[1], 3)}  # fmt: skip


def _table(document: dict[str, Any]) -> str:
    lines = [f"{'step':20s} {'policy':28s} {'lag p50':>8s} {'lag p95':>8s} {'req/job':>8s}"]
    for step, block in document["results"].items():
        policy = block["policy"]
        shown = policy["from"]
        if "expected_run_s" in policy:
            shown = f"{policy['expected_run_s']:.1f} +- {policy['spread_s']:.1f} s"
        lag, req = block["lag_s"], block["requests_per_job"]
        lines.append(
            f"{step:20s} {shown:28s} {_num(lag['median']):>8s} {_num(lag['p95']):>8s} "
            f"{_num(req['median']):>8s}"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    """Run, print, write JSON."""
    parser = argparse.ArgumentParser(prog="python benchmarks/history_folders.py")
    parser.add_argument("--jobs", type=int, default=WaitConfig().jobs, help="jobs per comparison")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args()
    config = WaitConfig(jobs=args.jobs)
    started = time.monotonic()
    with EmulatorProcess() as emulators:
        document = run(emulators, config)
    document["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    document["wall_s"] = round(time.monotonic() - started, 1)
    print(_table(document))
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    (args.out / "history-folders-latest.json").write_text(text)
    print(f"\nwritten: {args.out / 'history-folders-latest.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
