"""Scenario 2: fan-out overhead of `runner.compare` against the out-of-process emulators.

4 providers x N jobs under a cap of 10 per provider, every job a fixed ``job_s``. The ideal is
when the last job could finish under the limits the runner enforces: the cap (``ceil(N / cap)``
waves of ``job_s``) and each route's published create quota (Veo: 10 per minute, so its 25
creates alone span 144 s). The measured
wall time includes validation, the run store, submits, waiting, downloads and verification.
The clients are pointed at the emulators through the environment variables the emulator
process printed (``emulate=False``, as with real keys). A warm-up run in the same run
directory first gives the store the run-time history the runner turns into a wait policy.
All jobs share one prompt text (as ``repeats``), so each emulator renders one clip; rendering
is emulator CPU, not client overhead.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from _common import EmulatorProcess

from abebeats_lab import capabilities
from abebeats_lab._types import Settings
from abebeats_lab.history import CACHE_DIR_ENV
from abebeats_lab.run import api as runner

__all__ = ["FanoutConfig", "run"]

ROUTES = (
    "runway:gen4.5",
    "replicate:minimax/video-01",
    "veo:veo-3.1-fast-generate-001",
    "pika:fal-ai/pika/v2.2/text-to-video",
)
PROMPT = "a lighthouse beam sweeping through sea fog, slow push-in"
SEED = 11
WARMUP_REPEATS = 2
"""Enough rows for the store to give a run-time prior (store.MIN_HISTORY)."""
SECONDS_PER_MINUTE = 60.0


@dataclass(frozen=True)
class FanoutConfig:
    """Jobs per provider, the per-provider cap, and every job's fixed run time."""

    jobs_per_provider: int = 25
    cap: int = 10
    job_s: float = 5.0

    def waves_s(self) -> float:
        """The best the concurrency caps alone allow: full waves of ``job_s`` each."""
        return math.ceil(self.jobs_per_provider / self.cap) * self.job_s


def ideal_s(jobs: int, cap: int, job_s: float, rate_per_min: int | None) -> float:
    """When the last job could finish under the runner's limits: ``cap`` jobs in flight, and
    creates spaced ``60 / rate_per_min`` apart (the route's published create quota)."""
    spacing = SECONDS_PER_MINUTE / rate_per_min if rate_per_min else 0.0
    finishes: list[float] = []
    last_create = -spacing
    for index in range(jobs):
        slot_free = finishes[index - cap] if index >= cap else 0.0
        last_create = max(slot_free, last_create + spacing)
        finishes.append(last_create + job_s)
    return max(finishes)


def _compare(run_dir: str, repeats: int, cap: int) -> Any:
    settings = Settings(duration_s=5, aspect_ratio="16:9", resolution="720p", seed=SEED)
    return asyncio.run(
        runner.compare(
            [PROMPT],
            list(ROUTES),
            settings,
            repeats=repeats,
            run_dir=run_dir,
            adapt=True,
            emulate=False,
            concurrency={route.partition(":")[0]: cap for route in ROUTES},
        )
    )


def run(emulators: EmulatorProcess, config: FanoutConfig) -> dict[str, Any]:
    """Warm up, then time one comparison; returns wall, ideal and their ratio."""
    emulators.reset()
    scenario = {"queue_s": {"mean": 0.0}, "run_s": {"mean": config.job_s}, "progress": True}
    emulators.set_scenario(scenario)
    saved = {name: os.environ.get(name) for name in (*emulators.env, CACHE_DIR_ENV)}
    os.environ.update(emulators.env)
    try:
        with tempfile.TemporaryDirectory(prefix="abebeats-fanout-") as run_dir:
            # The warm-up must be the only run-time history: a private per-user cache, not the
            # user's own (which these emulated jobs, run as real ones, must not train either).
            os.environ[CACHE_DIR_ENV] = f"{run_dir}/user-cache"
            _compare(run_dir, WARMUP_REPEATS, config.cap)
            emulators.reset()
            started, started_wall = time.monotonic(), time.time()
            result = _compare(run_dir, config.jobs_per_provider, config.cap)
            wall = time.monotonic() - started
            rows = result.rows
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    per_provider = _per_provider(rows, config, started_wall)
    ideal = max(p["ideal_s"] for p in per_provider.values())
    states = [row.state for row in rows]
    return {
        "config": config.__dict__,
        "jobs": len(states),
        "succeeded": states.count("succeeded"),
        "wall_s": round(wall, 3),
        "ideal_s": round(ideal, 3),
        "ideal_caps_only_s": config.waves_s(),
        "ratio": round(wall / ideal, 3),
        "providers": per_provider,
    }


def _per_provider(rows: list[Any], config: FanoutConfig, started_wall: float) -> dict[str, Any]:
    """Per provider: its ideal, and when its last row was final (from the stored rows)."""
    table: dict[str, Any] = {}
    for route in ROUTES:
        provider = route.partition(":")[0]
        mine = [r for r in rows if r.provider == provider]
        caps = capabilities.capabilities_for(route)
        ideal = ideal_s(len(mine), config.cap, config.job_s, caps.rate_per_min)
        ends = [datetime.fromisoformat(r.finished_at).timestamp() for r in mine if r.finished_at]
        last = max(ends) - started_wall if ends else float("nan")
        table[provider] = {
            "jobs": len(mine),
            "rate_per_min": caps.rate_per_min,
            "ideal_s": round(ideal, 3),
            "last_final_s": round(last, 3),
            "ratio": round(last / ideal, 3),
            "detect_lag_s_median": _median([r.timing.detect_lag_s for r in mine]),
            "polls_median": _median([r.timing.polls for r in mine]),
        }
    return table


def _median(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None
