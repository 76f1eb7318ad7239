"""Scenario 1: detection lag and requests per job, our waiter against every peer's, side by side.

Every waiter (ours, each peer's default, a fixed 5 s loop) submits ``jobs`` jobs to the same
emulator at the same moment, with run times drawn from one distribution. Lag is the wall time
a caller held the finished result minus the finish time the emulator recorded; requests are
every request the emulator logged for that job (create, status, stream, result; not the video
download). Our waiter gets a `WaitPolicy` built the way the runner builds it from a warm store:
median and MAD-based spread of past run times (`RunStore.run_time_prior`), drawn here from the
same distribution with another seed.
"""

from __future__ import annotations

import asyncio
import functools
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import peers
from _common import EmulatorProcess, requests_by_job, summary

from abebeats_lab import capabilities
from abebeats_lab._types import JobState, Route, VideoRequest
from abebeats_lab.emulator import EMULATOR_KEYS, EMULATOR_LOCATION, EMULATOR_PROJECT
from abebeats_lab.providers import Provider, get_provider
from abebeats_lab.waiting import WaitPolicy, wait

__all__ = ["WaitConfig", "run"]

PROMPT = "a paper boat drifting down a rain gutter, macro, golden hour"
SEED = 7
ROUTES = {
    "runway": "runway:gen4.5",
    "replicate": "replicate:minimax/video-01",
    "veo": "veo:veo-3.1-fast-generate-001",
    "pika": "pika:fal-ai/pika/v2.2/text-to-video",
}
NAIVE_S = 5.0
MAD_TO_SD = 1.4826  # store.run_time_prior's conversion
HISTORY_SEED = 1234
NO_QUEUE_SIGNAL = frozenset({"veo"})
"""Providers whose run time, as the runner records it, includes the queue (no start signal)."""
HOLD_S = 60
OURS = "ours"
OURS_HOLD = "ours, Prefer: wait=60"
NAIVE = "fixed 5 s loop"
_LIST_PAGES = 50
CREATE_REQUESTS = 1
"""Every waiter creates its job with one request; the emulator log supplies the rest."""


@dataclass(frozen=True)
class WaitConfig:
    """Job count, job timing and how far to scale peer sleep constants."""

    jobs: int = 20
    run_mean_s: float = 30.0
    run_sd_s: float = 5.0
    queue_mean_s: float = 0.5
    queue_sd_s: float = 0.1
    scale: float = 1.0
    history: int = 20

    def scenario(self, seed: int = 0) -> dict[str, Any]:
        """The emulator scenario (Scenario.to_dict() shape): linear progress where it exists."""
        return {
            "queue_s": {"mean": self.queue_mean_s, "sd": self.queue_sd_s},
            "run_s": {"mean": self.run_mean_s, "sd": self.run_sd_s, "low": self.run_mean_s / 4},
            "progress": True,
            "seed": seed,
        }


def _requests() -> tuple[dict[str, Route], dict[str, VideoRequest]]:
    base = VideoRequest(PROMPT, duration_s=5, aspect_ratio="16:9", resolution="720p", seed=SEED)
    routes = {name: Route.parse(text) for name, text in ROUTES.items()}
    return routes, {name: capabilities.nearest(base, r)[0] for name, r in routes.items()}


def warm_policy(config: WaitConfig, provider: str) -> WaitPolicy:
    """What `RunContext._policy` passes after ``history`` past runs of this route."""
    rng = random.Random(HISTORY_SEED)
    values = []
    for _ in range(config.history):
        run = max(config.run_mean_s / 4, rng.gauss(config.run_mean_s, config.run_sd_s))
        queue = max(0.0, rng.gauss(config.queue_mean_s, config.queue_sd_s))
        values.append(run + (queue if provider in NO_QUEUE_SIGNAL else 0.0))
    median = statistics.median(values)
    spread = statistics.median(abs(v - median) for v in values) * MAD_TO_SD
    return WaitPolicy(expected_run_s=round(median, 3), spread_s=round(spread, 3))


def client_options(provider: str, urls: dict[str, str]) -> dict[str, Any]:
    """Constructor options for our provider client against the emulator process."""
    options: dict[str, Any] = {
        "api_key": EMULATOR_KEYS[provider],
        "base_url": urls[provider],
        "emulated": True,
    }
    if provider == "veo":
        options.update(project=EMULATOR_PROJECT, location=EMULATOR_LOCATION)
    return options


async def _ours(
    provider: Provider, route: Route, request: VideoRequest, policy: WaitPolicy
) -> tuple[str, float]:
    job = await provider.submit(request, route)
    result = await wait(provider, job, policy=policy)
    await provider.outputs(job, result.status)  # what a caller needs: fal's result is one GET
    return job.id, time.time()


async def _naive(
    provider: Provider, route: Route, request: VideoRequest, interval_s: float
) -> tuple[str, float]:
    job = await provider.submit(request, route)
    while True:
        await asyncio.sleep(interval_s)
        status = await provider.status(job)
        if status.state.terminal:
            break
    if status.state is JobState.SUCCEEDED:
        await provider.outputs(job, status)
    return job.id, time.time()


Launch = Callable[[], Awaitable[tuple[str, float]]]


@dataclass(frozen=True)
class _Group:
    """One async waiter: how to start one job, and the client to close afterwards."""

    launch: Launch
    client: Provider


class _Plan:
    """Every waiter of every provider, launched together."""

    def __init__(self, config: WaitConfig, urls: dict[str, str]) -> None:
        self.config = config
        self.urls = urls
        self.routes, self.requests = _requests()
        self.ctx = peers.PeerContext(urls, self.routes, self.requests, config.scale)
        self.policies = {name: warm_policy(config, name) for name in ROUTES}

    def _group(self, name: str, waiter: Callable[..., Awaitable[tuple[str, float]]],
               *args: Any, **extra: Any) -> _Group:  # fmt: skip
        client = get_provider(name, **client_options(name, self.urls), **extra)
        return _Group(functools.partial(waiter, client, *args), client)

    def async_waiters(self) -> dict[tuple[str, str], _Group]:
        """Ours (and, for Replicate, ours with an explicit 60 s hold) and the naive loop."""
        groups: dict[tuple[str, str], _Group] = {}
        for name in ROUTES:
            route, request, policy = self.routes[name], self.requests[name], self.policies[name]
            groups[(name, OURS)] = self._group(name, _ours, route, request, policy)
            if name == "replicate":
                groups[(name, OURS_HOLD)] = self._group(
                    name, _ours, route, request, policy, wait_s=HOLD_S
                )
            extra = {"wait_s": 0} if name == "replicate" else {}
            interval = NAIVE_S * self.config.scale
            groups[(name, NAIVE)] = self._group(name, _naive, route, request, interval, **extra)
        return groups


def _run_group(group: _Group, jobs: int) -> list[Any]:
    """A worker thread: ``jobs`` jobs of one async waiter on this thread's own event loop.

    Why a loop per waiter: the blocking peers run one thread per job, so sharing one loop
    among every async waiter would charge ours for the others' work (and the GIL's turns).
    """

    async def main() -> list[Any]:
        try:
            return await asyncio.gather(
                *(group.launch() for _ in range(jobs)), return_exceptions=True
            )
        finally:
            await group.client.aclose()

    return asyncio.run(main())


async def _launch_all(plan: _Plan) -> dict[tuple[str, str], list[Any]]:
    """Start every job of every waiter at once; a failure is kept as the exception."""
    loop = asyncio.get_running_loop()
    jobs = plan.config.jobs
    sync = [(n, label, fn) for n, table in peers.PEERS.items() for label, fn in table.items()]
    groups = plan.async_waiters()
    outcomes: dict[tuple[str, str], list[Any]] = {}
    with ThreadPoolExecutor(max_workers=len(sync) * jobs + len(groups)) as pool:
        grouped = {k: loop.run_in_executor(pool, _run_group, g, jobs) for k, g in groups.items()}
        single: dict[tuple[str, str], list[asyncio.Future[Any]]] = {
            (name, label): [loop.run_in_executor(pool, fn, plan.ctx, i) for i in range(jobs)]
            for name, label, fn in sync
        }
        flat = [*grouped.values(), *(t for group in single.values() for t in group)]
        await asyncio.gather(*flat, return_exceptions=True)
    for key, future in grouped.items():
        outcomes[key] = [_outcome(future)] * jobs if future.exception() else future.result()
    for key, tasks in single.items():
        outcomes[key] = [_outcome(t) for t in tasks]
    return outcomes


def _outcome(task: asyncio.Future[Any]) -> Any:
    exc = task.exception()
    return exc if exc is not None else task.result()


def _replicate_tags(url: str) -> dict[str, str]:
    """benchmark_tag -> prediction id, from the predictions list (run() hides the id)."""
    tags: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {EMULATOR_KEYS['replicate']}"}
    next_url: str | None = f"{url}/v1/predictions"
    with httpx.Client(headers=headers, timeout=60.0) as client:
        for _ in range(_LIST_PAGES):
            if next_url is None:
                break
            page = client.get(next_url).json()
            for item in page["results"]:
                tag = (item.get("input") or {}).get(peers.TAG_KEY)
                if tag:
                    tags[tag] = item["id"]
            next_url = page.get("next")
    return tags


def _job_key(job_id: str) -> str:
    return job_id.rpartition("/operations/")[2]


def _analyse(
    outcomes: list[Any], truth: dict[str, dict[str, Any]], counts: dict[str, int],
    tags: dict[str, str],
) -> dict[str, Any]:  # fmt: skip
    lags, requests, errors = [], [], []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            errors.append(f"{type(outcome).__name__}: {outcome}"[:200])
            continue
        job_id, detected = outcome
        key = tags.get(job_id[4:], "") if job_id.startswith("tag:") else _job_key(job_id)
        if key not in truth:
            errors.append(f"job {job_id} unknown to the emulator")
            continue
        lags.append(detected - truth[key]["finished"])
        requests.append(float(counts.get(key, 0) + CREATE_REQUESTS))
    return {
        "jobs": len(outcomes),
        "measured": len(lags),
        "lag_s": summary(lags),
        "requests_per_job": summary(requests),
        "errors": errors[:5],
        "error_count": len(errors),
    }


def run(emulators: EmulatorProcess, config: WaitConfig) -> dict[str, Any]:
    """Run the scenario and return per provider, per waiter: lag and request figures."""
    emulators.reset()
    for seed, name in enumerate(ROUTES):
        emulators.set_scenario(config.scenario(seed), name)
    plan = _Plan(config, emulators.urls)
    peers.configure(plan.ctx)
    _warm_renders(plan)
    emulators.reset()
    started = time.monotonic()

    outcomes = asyncio.run(_launch_all(plan))
    wall = time.monotonic() - started
    results: dict[str, Any] = {}
    for name in ROUTES:
        truth = emulators.truth(name)
        counts = requests_by_job(emulators.requests(name))
        tags = _replicate_tags(emulators.urls[name]) if name == "replicate" else {}
        results[name] = {
            "route": ROUTES[name],
            "policy": _policy_dict(plan.policies[name]),
            "waiters": {
                label: _analyse(outcomes[(n, label)], truth, counts, tags)
                for (n, label) in outcomes
                if n == name
            },
        }
    return {"config": config.__dict__, "wall_s": round(wall, 2), "providers": results}


def _policy_dict(policy: WaitPolicy) -> dict[str, Any]:
    return {"expected_run_s": policy.expected_run_s, "spread_s": policy.spread_s}


def _warm_renders(plan: _Plan) -> None:
    """One quick job per provider with the benchmark's exact request, so the emulator renders
    its output once before the clock starts (rendering is emulator CPU, not waiting)."""
    fast = {"queue_s": {"mean": 0.0}, "run_s": {"mean": 0.05}, "progress": True}
    control = httpx.Client(timeout=60.0)
    saved = {n: control.get(f"{u}/_emulator/scenario").json() for n, u in plan.urls.items()}
    for url in plan.urls.values():
        control.put(f"{url}/_emulator/scenario", json=fast).raise_for_status()

    async def warm() -> None:
        for name in ROUTES:
            client = get_provider(name, **client_options(name, plan.urls))
            try:
                job = await client.submit(plan.requests[name], plan.routes[name])
                result = await wait(client, job, policy=WaitPolicy(min_interval_s=0.05))
                await client.outputs(job, result.status)
            finally:
                await client.aclose()

    asyncio.run(warm())
    for name, url in plan.urls.items():
        control.put(f"{url}/_emulator/scenario", json=saved[name]).raise_for_status()
    control.close()
