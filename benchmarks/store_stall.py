"""How long the run store blocks the event loop during a 50-job emulated comparison.

Five emulated routes x 10 repeats (in-process emulators, `Scenario.fast`, dense polling),
all at once (a cap of 10 per provider). Every `RunStore` method is timed while it runs on
the event loop's own thread: that time is time no other job's status, download or progress
event could run. A loop-lag probe (a task asking to wake every millisecond) gives the worst
lateness of the loop from every cause, for context. Prints a table and writes
``store-stall-latest.json`` into ``--out``.

    python benchmarks/store_stall.py [--repeats 10] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from abebeats_lab import VideoRequest
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.history import CACHE_DIR_ENV
from abebeats_lab.run import api as runner
from abebeats_lab.store import RunStore
from abebeats_lab.waiting import WaitPolicy

ROUTES = (
    "runway:gen4.5",
    "replicate:google/veo-3-fast",
    "pika:fal-ai/pika/v2.2/text-to-video",
    "veo:veo-3.1-fast-generate-001",
    "gemini:gemini-omni-flash-preview",
)
REQUEST = VideoRequest("a kite over dunes")
"""Every route takes its own default duration, ratio and resolution."""
POLICY = WaitPolicy(deadline_s=120.0, min_interval_s=0.02, max_interval_s=0.1)
CAP = 10
WRITES = ("save", "save_soon", "insert", "add_run")
READS = ("rows", "runs", "run_time_prior")
PROBE_S = 0.001
MS = 1000.0


class LoopTimer:
    """Seconds each `RunStore` method spent on the loop's thread, per method name."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = {}
        self.loop_thread = threading.get_ident()

    @contextmanager
    def installed(self) -> Iterator[None]:
        originals = {n: getattr(RunStore, n) for n in (*WRITES, *READS) if hasattr(RunStore, n)}
        for name, method in originals.items():
            setattr(RunStore, name, self._timed(name, method))
        try:
            yield
        finally:
            for name, method in originals.items():
                setattr(RunStore, name, method)

    def _timed(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self.loop_thread:
                return method(*args, **kwargs)
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.calls.setdefault(name, []).append(time.perf_counter() - start)

        return timed

    def figures(self, names: tuple[str, ...]) -> dict[str, float]:
        times = [t for n in names for t in self.calls.get(n, [])]
        return {
            "calls": len(times),
            "total_ms": round(sum(times) * MS, 1),
            "max_ms": round(max(times, default=0.0) * MS, 2),
            "median_ms": round(statistics.median(times) * MS, 3) if times else 0.0,
        }


async def _probe(lateness: list[float], stop: asyncio.Event) -> None:
    """Wake every millisecond and note how late each wake-up came."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(PROBE_S)
        lateness.append(time.perf_counter() - start - PROBE_S)


async def _run(run_dir: Path, repeats: int) -> dict[str, Any]:
    timer, lateness, stop = LoopTimer(), [], asyncio.Event()
    probe = asyncio.create_task(_probe(lateness, stop))
    started = time.perf_counter()
    with timer.installed():
        result = await runner.compare(
            [REQUEST.prompt],
            list(ROUTES),
            REQUEST,
            repeats=repeats,
            run_dir=run_dir,
            concurrency=dict.fromkeys((r.partition(":")[0] for r in ROUTES), CAP),
            policy=POLICY,
        )
    wall_s = time.perf_counter() - started
    stop.set()
    await probe
    states = sorted({str(row.state) for row in result.rows})
    lateness.sort()
    return {
        "jobs": len(result.rows),
        "states": states,
        "wall_s": round(wall_s, 2),
        "store_writes_on_loop": timer.figures(WRITES),
        "store_reads_on_loop": timer.figures(READS),
        "by_method": {name: timer.figures((name,)) for name in sorted(timer.calls)},
        "loop_lag_max_ms": round(lateness[-1] * MS, 2),
        "loop_lag_p99_ms": round(lateness[int(len(lateness) * 0.99)] * MS, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="jobs per route (5 routes)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_DIR_ENV] = str(Path(tmp) / "cache")
        providers = [route.partition(":")[0] for route in ROUTES]
        with Emulators(providers, Scenario.fast()) as emulators:
            os.environ.update(emulators.env())
            figures = asyncio.run(_run(Path(tmp) / "run", args.repeats))
    writes, reads = figures["store_writes_on_loop"], figures["store_reads_on_loop"]
    rows = [
        ("jobs", f"{figures['jobs']} ({', '.join(figures['states'])})"),
        ("wall time", f"{figures['wall_s']} s"),
        ("store writes on the loop", f"{writes['calls']} calls, {writes['total_ms']} ms in all"),
        ("  longest / median", f"{writes['max_ms']} ms / {writes['median_ms']} ms"),
        ("store reads on the loop", f"{reads['calls']} calls, {reads['total_ms']} ms in all"),
        ("  longest / median", f"{reads['max_ms']} ms / {reads['median_ms']} ms"),
        ("loop lag, any cause: max / p99", f"{figures['loop_lag_max_ms']} / "
         f"{figures['loop_lag_p99_ms']} ms"),
    ]  # fmt: skip
    rows += [(f"  {name}", f"{f['calls']} calls, longest {f['max_ms']} ms")
             for name, f in figures["by_method"].items()]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    document = {"date": datetime.now(UTC).isoformat(), "python": sys.version.split()[0]}
    document.update(figures)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "store-stall-latest.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
