"""Scenario: client CPU per status request, ours beside each official SDK's own waiter.

Per provider, four waiters run the same number of jobs from the same run-time distribution
at the same moment, each in its own subprocess so ``getrusage(RUSAGE_SELF)`` is its CPU alone:

- the SDK's own sync waiter (runwayml ``wait_for_task_output``, replicate ``Prediction.wait()``,
  google-genai's documented ``operations.get`` loop, fal_client ``handle.get()``), one thread
  per job on one shared SDK client;
- the SDK's own async waiter (the same calls on ``AsyncRunwayML``, ``Prediction.async_wait()``,
  ``client.aio.operations.get`` with ``asyncio.sleep``, ``fal_client.AsyncClient``), every job
  on one event loop with one shared async SDK client: the like-for-like peer of ours;
- ours at the SDK's cadence (a fixed interval equal to the SDK's, no push stream or create
  hold), so both make about as many status requests and the figures compare like for like;
- ours as shipped (warm-history policy, push stream, create hold), for its CPU per job.

Two floors run beside them: the same GET of a Replicate prediction with nothing but stock
httpx, at ``Prediction.wait()``'s cadence, once with ``httpx.AsyncClient`` on an event loop (the
least any asyncio client on stock httpx can spend per request) and once with ``httpx.Client``
and a thread per job (what a sync SDK's waiter is built on). Their gap is the price of the
async stack itself, which no code above httpx can remove.

Each subprocess finishes one quick job first (lazy imports, first connections, model classes
are not charged), reports ready, and waits; the parent resets the emulators, sets the measured
scenario and says go. CPU is counted from go to the last job's result and divided by the
status requests the emulator logged for that subprocess's jobs (the floors count their own).

``python benchmarks/client_cpu.py [--providers ...] [--profile DIR]`` runs this scenario alone
and prints its table; ``--profile`` writes a cProfile (CPU clock) of each of our waiters'
measured section. ``--child <json>`` is the subprocess entry.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, EmulatorProcess, cpu_seconds, peak_rss_mib

__all__ = ["ASYNC_PEER_FOR", "FLOORS", "OURS", "OURS_CADENCE", "PEER_FOR", "CpuConfig", "run"]

PEER_FOR = {
    "runway": "runwayml wait_for_task_output",
    "replicate": "replicate Prediction.wait()",
    "veo": "genai loop, sleep 10 s",
    "pika": "fal_client subscribe",
}
"""The one sync polling waiter per official SDK whose cost per status request ours is held to."""
ASYNC_PEER_FOR = {
    "runway": "AsyncRunwayML wait_for_task_output",
    "replicate": "replicate Prediction.async_wait()",
    "veo": "genai aio loop, sleep 10 s",
    "pika": "fal_client AsyncClient subscribe",
}
"""The same SDK's async twin of ``PEER_FOR``'s waiter (same cadence), held to likewise."""
OURS_CADENCE = "ours, SDK cadence"
OURS = "ours"
FLOORS = {
    "floor_async": "stock httpx.AsyncClient GET, one event loop",
    "floor_sync": "stock httpx.Client GET, a thread per job",
}
"""The two bare-httpx floors, by subprocess kind; both poll one Replicate prediction."""
FLOOR_PROVIDER = "replicate"
_MS = 1000.0
_READY_TIMEOUT_S = 120.0
_WARM_SCALE = 0.01
"""Peer sleeps during the warm-up job (it exercises the code paths, not the cadence)."""
_WARM_INTERVAL_S = 0.05
_MAX_ERRORS_SHOWN = 3
_PROFILE_LINES = 25


@dataclass(frozen=True)
class CpuConfig:
    """Jobs per waiter and their run-time distribution; ``scale`` shrinks peer sleeps."""

    jobs: int = 12
    run_mean_s: float = 30.0
    run_sd_s: float = 5.0
    queue_mean_s: float = 0.5
    scale: float = 1.0

    def scenario(self, seed: int = 0) -> dict[str, Any]:
        """The measured emulator scenario."""
        return {
            "queue_s": {"mean": self.queue_mean_s},
            "run_s": {"mean": self.run_mean_s, "sd": self.run_sd_s, "low": self.run_mean_s / 4},
            "progress": True,
            "seed": seed,
        }


def _waiters(providers: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(provider, label, kind) for every subprocess."""
    rows = [(FLOOR_PROVIDER, label, kind) for kind, label in FLOORS.items()]
    for provider in providers:
        rows += [(provider, PEER_FOR[provider], "peer"),
                 (provider, ASYNC_PEER_FOR[provider], "async_peer"),
                 (provider, OURS_CADENCE, "cadence"), (provider, OURS, "ours")]  # fmt: skip
    return rows


def run(
    emulators: EmulatorProcess,
    config: CpuConfig,
    providers: tuple[str, ...] = tuple(PEER_FOR),
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """Start every waiter's subprocess, release them together, then count requests."""
    fast = {"queue_s": {"mean": 0.0}, "run_s": {"mean": 0.05}, "progress": True}
    emulators.reset()
    emulators.set_scenario(fast)
    procs: dict[tuple[str, str], subprocess.Popen[str]] = {}
    try:
        for provider, label, kind in _waiters(providers):
            url = emulators.urls[provider]
            profile = str(profile_dir / f"{provider}-{kind}.prof") if profile_dir else None
            argument = json.dumps(
                {"provider": provider, "label": label, "kind": kind, "url": url,
                 "config": asdict(config), "profile": profile}
            )  # fmt: skip
            procs[(provider, label)] = subprocess.Popen(
                [sys.executable, str(BENCH_DIR / "client_cpu.py"), "--child", argument],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        for key, proc in procs.items():
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{key} did not get ready")
        for seed, provider in enumerate(PEER_FOR):
            if provider in providers:
                emulators.set_scenario(config.scenario(seed), provider)
        emulators.reset()
        started = time.monotonic()
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = {key: _finish(key, proc) for key, proc in procs.items()}
        wall = time.monotonic() - started
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    figures: dict[str, Any] = {}
    for provider in providers:
        records = emulators.requests(provider)
        tags = _tags(emulators.urls[provider]) if provider == "replicate" else {}
        figures[provider] = {
            label: _figures(out, records, tags)
            for (name, label), out in outputs.items()
            if name == provider and label not in FLOORS.values()
        }
    floors = {label: _floor_figures(outputs[(FLOOR_PROVIDER, label)]) for label in FLOORS.values()}
    return {"config": asdict(config), "wall_s": round(wall, 2), "providers": figures,
            "floors": floors}  # fmt: skip


def _tags(url: str) -> dict[str, str]:
    import wait_efficiency as we

    return we.replicate_tags(url)


def _finish(key: tuple[str, str], proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=_READY_TIMEOUT_S * 10)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{key} exited {proc.returncode}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _figures(
    out: dict[str, Any], records: list[dict[str, Any]], tags: dict[str, str]
) -> dict[str, Any]:
    import wait_efficiency as we

    keys = {we.job_key(job_id, tags) for job_id in out["job_ids"]}
    kinds: dict[str, int] = {}
    for record in records:
        if record.get("job_id") in keys and record.get("kind") not in ("create", "download"):
            kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
    status = kinds.get("status", 0)
    every = sum(kinds.values()) + len(out["job_ids"])  # one create each (fal logs it without id)
    cpu_ms = out["cpu_s"] * _MS
    jobs = max(1, len(out["job_ids"]))
    return {
        **out,
        "job_ids": len(out["job_ids"]),
        "requests": {"status": status, "all": every, **kinds},
        "status_requests_per_job": round(status / jobs, 1),
        "cpu_ms_per_status_request": round(cpu_ms / status, 3) if status else None,
        "cpu_ms_per_request": round(cpu_ms / every, 3),
        "cpu_ms_per_job": round(cpu_ms / jobs, 1),
    }


def _floor_figures(out: dict[str, Any]) -> dict[str, Any]:
    """A floor counts its own requests: every one is the same status GET."""
    requests = out.pop("requests")
    jobs = max(1, len(out["job_ids"]))
    cpu_ms = out["cpu_s"] * _MS
    return {
        **out,
        "job_ids": len(out["job_ids"]),
        "status_requests_per_job": round(requests / jobs, 1),
        "cpu_ms_per_status_request": round(cpu_ms / requests, 3) if requests else None,
        "cpu_ms_per_request": round(cpu_ms / requests, 3) if requests else None,
        "cpu_ms_per_job": round(cpu_ms / jobs, 1),
    }


# -- the subprocess ------------------------------------------------------------------------


def _context(provider: str, url: str, scale: float) -> Any:
    import peers
    import wait_efficiency as we

    from abebeats_lab._types import Route

    route = Route.parse(we.ROUTES[provider])
    return peers.PeerContext(provider, url, route, we._request_for(route), scale)


def _peer(argument: dict[str, Any], config: CpuConfig) -> dict[str, Any]:
    """The SDK's waiter: one shared client, one thread per job."""
    import peers

    waiter = peers.PEERS[argument["provider"]][argument["label"]]
    fal_url = argument["url"] if argument["provider"] == "pika" else None
    warm = _context(argument["provider"], argument["url"], _WARM_SCALE)
    ctx = _context(argument["provider"], argument["url"], config.scale)
    client = waiter.open(ctx)
    try:
        peers.configure(_WARM_SCALE, fal_url)
        waiter.wait(warm, client, 0)
        peers.configure(config.scale, fal_url)
        _ready()
        before, started = cpu_seconds(), time.monotonic()
        with ThreadPoolExecutor(max_workers=config.jobs) as pool:
            futures = [pool.submit(waiter.wait, ctx, client, i + 1) for i in range(config.jobs)]
        outcomes = [f.exception() or f.result() for f in futures]
        cpu, wall = cpu_seconds() - before, time.monotonic() - started
    finally:
        waiter.close(client)
    return _report(outcomes, cpu, wall)


async def _async_peer(argument: dict[str, Any], config: CpuConfig) -> dict[str, Any]:
    """The SDK's async waiter: one shared async client, every job on this event loop."""
    import peers

    waiter = peers.ASYNC_PEERS[argument["provider"]][argument["label"]]
    fal_url = argument["url"] if argument["provider"] == "pika" else None
    warm = _context(argument["provider"], argument["url"], _WARM_SCALE)
    ctx = _context(argument["provider"], argument["url"], config.scale)
    client = waiter.open(ctx)
    try:
        peers.configure(_WARM_SCALE, fal_url)
        await waiter.wait(warm, client, 0)
        peers.configure(config.scale, fal_url)
        _ready()
        before, started = cpu_seconds(), time.monotonic()
        outcomes = await asyncio.gather(
            *(waiter.wait(ctx, client, i + 1) for i in range(config.jobs)), return_exceptions=True
        )
        cpu, wall = cpu_seconds() - before, time.monotonic() - started
    finally:
        await waiter.close(client)
    return _report(list(outcomes), cpu, wall)


async def _ours(argument: dict[str, Any], config: CpuConfig) -> dict[str, Any]:
    """Ours on one event loop: as shipped, or at the SDK's cadence (fixed interval, no push)."""
    import peers
    import wait_efficiency as we

    from abebeats_lab.providers import get_provider
    from abebeats_lab.waiting import WaitPolicy

    provider = argument["provider"]
    ctx = _context(provider, argument["url"], config.scale)
    options = we.client_options(provider, {provider: argument["url"]})
    if argument["kind"] == "cadence":
        every = peers.PEERS[provider][PEER_FOR[provider]].cadence_s(config.scale)
        policy = WaitPolicy(min_interval_s=every, max_interval_s=every, max_planned_s=every,
                            use_stream=False)  # fmt: skip
        if provider == "replicate":
            options["wait_s"] = 0  # Prediction.wait() creates without a hold
    else:
        policy = we.warm_policy(we.WaitConfig(run_mean_s=config.run_mean_s,
                                              run_sd_s=config.run_sd_s), provider)  # fmt: skip
        if provider == "replicate" and config.scale != 1.0:
            options["wait_s"] = ctx.hold_s
    client = get_provider(provider, **options)

    async def one(chosen: Any) -> tuple[str, float]:
        from abebeats_lab.waiting import wait

        job = await client.submit(ctx.request, ctx.route)
        result = await wait(client, job, policy=chosen)
        await client.outputs(job, result.status)
        return job.id, time.time()

    try:
        await one(WaitPolicy(min_interval_s=_WARM_INTERVAL_S))
        _ready()
        profiler = cProfile.Profile(time.process_time) if argument.get("profile") else None
        before, started = cpu_seconds(), time.monotonic()
        if profiler is not None:
            profiler.enable()
        outcomes = await asyncio.gather(
            *(one(policy) for _ in range(config.jobs)), return_exceptions=True
        )
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(argument["profile"])
        cpu, wall = cpu_seconds() - before, time.monotonic() - started
    finally:
        await client.aclose()
    return _report(list(outcomes), cpu, wall)


def _floor_target(url: str) -> tuple[str, dict[str, str]]:
    """One finished Replicate prediction to GET again and again, and the headers to send."""
    import httpx
    import peers

    from abebeats_lab.emulator import EMULATOR_KEYS

    headers = {"Authorization": f"Bearer {EMULATOR_KEYS[FLOOR_PROVIDER]}"}
    ctx = _context(FLOOR_PROVIDER, url, 1.0)
    body = {"input": peers._replicate_input(ctx)}
    created = httpx.post(f"{url}/v1/models/{ctx.route.model}/predictions", json=body,
                         headers={**headers, "Prefer": "wait=5"}, timeout=30.0)  # fmt: skip
    created.raise_for_status()
    return f"{url}/v1/predictions/{created.json()['id']}", headers


def _floor_shape(config: CpuConfig) -> tuple[float, int]:
    """``Prediction.wait()``'s cadence and about as many polls per job as it makes."""
    import peers

    every = peers.REPLICATE_POLL_S * config.scale
    return every, max(1, round(config.run_mean_s / every))


def _floor_sync(argument: dict[str, Any], config: CpuConfig) -> dict[str, Any]:
    """Bare ``httpx.Client`` GETs, a thread per job, as a sync SDK's waiter makes them."""
    import httpx

    url, headers = _floor_target(argument["url"])
    every, polls = _floor_shape(config)
    with httpx.Client(headers=headers, timeout=60.0) as client:

        def job(index: int) -> tuple[str, float]:
            for _ in range(polls):
                time.sleep(every)
                client.get(url).json()
            return f"floor-{index}", time.time()

        client.get(url).json()
        _ready()
        before, started = cpu_seconds(), time.monotonic()
        with ThreadPoolExecutor(max_workers=config.jobs) as pool:
            futures = [pool.submit(job, i) for i in range(config.jobs)]
        outcomes = [f.exception() or f.result() for f in futures]
        cpu, wall = cpu_seconds() - before, time.monotonic() - started
    return {**_report(outcomes, cpu, wall), "requests": polls * config.jobs}


async def _floor_async(argument: dict[str, Any], config: CpuConfig) -> dict[str, Any]:
    """Bare ``httpx.AsyncClient`` GETs on one event loop: the least an asyncio client spends."""
    import httpx

    url, headers = _floor_target(argument["url"])
    every, polls = _floor_shape(config)
    async with httpx.AsyncClient(headers=headers, timeout=60.0) as client:

        async def job(index: int) -> tuple[str, float]:
            for _ in range(polls):
                await asyncio.sleep(every)
                (await client.get(url)).json()
            return f"floor-{index}", time.time()

        (await client.get(url)).json()
        _ready()
        before, started = cpu_seconds(), time.monotonic()
        outcomes = await asyncio.gather(*(job(i) for i in range(config.jobs)),
                                        return_exceptions=True)  # fmt: skip
        cpu, wall = cpu_seconds() - before, time.monotonic() - started
    return {**_report(list(outcomes), cpu, wall), "requests": polls * config.jobs}


def _ready() -> None:
    """Tell the parent the warm-up is done, then block until it says go."""
    print("ready", flush=True)
    sys.stdin.readline()


def _report(outcomes: list[Any], cpu: float, wall: float) -> dict[str, Any]:
    errors = [f"{type(o).__name__}: {o}"[:200] for o in outcomes if isinstance(o, BaseException)]
    return {
        "job_ids": [o[0] for o in outcomes if not isinstance(o, BaseException)],
        "error_count": len(errors),
        "errors": errors[:_MAX_ERRORS_SHOWN],
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def child(text: str) -> None:
    """Subprocess entry: one JSON argument in, ``ready``, then one JSON line out."""
    argument = json.loads(text)
    config = CpuConfig(**argument["config"])
    if argument["kind"] == "peer":
        result = _peer(argument, config)
    elif argument["kind"] == "async_peer":
        result = asyncio.run(_async_peer(argument, config))
    elif argument["kind"] == "floor_sync":
        result = _floor_sync(argument, config)
    elif argument["kind"] == "floor_async":
        result = asyncio.run(_floor_async(argument, config))
    else:
        result = asyncio.run(_ours(argument, config))
    print(json.dumps(result), flush=True)


def main() -> None:
    """This scenario alone: start the emulators, run, print the table (and the profiles)."""
    import pstats

    import report

    parser = argparse.ArgumentParser(
        prog="python benchmarks/client_cpu.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--providers", nargs="*", choices=tuple(PEER_FOR), default=list(PEER_FOR))
    parser.add_argument("--jobs", type=int, default=CpuConfig.jobs, help="jobs per waiter")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="write <provider>-<kind>.prof (cProfile, CPU clock) for our "
                        "waiters into DIR and print each one's top functions")  # fmt: skip
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with EmulatorProcess() as emulators:
        result = run(emulators, CpuConfig(jobs=args.jobs), tuple(args.providers), args.profile)
    print("\n".join(report.cpu_table(result)))
    for path in sorted(args.profile.glob("*.prof")) if args.profile else ():
        print(f"\n== {path.name}: by own CPU time")
        pstats.Stats(str(path)).sort_stats("tottime").print_stats(_PROFILE_LINES)


if __name__ == "__main__":
    main()
