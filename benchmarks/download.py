"""Scenario 4: a ~1 GiB output over loopback, `media.download` against a bare httpx stream.

A separate server process (``mp4_server.py``) streams a valid MP4 padded with a ``free`` box.
Each client runs in its own subprocess, so each peak RSS is its own: growth is the peak
(``ru_maxrss``) minus the RSS just before the download started. `media.download` writes to a
temporary file, checks the signature, probes with PyAV, hashes and renames, so its time is
the whole job a caller waits for; the bare stream only reads into /dev/null. A third client,
the same bare loop writing to a file, shows what the disk alone costs on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, current_rss_mib, peak_rss_mib, run_json_subprocess

__all__ = ["DownloadConfig", "run"]

_MODES = ("bare_httpx", "bare_httpx_to_file", "media_download")
_MIB = 1024**2
_SUBPROCESS_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DownloadConfig:
    """The output size in bytes."""

    size_bytes: int = 1024**3
    repeats: int = 3
    """Rounds of all three clients, interleaved; each figure is the median round."""


def run(config: DownloadConfig) -> dict[str, Any]:
    """Start the server, measure both clients one after the other, stop the server."""
    server = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "mp4_server.py"), str(config.size_bytes)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["url"]
        rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in _MODES}
        for _ in range(config.repeats):
            for mode in _MODES:
                rounds[mode].append(
                    run_json_subprocess(
                        [str(BENCH_DIR / "download.py"), mode, url],
                        timeout_s=_SUBPROCESS_TIMEOUT_S,
                    )
                )
        results = {mode: _median_round(runs) for mode, runs in rounds.items()}
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    bare, ours = results["bare_httpx"], results["media_download"]
    to_file = results["bare_httpx_to_file"]
    return {
        "config": asdict(config),
        "bare_httpx": bare,
        "bare_httpx_to_file": to_file,
        "media_download": ours,
        "throughput_ratio": round(ours["mib_per_s"] / bare["mib_per_s"], 3),
        # The same bytes written to the same disk by a bare httpx loop: what a download that
        # keeps the file could reach on this machine (disk writeback, not the client, limits it).
        "throughput_ratio_vs_file": round(ours["mib_per_s"] / to_file["mib_per_s"], 3),
        "rss_growth_mib": ours["rss_growth_mib"],
    }


def _median_round(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput, plus every round's throughput and the worst
    RSS growth seen (memory is judged on the worst round, speed on the typical one)."""
    ordered = sorted(runs, key=lambda run: float(run["mib_per_s"]))
    median = dict(ordered[len(ordered) // 2])
    median["rounds_mib_per_s"] = [run["mib_per_s"] for run in runs]
    median["rss_growth_mib"] = max(float(run["rss_growth_mib"]) for run in runs)
    return median


async def _bare(url: str) -> int:
    # /dev/null is opened in the loop: a null write never blocks.
    return await _bare_stream(url, Path(os.devnull))


async def _bare_to_file(url: str) -> int:
    with tempfile.TemporaryDirectory(prefix="abebeats-download-") as folder:
        return await _bare_stream(url, Path(folder) / "bare.bin")


async def _bare_stream(url: str, target: Path) -> int:
    """The plainest loop httpx offers: chunks as they arrive, written in the loop."""
    import httpx

    received = 0
    timeout = httpx.Timeout(60.0, connect=10.0)
    with target.open("wb") as sink:
        async with httpx.AsyncClient(timeout=timeout) as client, client.stream("GET", url) as r:
            r.raise_for_status()
            async for chunk in r.aiter_raw():
                received += len(chunk)
                sink.write(chunk)
    return received


async def _ours(url: str) -> int:
    from abebeats_lab.media import download as media

    with tempfile.TemporaryDirectory(prefix="abebeats-download-") as folder:
        output = await media.download(url, Path(folder) / "big.mp4")
        return output.probe.bytes


def main() -> None:
    """Subprocess entry: ``download.py <bare_httpx|media_download> <url>``, one JSON line out."""
    mode, url = sys.argv[1], sys.argv[2]
    import httpx  # noqa: F401 - imported before the baseline so both modes start alike

    from abebeats_lab.media import download  # noqa: F401

    before = current_rss_mib()
    started = time.monotonic()
    runner = {"bare_httpx": _bare, "bare_httpx_to_file": _bare_to_file, "media_download": _ours}
    size = asyncio.run(runner[mode](url))
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "bytes": size,
                "seconds": round(elapsed, 3),
                "mib_per_s": round(size / _MIB / elapsed, 1),
                "rss_before_mib": round(before, 1),
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "rss_growth_mib": round(peak_rss_mib() - before, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
