"""Targets from issue 6 next to the measured figures, the printed table, and run metadata.

Targets are reported (PASS/MISS), never asserted: timings depend on the machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import wait_efficiency as we

__all__ = ["machine", "table", "targets", "versions"]

PACKAGES = (
    "abebeats-lab", "httpx", "httpx-sse", "replicate", "runwayml", "google-genai", "httpx2",
    "fal-client", "av", "numpy", "starlette", "uvicorn",
)  # fmt: skip
PUSH = ("replicate", "pika")
POLL = ("runway", "veo")
PUSH_LAG_S, PUSH_REQUESTS = 0.1, 3
POLL_LAG_P50_S, POLL_LAG_P95_S, POLL_REQUESTS = 1.0, 2.0, 12
FANOUT_RATIO = 1.10
SCALE_CPU_MS, SCALE_RSS_MIB = 2.0, 400
DOWNLOAD_RSS_MIB, DOWNLOAD_RATIO = 64, 0.8
IMPORT_MS = 250


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_avg_at_end": os.getloadavg(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def versions() -> dict[str, str | None]:
    """Installed versions of the packages the figures depend on."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _row(target: str, measured: str, ok: bool | None) -> dict[str, Any]:
    verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
    return {"target": target, "measured": measured, "verdict": verdict}


def _fig(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _wait_targets(wait: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, block in wait["providers"].items():
        ours = block["waiters"][we.OURS]
        lag, req = ours["lag_s"], ours["requests_per_job"]["median"]
        if name in PUSH:
            ok = _le(lag["median"], PUSH_LAG_S) and _le(req, PUSH_REQUESTS)
            target = f"{name}: p50 lag <= {PUSH_LAG_S} s, <= {PUSH_REQUESTS} requests/job"
            measured = f"p50 {_fig(lag['median'], ' s', 3)}, {_fig(req, '', 0)} req"
        else:
            ok = (
                _le(lag["median"], POLL_LAG_P50_S)
                and _le(lag["p95"], POLL_LAG_P95_S)
                and _le(req, POLL_REQUESTS)
            )
            target = (
                f"{name}: p50 lag <= {POLL_LAG_P50_S} s, p95 <= {POLL_LAG_P95_S} s, "
                f"<= {POLL_REQUESTS} requests/job"
            )
            measured = (
                f"p50 {_fig(lag['median'], ' s')}, p95 {_fig(lag['p95'], ' s')}, "
                f"{_fig(req, '', 0)} req"
            )
        rows.append(_row(target, measured, ok and not ours["error_count"]))
        rows.extend(_pareto(name, block["waiters"]))
    return rows


def _le(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _point(waiter: dict[str, Any]) -> tuple[float, float] | None:
    lag, req = waiter["lag_s"]["median"], waiter["requests_per_job"]["median"]
    return None if lag is None or req is None else (lag, req)


LAG_RESOLUTION_S = 0.005
"""Median lags closer than this are one measurement: a gap this small (one event-loop turn on
a busy 2-core machine) changed sign between runs of the same code."""


def _pareto(name: str, waiters: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours against every other waiter: none better on both, ours ahead on at least one."""
    rows = []
    for label in (we.OURS, we.OURS_HOLD):
        if label not in waiters:
            continue
        ours = _point(waiters[label])
        beaten_by: list[str] = []
        tied_with: list[str] = []
        for other, figures in waiters.items():
            theirs = _point(figures)
            if other in (we.OURS, we.OURS_HOLD) or theirs is None or ours is None:
                continue
            ahead = ours[0] < theirs[0] - LAG_RESOLUTION_S or ours[1] < theirs[1]
            behind = theirs[0] < ours[0] - LAG_RESOLUTION_S or theirs[1] < ours[1]
            if behind and not ahead:
                beaten_by.append(other)
            elif not ahead:
                tied_with.append(other)
        measured = "on the front, ahead of every peer"
        if beaten_by or tied_with:
            measured = "; ".join(
                part for part in (
                    f"dominated by {', '.join(beaten_by)}" if beaten_by else "",
                    f"not strictly ahead of {', '.join(tied_with)}" if tied_with else "",
                ) if part
            )  # fmt: skip
        target = f"{name}: {label} on the Pareto front (p50 lag, requests)"
        rows.append(_row(target, measured, ours is not None and not (beaten_by or tied_with)))
    return rows


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue that this run measured, with PASS/MISS."""
    rows: list[dict[str, Any]] = []
    if "wait" in results:
        rows.extend(_wait_targets(results["wait"]))
    if "fanout" in results:
        f = results["fanout"]
        rows.append(
            _row(
                f"fan-out wall <= {FANOUT_RATIO} x ideal",
                f"{f['wall_s']:.1f} s / {f['ideal_s']:.1f} s = {f['ratio']:.3f}",
                f["ratio"] <= FANOUT_RATIO and f["succeeded"] == f["jobs"],
            )
        )
    if "scale" in results:
        rows.extend(_scale_targets(results["scale"]))
    if "download" in results:
        d = results["download"]
        rows.append(
            _row(
                f"download RSS growth <= {DOWNLOAD_RSS_MIB} MiB at >= {DOWNLOAD_RATIO} x bare "
                "httpx",
                f"{d['rss_growth_mib']:.1f} MiB, {d['throughput_ratio']:.2f} x "
                f"({d.get('throughput_ratio_vs_file', float('nan')):.2f} x bare httpx to a file)",
                d["rss_growth_mib"] <= DOWNLOAD_RSS_MIB and d["throughput_ratio"] >= DOWNLOAD_RATIO,
            )
        )
    if "import" in results:
        i = results["import"]
        rows.append(
            _row(
                f"import adds <= {IMPORT_MS} ms, no heavy SDK",
                f"+{i['added_ms']:.0f} ms ({i['ratio']:.2f} x bare start), heavy: "
                f"{', '.join(i['heavy_modules']) or 'none'}",
                i["added_ms"] <= IMPORT_MS and not i["heavy_modules"],
            )
        )
    return rows


def _scale_targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _row(f"scale: {s['jobs']} jobs in flight, zero errors", f"{s['error_count']} errors",
             s["error_count"] == 0),
        _row(f"scale: <= {SCALE_CPU_MS} ms client CPU per status request",
             f"{s['cpu_ms_per_status_request']:.2f} ms ({s['cpu_ms_per_request']:.2f} ms "
             "per request of any kind)", s["cpu_ms_per_status_request"] <= SCALE_CPU_MS),
        _row(f"scale: peak RSS <= {SCALE_RSS_MIB} MB", f"{s['peak_rss_mib']:.0f} MiB",
             s["peak_rss_mib"] <= SCALE_RSS_MIB),
    ]  # fmt: skip


def _wait_table(wait: dict[str, Any]) -> list[str]:
    lines = [
        f"Wait efficiency: {wait['config']['jobs']} concurrent jobs per waiter, run time "
        f"~N({wait['config']['run_mean_s']:g} s, {wait['config']['run_sd_s']:g} s); "
        "ours uses a warm-history WaitPolicy",
        "| provider | waiter | lag p50 (s) | lag p95 (s) | requests/job p50 (p95) | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name, block in wait["providers"].items():
        policy = block["policy"]
        for label, w in block["waiters"].items():
            shown = label
            if label in (we.OURS, we.OURS_HOLD):
                shown += f" (history {policy['expected_run_s']:g} ± {policy['spread_s']:g} s)"
            req = w["requests_per_job"]
            lines.append(
                f"| {name} | {shown} | {_fig(w['lag_s']['median'], '', 3)} | "
                f"{_fig(w['lag_s']['p95'], '', 3)} | {_fig(req['median'], '', 0)} "
                f"({_fig(req['p95'], '', 0)}) | {w['error_count']} |"
            )
    return lines


def table(document: dict[str, Any]) -> str:
    """The Markdown the README's performance section shows."""
    results = document["results"]
    lines = [f"abebeats-lab benchmarks ({document['mode']}, {document['date']}, "
             f"{document['machine']['cpu_count']} cores, Python {document['machine']['python']})",
             ""]  # fmt: skip
    if "wait" in results:
        lines += [*_wait_table(results["wait"]), ""]
    lines += ["| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in document["targets"]]
    lines.append(f"\ntotal wall time {document['total_wall_s']:.0f} s")
    return "\n".join(lines)
