"""Scenario 1: detection lag and requests per job, our waiter against every peer's, side by side.

A pass runs several *lanes* at once: a lane is one route on one emulator with its own job-time
distribution. Every waiter of every lane (ours, each official SDK's, a fixed 5 s loop) submits
``jobs`` jobs to that lane's emulator at the same moment. Two passes: the short one (every
route ~N(30 s, 5 s), issue 6) and the long one (each route's own typical times, issue 16), in
which Replicate's 60 s create hold no longer covers most jobs. Lag is the wall time a caller
held the finished result minus the finish time the emulator recorded; requests are every
request the emulator logged for that job (create, status, stream, result; not the video
download). Our waiter gets a `WaitPolicy` built the way the runner builds it from a warm
store: median and MAD-based spread of past run times (`RunStore.run_time_prior`), drawn here
from the lane's distribution with another seed. Two lanes on one provider (Replicate-hosted
and Kling) get an emulator process each, since a scenario is per emulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import peers
from _common import EmulatorControl, EmulatorProcess, requests_by_job, summary

from abebeats_lab import capabilities
from abebeats_lab._types import JobState, Route, VideoRequest
from abebeats_lab.emulator import EMULATOR_KEYS, EMULATOR_LOCATION, EMULATOR_PROJECT
from abebeats_lab.providers import Provider, get_provider
from abebeats_lab.waiting import WaitPolicy, wait

__all__ = ["LONG_LANES", "Lane", "WaitConfig", "run", "scaled_lanes", "warm_policy"]

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
HOLD_S = peers.REPLICATE_HOLD_S
OURS = "ours"
OURS_HOLD = "ours, Prefer: wait=60"
NAIVE = "fixed 5 s loop"
_LIST_PAGES = 50
CREATE_REQUESTS = 1
"""Every waiter creates its job with one request; the emulator log supplies the rest."""
_LOW_FRACTION = 0.25
"""Run times are floored at this fraction of the mean (a normal draw can go near zero)."""


@dataclass(frozen=True)
class Lane:
    """One route on its own emulator, with its job-time distribution and where that comes from."""

    name: str
    provider: str
    route: str
    run_mean_s: float
    run_sd_s: float
    source: str

    def scaled(self, factor: float) -> Lane:
        """The same lane with job times multiplied by ``factor`` (``--quick``)."""
        return dataclasses.replace(
            self, run_mean_s=self.run_mean_s * factor, run_sd_s=self.run_sd_s * factor
        )


LONG_LANES = (
    Lane("runway", "runway", "runway:gen4.5", 45.0, 15.0, "issue 16: Runway ~N(45, 15) s"),
    Lane("replicate", "replicate", "replicate:minimax/video-01", 90.0, 30.0,
         "issue 16: Replicate-hosted ~N(90, 30) s"),
    Lane("kling", "replicate", "replicate:kwaivgi/kling-v2.1", 120.0, 40.0,
         "issue 16: Kling ~N(120, 40) s"),
    Lane("veo", "veo", "veo:veo-3.1-fast-generate-001", 75.0, 20.0, "issue 16: Veo ~N(75, 20) s"),
    Lane("pika", "pika", "pika:fal-ai/pika/v2.2/text-to-video", 60.0, 20.0,
         "capabilities/pika.toml typical_run_s = 60 s (fal publishes no time); sd a third of it, "
         "as for the others"),
)  # fmt: skip
"""Issue 16's long-job distributions, one lane per route (Kling is served by Replicate)."""


def scaled_lanes(lanes: tuple[Lane, ...], factor: float) -> tuple[Lane, ...]:
    """Every lane's job times multiplied by ``factor``."""
    return tuple(lane.scaled(factor) for lane in lanes)


@dataclass(frozen=True)
class WaitConfig:
    """One pass: job count, job timing, and how far to scale peer sleep constants."""

    jobs: int = 20
    run_mean_s: float = 30.0
    run_sd_s: float = 5.0
    queue_mean_s: float = 0.5
    queue_sd_s: float = 0.1
    scale: float = 1.0
    """Multiplier on the peers' sleep constants and the Replicate hold (``--quick`` only)."""
    history: int = 20
    lanes: tuple[Lane, ...] = ()
    """Routes with their own distributions; empty: the four providers at ``run_mean_s``."""

    def lane_list(self) -> tuple[Lane, ...]:
        """The lanes this pass runs."""
        if self.lanes:
            return self.lanes
        source = f"issue 6: every route ~N({self.run_mean_s:g}, {self.run_sd_s:g}) s"
        return tuple(
            Lane(name, name, route, self.run_mean_s, self.run_sd_s, source)
            for name, route in ROUTES.items()
        )

    def scenario(self, seed: int = 0, lane: Lane | None = None) -> dict[str, Any]:
        """The emulator scenario (Scenario.to_dict() shape): linear progress where it exists."""
        mean = lane.run_mean_s if lane else self.run_mean_s
        sd = lane.run_sd_s if lane else self.run_sd_s
        return {
            "queue_s": {"mean": self.queue_mean_s, "sd": self.queue_sd_s},
            "run_s": {"mean": mean, "sd": sd, "low": mean * _LOW_FRACTION},
            "progress": True,
            "seed": seed,
        }

    @property
    def hold_s(self) -> int:
        """Seconds a Replicate create holds under ``Prefer: wait`` in this pass."""
        return max(1, round(HOLD_S * self.scale))


def _requests() -> tuple[dict[str, Route], dict[str, VideoRequest]]:
    routes = {name: Route.parse(text) for name, text in ROUTES.items()}
    return routes, {name: _request_for(r) for name, r in routes.items()}


def _request_for(route: Route) -> VideoRequest:
    base = VideoRequest(PROMPT, duration_s=5, aspect_ratio="16:9", resolution="720p", seed=SEED)
    return capabilities.nearest(base, route)[0]


def warm_policy(config: WaitConfig, provider: str, lane: Lane | None = None) -> WaitPolicy:
    """What `RunContext._policy` passes after ``history`` past runs of this route."""
    mean = lane.run_mean_s if lane else config.run_mean_s
    sd = lane.run_sd_s if lane else config.run_sd_s
    rng = random.Random(HISTORY_SEED)
    values = []
    for _ in range(config.history):
        run = max(mean * _LOW_FRACTION, rng.gauss(mean, sd))
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


@dataclass(frozen=True)
class _LanePlan:
    """One lane's emulator, request, warm policy and peer context."""

    lane: Lane
    emulator: EmulatorControl
    route: Route
    request: VideoRequest
    policy: WaitPolicy
    ctx: peers.PeerContext

    @property
    def url(self) -> str:
        return self.emulator.urls[self.lane.provider]


class _Plan:
    """Every waiter of every lane, launched together."""

    def __init__(self, config: WaitConfig, emulators: dict[str, EmulatorControl]) -> None:
        self.config = config
        self.lanes: dict[str, _LanePlan] = {}
        for lane in config.lane_list():
            emulator = emulators[lane.name]
            route = Route.parse(lane.route)
            request = _request_for(route)
            url = emulator.urls[lane.provider]
            ctx = peers.PeerContext(lane.provider, url, route, request, config.scale)
            policy = warm_policy(config, lane.provider, lane)
            self.lanes[lane.name] = _LanePlan(lane, emulator, route, request, policy, ctx)

    def client(self, plan: _LanePlan, **extra: Any) -> Provider:
        """Our client for a lane's provider, on the lane's emulator."""
        options = client_options(plan.lane.provider, {plan.lane.provider: plan.url})
        if plan.lane.provider == "replicate" and self.config.scale != 1.0:
            options.setdefault("wait_s", self.config.hold_s)
        return get_provider(plan.lane.provider, **{**options, **extra})

    def _group(self, plan: _LanePlan, waiter: Callable[..., Awaitable[tuple[str, float]]],
               *args: Any, **extra: Any) -> _Group:  # fmt: skip
        client = self.client(plan, **extra)
        return _Group(functools.partial(waiter, client, plan.route, plan.request, *args), client)

    def async_waiters(self) -> dict[tuple[str, str], _Group]:
        """Ours (and, for Replicate, ours with an explicit hold) and the naive loop, per lane."""
        groups: dict[tuple[str, str], _Group] = {}
        for name, plan in self.lanes.items():
            groups[(name, OURS)] = self._group(plan, _ours, plan.policy)
            if plan.lane.provider == "replicate":
                groups[(name, OURS_HOLD)] = self._group(
                    plan, _ours, plan.policy, wait_s=self.config.hold_s
                )
            extra = {"wait_s": 0} if plan.lane.provider == "replicate" else {}
            interval = NAIVE_S * self.config.scale
            groups[(name, NAIVE)] = self._group(plan, _naive, interval, **extra)
        return groups

    def peer_waiters(self) -> list[tuple[str, str, peers.PeerWaiter, peers.PeerContext]]:
        """Every official SDK waiter of every lane."""
        return [
            (name, label, waiter, plan.ctx)
            for name, plan in self.lanes.items()
            for label, waiter in peers.PEERS[plan.lane.provider].items()
        ]


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
    sync = plan.peer_waiters()
    groups = plan.async_waiters()
    outcomes: dict[tuple[str, str], list[Any]] = {}
    with (
        ExitStack() as stack,
        ThreadPoolExecutor(max_workers=len(sync) * jobs + len(groups)) as pool,
    ):
        clients = {}
        for name, label, waiter, ctx in sync:
            client = waiter.open(ctx)
            stack.callback(waiter.close, client)
            clients[(name, label)] = client
        grouped = {k: loop.run_in_executor(pool, _run_group, g, jobs) for k, g in groups.items()}
        single: dict[tuple[str, str], list[asyncio.Future[Any]]] = {
            (name, label): [
                loop.run_in_executor(pool, waiter.wait, ctx, clients[(name, label)], i)
                for i in range(jobs)
            ]
            for name, label, waiter, ctx in sync
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


def replicate_tags(url: str) -> dict[str, str]:
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


def job_key(job_id: str, tags: dict[str, str]) -> str:
    """The id the emulator logs for a job id a waiter returned."""
    if job_id.startswith("tag:"):
        return tags.get(job_id[4:], "")
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
        key = job_key(job_id, tags)
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


def _lane_emulators(
    main: EmulatorProcess, lanes: tuple[Lane, ...], stack: ExitStack
) -> dict[str, EmulatorControl]:
    """The main emulator process for each provider's first lane, a new one for any other."""
    taken: set[str] = set()
    chosen: dict[str, EmulatorControl] = {}
    for lane in lanes:
        if lane.provider in taken:
            chosen[lane.name] = stack.enter_context(EmulatorProcess())
        else:
            taken.add(lane.provider)
            chosen[lane.name] = main
    return chosen


def run(emulators: EmulatorProcess, config: WaitConfig) -> dict[str, Any]:
    """Run one pass and return per lane, per waiter: lag and request figures."""
    with ExitStack() as stack:
        lane_emulators = _lane_emulators(emulators, config.lane_list(), stack)
        plan = _Plan(config, lane_emulators)
        _warm_renders(plan)
        for seed, lane_plan in enumerate(plan.lanes.values()):
            lane_plan.emulator.set_scenario(
                config.scenario(seed, lane_plan.lane), lane_plan.lane.provider
            )
            lane_plan.emulator.reset(lane_plan.lane.provider)
        pika = next((p.url for p in plan.lanes.values() if p.lane.provider == "pika"), None)
        peers.configure(config.scale, pika)
        started = time.monotonic()
        outcomes = asyncio.run(_launch_all(plan))
        wall = time.monotonic() - started
        results = {name: _lane_result(plan, lane_plan, outcomes)
                   for name, lane_plan in plan.lanes.items()}  # fmt: skip
    return {"config": dataclasses.asdict(config), "wall_s": round(wall, 2), "lanes": results}


def _lane_result(
    plan: _Plan, lane_plan: _LanePlan, outcomes: dict[tuple[str, str], list[Any]]
) -> dict[str, Any]:
    lane = lane_plan.lane
    truth = lane_plan.emulator.truth(lane.provider)
    counts = requests_by_job(lane_plan.emulator.requests(lane.provider))
    tags = replicate_tags(lane_plan.url) if lane.provider == "replicate" else {}
    return {
        "route": lane.route,
        "provider": lane.provider,
        "distribution": {
            "run_mean_s": lane.run_mean_s,
            "run_sd_s": lane.run_sd_s,
            "source": lane.source,
        },
        "hold_s": plan.config.hold_s if lane.provider == "replicate" else None,
        "policy": _policy_dict(lane_plan.policy),
        "waiters": {
            label: _analyse(outcomes[(n, label)], truth, counts, tags)
            for (n, label) in outcomes
            if n == lane.name
        },
    }


def _policy_dict(policy: WaitPolicy) -> dict[str, Any]:
    return {"expected_run_s": policy.expected_run_s, "spread_s": policy.spread_s}


def _warm_renders(plan: _Plan) -> None:
    """One quick job per lane with the benchmark's exact request, so the emulator renders its
    output once before the clock starts (rendering is emulator CPU, not waiting)."""
    fast = {"queue_s": {"mean": 0.0}, "run_s": {"mean": 0.05}, "progress": True}
    for lane_plan in plan.lanes.values():
        lane_plan.emulator.set_scenario(fast, lane_plan.lane.provider)

    async def warm() -> None:
        for lane_plan in plan.lanes.values():
            client = plan.client(lane_plan)
            try:
                job = await client.submit(lane_plan.request, lane_plan.route)
                result = await wait(client, job, policy=WaitPolicy(min_interval_s=0.05))
                await client.outputs(job, result.status)
            finally:
                await client.aclose()

    asyncio.run(warm())
