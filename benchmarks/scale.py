"""Scenario 3: thousands of jobs in flight at once from one process, with our providers and
`waiting.wait`: client CPU per status request, peak RSS, errors.

The client runs in its own subprocess (``python benchmarks/scale.py <json>``) so its CPU time
(``getrusage(RUSAGE_SELF)``) and peak RSS are its own; the emulators run in theirs. The parent
counts the requests from the emulators' logs. Before the clock starts, each client finishes one
quick job (then the emulators forget it), so one-time costs (lazy imports, TLS contexts, the
first connections) are not charged to the steady-state figure.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from _common import (
    BENCH_DIR,
    EmulatorControl,
    EmulatorProcess,
    cpu_seconds,
    current_rss_mib,
    peak_rss_mib,
    run_json_subprocess,
)

__all__ = ["ScaleConfig", "run"]

PROVIDERS = ("runway", "replicate", "veo", "pika")
_MS = 1000.0
_SUBPROCESS_TIMEOUT_S = 600.0
_MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class ScaleConfig:
    """How many jobs (spread evenly over the providers) and how long each runs."""

    jobs: int = 2000
    run_mean_s: float = 25.0
    run_sd_s: float = 2.0
    providers: tuple[str, ...] = PROVIDERS
    """A subset isolates one provider's client cost."""

    def scenario(self) -> dict[str, Any]:
        """Long enough that every job is submitted before the first one finishes."""
        return {
            "queue_s": {"mean": 0.0},
            "run_s": {"mean": self.run_mean_s, "sd": self.run_sd_s, "low": self.run_mean_s / 2},
            "progress": True,
            # One cached render per shape: otherwise the emulator encodes 2,000 MP4s on the
            # same cores as the client, and its lag inflates the client's wall time.
            "unique_outputs": False,
        }


def run(emulators: EmulatorProcess, config: ScaleConfig) -> dict[str, Any]:
    """Run the client subprocess, then count what the emulators received."""
    emulators.reset()
    emulators.set_scenario(config.scenario())
    argument = json.dumps({"urls": emulators.urls, "config": asdict(config)})
    client = run_json_subprocess(
        [str(BENCH_DIR / "scale.py"), argument], timeout_s=_SUBPROCESS_TIMEOUT_S
    )
    totals = {"status": 0, "stream": 0, "all": 0}
    for name in config.providers:
        for record in emulators.requests(name):
            kind = record.get("kind")
            if kind == "download":
                continue
            totals["all"] += 1
            if kind in totals:
                totals[kind] += 1
    cpu_ms = client["cpu_s"] * _MS
    return {
        "config": asdict(config),
        **client,
        "requests": totals,
        "cpu_ms_per_status_request": round(cpu_ms / max(1, totals["status"]), 3),
        "cpu_ms_per_request": round(cpu_ms / max(1, totals["all"]), 3),
    }


# -- the client subprocess ---------------------------------------------------------------


async def _one(provider: Any, route: Any, request: Any, policy: Any) -> float:
    from abebeats_lab.waiting import wait

    job = await provider.submit(request, route)
    result = await wait(provider, job, policy=policy)
    return float(result.polls)


async def _client(urls: dict[str, str], config: ScaleConfig) -> dict[str, Any]:
    import wait_efficiency as we

    from abebeats_lab.providers import get_provider
    from abebeats_lab.waiting import WaitPolicy

    routes, requests = we._requests()
    names = tuple(config.providers)
    clients = {name: get_provider(name, **we.client_options(name, urls)) for name in names}
    await _warm_up(EmulatorControl(urls), config, clients, routes, requests)
    baseline_rss = current_rss_mib()
    cpu_before, started = cpu_seconds(), time.monotonic()
    coroutines = []
    for index in range(config.jobs):
        name = names[index % len(names)]
        policy = WaitPolicy(expected_run_s=config.run_mean_s, spread_s=config.run_sd_s)
        coroutines.append(_one(clients[name], routes[name], requests[name], policy))
    outcomes = await asyncio.gather(*coroutines, return_exceptions=True)
    cpu, wall = cpu_seconds() - cpu_before, time.monotonic() - started
    for client in clients.values():
        await client.aclose()
    errors = [f"{type(o).__name__}: {o}"[:200] for o in outcomes if isinstance(o, BaseException)]
    return {
        "jobs": config.jobs,
        "succeeded_waits": len(outcomes) - len(errors),
        "error_count": len(errors),
        "errors": errors[:_MAX_ERRORS_SHOWN],
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "baseline_rss_mib": round(baseline_rss, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


async def _warm_up(
    control: EmulatorControl,
    config: ScaleConfig,
    clients: dict[str, Any],
    routes: dict[str, Any],
    requests: dict[str, Any],
) -> None:
    """One quick job per client on a fast scenario, then the real scenario and empty logs."""
    from abebeats_lab.waiting import WaitPolicy

    try:
        control.set_scenario({**config.scenario(), "run_s": {"mean": 0.05}})
        quick = WaitPolicy(min_interval_s=0.05)
        await asyncio.gather(
            *(_one(client, routes[name], requests[name], quick) for name, client in clients.items())
        )
        control.set_scenario(config.scenario())
        control.reset()
    finally:
        control.close()


def main() -> None:
    """Subprocess entry: one JSON argument in, one JSON line out.

    With ``ABEBEATS_SCALE_PROFILE=<file>`` set, the client runs under cProfile and dumps its
    stats there (for finding where the client's CPU goes; the figures are then inflated).
    """
    argument = json.loads(sys.argv[1])
    config = ScaleConfig(**argument["config"])
    profile_to = os.environ.get("ABEBEATS_SCALE_PROFILE")
    if not profile_to:
        print(json.dumps(asyncio.run(_client(argument["urls"], config))))
        return
    import cProfile

    profiler = cProfile.Profile()
    result = profiler.runcall(asyncio.run, _client(argument["urls"], config))
    profiler.dump_stats(profile_to)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
