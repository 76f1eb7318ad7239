"""Scenario: client CPU per status request, ours beside each official SDK's own waiter.

Per provider, three waiters run the same number of jobs from the same run-time distribution
at the same moment, each in its own subprocess so ``getrusage(RUSAGE_SELF)`` is its CPU alone:

- the SDK's own waiter (runwayml ``wait_for_task_output``, replicate ``Prediction.wait()``,
  google-genai's documented ``operations.get`` loop, fal_client ``handle.get()``), one thread
  per job on one shared SDK client;
- ours at the SDK's cadence (a fixed interval equal to the SDK's, no push stream or create
  hold), so both make about as many status requests and the figures compare like for like;
- ours as shipped (warm-history policy, push stream, create hold), for its CPU per job.

Each subprocess finishes one quick job first (lazy imports, first connections, model classes
are not charged), reports ready, and waits; the parent resets the emulators, sets the measured
scenario and says go. CPU is counted from go to the last job's result and divided by the
status requests the emulator logged for that subprocess's jobs.

``python benchmarks/client_cpu.py <json>`` is the subprocess entry.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from _common import BENCH_DIR, EmulatorProcess, cpu_seconds, peak_rss_mib

__all__ = ["OURS", "OURS_CADENCE", "CpuConfig", "run"]

PEER_FOR = {
    "runway": "runwayml wait_for_task_output",
    "replicate": "replicate Prediction.wait()",
    "veo": "genai loop, sleep 10 s",
    "pika": "fal_client subscribe",
}
"""The one polling waiter per official SDK whose cost per status request ours is held to."""
OURS_CADENCE = "ours, SDK cadence"
OURS = "ours"
_MS = 1000.0
_READY_TIMEOUT_S = 120.0
_WARM_SCALE = 0.01
"""Peer sleeps during the warm-up job (it exercises the code paths, not the cadence)."""
_WARM_INTERVAL_S = 0.05
_MAX_ERRORS_SHOWN = 3


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


def _waiters() -> list[tuple[str, str, str]]:
    """(provider, label, kind) for every subprocess."""
    rows = []
    for provider, peer in PEER_FOR.items():
        rows += [(provider, peer, "peer"), (provider, OURS_CADENCE, "cadence"),
                 (provider, OURS, "ours")]  # fmt: skip
    return rows


def run(emulators: EmulatorProcess, config: CpuConfig) -> dict[str, Any]:
    """Start every waiter's subprocess, release them together, then count requests."""
    fast = {"queue_s": {"mean": 0.0}, "run_s": {"mean": 0.05}, "progress": True}
    emulators.reset()
    emulators.set_scenario(fast)
    procs: dict[tuple[str, str], subprocess.Popen[str]] = {}
    try:
        for provider, label, kind in _waiters():
            url = emulators.urls[provider]
            argument = json.dumps(
                {"provider": provider, "label": label, "kind": kind, "url": url,
                 "config": asdict(config)}
            )  # fmt: skip
            procs[(provider, label)] = subprocess.Popen(
                [sys.executable, str(BENCH_DIR / "client_cpu.py"), argument],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        for key, proc in procs.items():
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{key} did not get ready")
        for seed, provider in enumerate(PEER_FOR):
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
    providers: dict[str, Any] = {}
    for provider in PEER_FOR:
        records = emulators.requests(provider)
        tags = _tags(emulators.urls[provider]) if provider == "replicate" else {}
        providers[provider] = {
            label: _figures(out, records, tags)
            for (name, label), out in outputs.items()
            if name == provider
        }
    return {"config": asdict(config), "wall_s": round(wall, 2), "providers": providers}


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
        before, started = cpu_seconds(), time.monotonic()
        outcomes = await asyncio.gather(
            *(one(policy) for _ in range(config.jobs)), return_exceptions=True
        )
        cpu, wall = cpu_seconds() - before, time.monotonic() - started
    finally:
        await client.aclose()
    return _report(list(outcomes), cpu, wall)


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


def main() -> None:
    """Subprocess entry: one JSON argument in, ``ready``, then one JSON line out."""
    argument = json.loads(sys.argv[1])
    config = CpuConfig(**argument["config"])
    if argument["kind"] == "peer":
        result = _peer(argument, config)
    else:
        result = asyncio.run(_ours(argument, config))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
