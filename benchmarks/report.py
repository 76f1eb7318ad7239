"""Targets from issues 6, 14 and 16 beside the measured figures, the printed table, metadata.

Targets are reported (PASS/MISS), never asserted: timings depend on the machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import client_cpu
import wait_efficiency as we

__all__ = ["machine", "table", "targets", "versions"]

PACKAGES = (
    "abebeats-lab", "httpx", "httpx-sse", "replicate", "runwayml", "google-genai", "httpx2",
    "fal-client", "av", "numpy", "starlette", "uvicorn",
)  # fmt: skip
PUSH_LAG_S, PUSH_REQUESTS = 0.1, 3
POLL_LAG_P50_S, POLL_LAG_P95_S, POLL_REQUESTS = 1.0, 2.0, 12
FANOUT_RATIO = 1.10
SCALE_RSS_MIB = 400
DOWNLOAD_RSS_MIB, DOWNLOAD_RATIO = 64, 0.8
IMPORT_MS = 250
WAIT_PASSES = {"wait": "short", "wait_long": "long"}


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


def _is_push(lane: dict[str, Any]) -> bool:
    """fal's SSE always pushes; a Replicate create hold does while most jobs end inside it."""
    if lane["provider"] == "pika":
        return True
    hold = lane.get("hold_s")
    return hold is not None and lane["distribution"]["run_mean_s"] < hold


def _wait_targets(label: str, wait: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, lane in wait["lanes"].items():
        ours = lane["waiters"][we.OURS]
        lag, req = ours["lag_s"], ours["requests_per_job"]["median"]
        where = f"wait {label}: {name}"
        if _is_push(lane):
            ok = _le(lag["median"], PUSH_LAG_S) and _le(req, PUSH_REQUESTS)
            target = f"{where}: p50 lag <= {PUSH_LAG_S} s, <= {PUSH_REQUESTS} requests/job"
            measured = f"p50 {_fig(lag['median'], ' s', 3)}, {_fig(req, '', 0)} req"
        else:
            ok = (
                _le(lag["median"], POLL_LAG_P50_S)
                and _le(lag["p95"], POLL_LAG_P95_S)
                and _le(req, POLL_REQUESTS)
            )
            target = (
                f"{where}: p50 lag <= {POLL_LAG_P50_S} s, p95 <= {POLL_LAG_P95_S} s, "
                f"<= {POLL_REQUESTS} requests/job"
            )
            measured = (
                f"p50 {_fig(lag['median'], ' s')}, p95 {_fig(lag['p95'], ' s')}, "
                f"{_fig(req, '', 0)} req"
            )
        rows.append(_row(target, measured, ok and not ours["error_count"]))
        rows.append(_dominance(where, lane["waiters"]))
    return rows


def _le(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _point(waiter: dict[str, Any]) -> tuple[float, float] | None:
    lag, req = waiter["lag_s"]["median"], waiter["requests_per_job"]["median"]
    return None if lag is None or req is None else (lag, req)


LAG_RESOLUTION_S = 0.005
"""Median lags closer than this are one measurement: a gap this small (one event-loop turn on
a busy 2-core machine) changed sign between runs of the same code."""
NOT_OFFICIAL = frozenset({we.OURS, we.OURS_HOLD, we.NAIVE})
"""Rows that are not an official SDK's waiter (the fixed loop is shown for reference only)."""


def _dominance(where: str, waiters: dict[str, Any]) -> dict[str, Any]:
    """Issue 16: ours at least as good as every official waiter on both axes (p50 lag,
    requests per job) and strictly better on one."""
    ours = _point(waiters[we.OURS])
    notes: list[str] = []
    ok = ours is not None and not waiters[we.OURS]["error_count"]
    for other, figures in waiters.items():
        theirs = _point(figures)
        if other in NOT_OFFICIAL or theirs is None or ours is None:
            continue
        lag_worse = ours[0] > theirs[0] + LAG_RESOLUTION_S
        req_worse = ours[1] > theirs[1]
        ahead = ours[0] < theirs[0] - LAG_RESOLUTION_S or ours[1] < theirs[1]
        if lag_worse or req_worse:
            axes = [f"lag {ours[0]:.3f} vs {theirs[0]:.3f} s" if lag_worse else "",
                    f"requests {ours[1]:g} vs {theirs[1]:g}" if req_worse else ""]  # fmt: skip
            notes.append(f"behind {other} on {', '.join(a for a in axes if a)}")
            ok = False
        elif not ahead:
            notes.append(f"tied with {other}")
            ok = False
    measured = "; ".join(notes) or "as good on both, better on one, vs every official waiter"
    target = f"{where}: ours >= every official waiter on lag and requests, > on one"
    return _row(target, measured, ok)


def _cpu_targets(cpu: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for provider, waiters in cpu["providers"].items():
        ours, shipped = waiters[client_cpu.OURS_CADENCE], waiters[client_cpu.OURS]
        mine = ours["cpu_ms_per_status_request"]
        for peer in (client_cpu.PEER_FOR[provider], client_cpu.ASYNC_PEER_FOR[provider]):
            theirs = waiters[peer]
            their = theirs["cpu_ms_per_status_request"]
            ok = (mine is not None and their is not None and mine <= their
                  and not ours["error_count"] and not theirs["error_count"])  # fmt: skip
            rows.append(_row(
                f"cpu: {provider}: ours not dearer per status request than {peer} (same cadence)",
                f"{_fig(mine, ' ms')} vs {_fig(their, ' ms')}; per job, ours as shipped "
                f"{shipped['cpu_ms_per_job']:.1f} ms vs {theirs['cpu_ms_per_job']:.1f} ms",
                ok,
            ))  # fmt: skip
    return rows


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the issue that this run measured, with PASS/MISS."""
    rows: list[dict[str, Any]] = []
    for key, label in WAIT_PASSES.items():
        if key in results:
            rows.extend(_wait_targets(label, results[key]))
    if "cpu" in results:
        rows.extend(_cpu_targets(results["cpu"]))
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
    # CPU per status request is shown, not judged: its absolute line is gone (issue 14); the
    # cpu scenario holds ours to the official SDKs' figure instead.
    return [
        _row(f"scale: {s['jobs']} jobs in flight, zero errors",
             f"{s['error_count']} errors ({s['cpu_ms_per_status_request']:.2f} ms client CPU "
             f"per status request, {s['cpu_ms_per_request']:.2f} ms per request of any kind)",
             s["error_count"] == 0),
        _row(f"scale: peak RSS <= {SCALE_RSS_MIB} MB", f"{s['peak_rss_mib']:.0f} MiB",
             s["peak_rss_mib"] <= SCALE_RSS_MIB),
    ]  # fmt: skip


def _wait_table(label: str, wait: dict[str, Any]) -> list[str]:
    lines = [
        f"Wait efficiency, {label} jobs: {wait['config']['jobs']} concurrent jobs per waiter; "
        "ours uses a warm-history WaitPolicy",
        "| route | job time | waiter | lag p50 (s) | lag p95 (s) | requests/job p50 (p95) | "
        "errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, lane in wait["lanes"].items():
        policy, dist = lane["policy"], lane["distribution"]
        when = f"~N({dist['run_mean_s']:g}, {dist['run_sd_s']:g}) s"
        for label_, w in lane["waiters"].items():
            shown = label_
            if label_ in (we.OURS, we.OURS_HOLD):
                shown += f" (history {policy['expected_run_s']:g} ± {policy['spread_s']:g} s)"
            req = w["requests_per_job"]
            lines.append(
                f"| {name} | {when} | {shown} | {_fig(w['lag_s']['median'], '', 3)} | "
                f"{_fig(w['lag_s']['p95'], '', 3)} | {_fig(req['median'], '', 0)} "
                f"({_fig(req['p95'], '', 0)}) | {w['error_count']} |"
            )
    return lines


def cpu_table(cpu: dict[str, Any]) -> list[str]:
    """The ``cpu`` scenario's table, floors last."""
    c = cpu["config"]
    lines = [
        f"Client CPU (getrusage, one subprocess per waiter): {c['jobs']} concurrent jobs each, "
        f"run time ~N({c['run_mean_s']:g} s, {c['run_sd_s']:g} s)",
        "| provider | waiter | status req/job | CPU ms per status request | CPU ms per request "
        "| CPU ms per job | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for provider, waiters in cpu["providers"].items():
        for label, w in waiters.items():
            lines.append(
                f"| {provider} | {label} | {w['status_requests_per_job']:g} | "
                f"{_fig(w['cpu_ms_per_status_request'])} | {_fig(w['cpu_ms_per_request'])} | "
                f"{_fig(w['cpu_ms_per_job'], '', 1)} | {w['error_count']} |"
            )
    for label, w in cpu.get("floors", {}).items():
        lines.append(
            f"| floor | {label} | {w['status_requests_per_job']:g} | "
            f"{_fig(w['cpu_ms_per_status_request'])} | - | "
            f"{_fig(w['cpu_ms_per_job'], '', 1)} | {w['error_count']} |"
        )
    return lines


def table(document: dict[str, Any]) -> str:
    """The Markdown the README's performance section shows."""
    results = document["results"]
    lines = [f"abebeats-lab benchmarks ({document['mode']}, {document['date']}, "
             f"{document['machine']['cpu_count']} cores, Python {document['machine']['python']})",
             ""]  # fmt: skip
    if document["mode"] == "quick":
        lines += ["--quick: job times, the peers' sleep constants and the Replicate hold are "
                  "scaled down; figures only show that the code paths work.", ""]  # fmt: skip
    for key, label in WAIT_PASSES.items():
        if key in results:
            lines += [*_wait_table(label, results[key]), ""]
    if "cpu" in results:
        lines += [*cpu_table(results["cpu"]), ""]
    lines += ["| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {t['verdict']} |" for t in document["targets"]]
    lines.append(f"\ntotal wall time {document['total_wall_s']:.0f} s")
    return "\n".join(lines)
