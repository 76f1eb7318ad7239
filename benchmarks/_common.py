"""Shared plumbing for the benchmarks: the emulator process, its control routes, statistics.

The emulators run in a separate process (``python -m abebeats_lab.emulator``), so the CPU and
memory this process spends are the client's alone, and the emulator's clock-based truth
(created/started/finished per job, every request it received) is read back over HTTP.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "EmulatorControl",
    "EmulatorProcess",
    "cpu_seconds",
    "current_rss_mib",
    "peak_rss_mib",
    "percentile",
    "requests_by_job",
    "run_json_subprocess",
    "summary",
]

_CONTROL_TIMEOUT_S = 120.0
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
_KIB_PER_MIB = 1024
_P95 = 0.95
BENCH_DIR = Path(__file__).resolve().parent


class EmulatorControl:
    """The emulators' ``/_emulator/*`` control routes, for any process that knows the URLs."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self._http = httpx.Client(timeout=_CONTROL_TIMEOUT_S)

    def close(self) -> None:
        """Close the control connection."""
        self._http.close()

    def set_scenario(self, scenario: dict[str, Any], *providers: str) -> None:
        """PUT a `Scenario.to_dict()`-shaped dict on some (default: all) emulators."""
        for name in providers or tuple(self.urls):
            response = self._http.put(f"{self.urls[name]}/_emulator/scenario", json=scenario)
            response.raise_for_status()

    def reset(self, *providers: str) -> None:
        """Forget every job and logged request."""
        for name in providers or tuple(self.urls):
            self._http.post(f"{self.urls[name]}/_emulator/reset").raise_for_status()

    def truth(self, provider: str) -> dict[str, dict[str, Any]]:
        """Per job id: created/started/finished wall-clock times as the emulator recorded them."""
        response = self._http.get(f"{self.urls[provider]}/_emulator/truth")
        response.raise_for_status()
        return {job["id"]: job for job in response.json()["jobs"]}

    def requests(self, provider: str) -> list[dict[str, Any]]:
        """Every request the emulator received: at, method, path, kind, job_id."""
        response = self._http.get(f"{self.urls[provider]}/_emulator/requests")
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records


class EmulatorProcess(EmulatorControl):
    """``python -m abebeats_lab.emulator`` in a child process; stops when its stdin closes."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "abebeats_lab.emulator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("the emulator process exited before announcing its URLs")
        announced = json.loads(line)
        super().__init__(announced["urls"])
        self.env: dict[str, str] = announced["env"]

    @property
    def pid(self) -> int:
        """The emulator process id (its CPU is not ours)."""
        return self._proc.pid

    def stop(self) -> None:
        """Close its stdin (it exits) and wait; kill it only if it does not go."""
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if hasattr(self, "_http"):
            self.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def requests_by_job(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Requests each job cost after its create: status, stream and result requests.

    Creates are left out because not every emulator can tag a create with its job id (fal's
    logs it before the id exists); callers add the one create every job makes. Downloads of
    the output are not waiting and are left out too.
    """
    counts: dict[str, int] = {}
    for record in records:
        job_id = record.get("job_id")
        if job_id and record.get("kind") not in ("create", "download"):
            counts[job_id] = counts.get(job_id, 0) + 1
    return counts


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: a p95 of 20 values is the 19th)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float | None]:
    """Median, p95 and max, or Nones when nothing was measured."""
    if not values:
        return {"median": None, "p95": None, "max": None}
    return {
        "median": statistics.median(values),
        "p95": percentile(values, _P95),
        "max": max(values),
    }


def cpu_seconds() -> float:
    """User plus system CPU this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """The highest resident set size of this process image (``VmHWM``).

    Not ``ru_maxrss``: Linux carries that across ``exec``, so a child started by a big
    parent would report the parent's peak.
    """
    with Path("/proc/self/status").open() as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / _KIB_PER_MIB
    raise RuntimeError("no VmHWM in /proc/self/status")


def current_rss_mib() -> float:
    """The resident set size right now (from /proc, so it can fall as well as rise)."""
    with Path("/proc/self/statm").open() as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024**2


def run_json_subprocess(args: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run ``python <args>`` and parse the JSON object it prints last."""
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        tail = completed.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"{args[0]} exited {completed.returncode}: {' | '.join(tail)}")
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result.setdefault("subprocess_wall_s", round(time.monotonic() - started, 3))
    return result
