"""The commands that submit nothing: runs, report, score, routes, history and emulate (read a
run folder, the capability data or the run-time history; measure clips; serve emulators)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abebeats_lab._types import VideoRequest
from abebeats_lab.cli.exits import EXIT_FAILURE
from abebeats_lab.errors import ValidationError

LINE_WIDTH = 100
"""`routes` keeps its lines this short."""
SPAN_MIN = 3
"""A duration list longer than this, evenly spaced, prints as a range."""
SCORE_COLUMNS = ("motion", "flicker", "sharpness", "black_fraction", "loudness_lufs")
"""The metric medians `score` prints per route; every metric is in quality.sqlite."""


async def cmd_runs(args: argparse.Namespace) -> int:
    from abebeats_lab.cli.checks import run_folders
    from abebeats_lab.run import api as runner

    folders = run_folders(Path(args.run_dir))
    parent = folders != [Path(args.run_dir)]  # a folder of run folders (abebeats-runs)
    rows = []
    for folder in folders:
        listings = runner.list_runs(folder)
        rows += [
            [
                *([str(folder)] if parent else []),
                r.run_id,
                r.created_at[:19],
                r.kind,
                str(r.jobs),
                ", ".join(f"{n} {state}" for state, n in sorted(r.states.items())) or "-",
            ]
            for r in listings
        ]
    header = ["run", "created (UTC)", "kind", "jobs", "states"]
    _print_table(["folder", *header] if parent else header, rows)
    latest = next((r.run_id for r in reversed(listings) if r.jobs), None)
    if parent:
        print("\nreport, resume and score take one of these folders")
    elif latest is not None:
        print(f"\nreport and resume use {latest} (the latest run with jobs) unless --run is given")
    return 0


async def cmd_report(args: argparse.Namespace) -> int:
    from abebeats_lab.views import report

    embed_max_bytes = report.EMBED_MAX_BYTES
    if args.embed_max_mb is not None:
        if not args.embed_max_mb >= 0:  # also refuses NaN
            raise ValidationError("--embed-max-mb", args.embed_max_mb, "a size of 0 or more")
        embed_max_bytes = int(args.embed_max_mb * report.MIB)
    written = report.write_report(
        args.run_dir,
        out=args.out,
        run_id=args.run,
        score=args.score,
        clip=args.clip,
        embed_max_bytes=embed_max_bytes,
        by=args.by,
    )
    print(written)
    return 0


async def cmd_score(args: argparse.Namespace) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from abebeats_lab.quality.scores import QUALITY_DB, score

    pool = None
    if args.workers is not None and args.workers < 1:
        raise ValidationError("--workers", args.workers, "a whole number of 1 or more")
    if args.workers:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=args.workers, mp_context=context)
    try:
        frame = await asyncio.to_thread(
            score,
            args.run_dir,
            run_id=args.run,
            executor=pool,
            refresh=args.refresh,
            clip=args.clip,
        )
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    _print_scores(frame)
    print(f"\nfigures stored in {Path(args.run_dir) / QUALITY_DB}")
    failed = frame["error"].notna().sum()
    if failed:
        print(f"abebeats-lab: {failed} clip(s) could not be measured", file=sys.stderr)
    return EXIT_FAILURE if failed else 0


def _print_scores(frame: Any) -> None:
    """Per route: clips measured and the medians of `SCORE_COLUMNS`."""
    from abebeats_lab import fmt
    from abebeats_lab.views.summary import SUMMARY_WIDTH

    lines = []
    for route, group in frame.groupby("route", sort=True):
        measured = int(group["error"].isna().sum())
        medians = [fmt.value(_median(group[name])) for name in SCORE_COLUMNS]
        lines.append([str(route), f"{measured}/{len(group)}", *medians])
    headers = ("route", "clips", *SCORE_COLUMNS)
    right = tuple(range(1, len(headers)))
    for line in fmt.table(headers, lines, max_width=SUMMARY_WIDTH, right=right):
        print(line)
    print("medians over each route's measured clips; every metric: abebeats_lab.quality.metrics")


def _median(values: Any) -> float | None:
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce").dropna()
    return round(float(numbers.median()), 3) if len(numbers) else None


async def cmd_routes(args: argparse.Namespace) -> int:
    from abebeats_lab import capabilities, fmt

    listed = capabilities.priced_routes()
    if args.model:
        capabilities.routes_for_model(args.model)  # an unknown model names the known ones
        listed = [(n, c) for n, c in listed if c.model == args.model and "*" not in n]
    groups: dict[str, list[list[str]]] = {}
    local: set[str] = set()
    unknown: list[tuple[str, str]] = []
    user: list[str] = []
    for name, caps in listed:
        if caps.runs_locally:
            local.add(name.partition(":")[0])
        quote = caps.quote(VideoRequest("-"))  # at the route's defaults, silent
        if caps.price.source == capabilities.USER_SOURCE:
            user.append(name)
        if not quote.known:
            unknown.append((name, quote.source))
        cells = [
            name,
            caps.model or "-",
            _spans(caps.durations),
            _range_of(caps.resolutions),
            fmt.rate(quote.usd_per_s),
        ]
        groups.setdefault(name.partition(":")[0], []).append(cells)
    header = ["route", "model", "secs", "resolution", "price"]
    widths = [max(len(r[i]) for rows in groups.values() for r in [header, *rows]) for i in range(5)]
    print(_line(header, widths))
    for provider, rows in groups.items():
        print(f"# {provider}: {_key_state(provider, runs_locally=provider in local)}")
        for row in rows:
            print(_line(row, widths))
    notes = (
        [f"{n}: price {capabilities.catalogue_text(c)}" for n, c in listed] if args.model else []
    )
    if user:
        notes.append(f"your price (prices.toml or --price): {', '.join(user)}")
    if unknown and not args.model:
        notes.append(
            f"unknown: no trustworthy price found for {len(unknown)} route(s); each reason: "
            "routes --model MODEL; give one with --price ROUTE=USD_PER_S or prices.toml"
        )
    for note in notes:
        print(textwrap.fill(note, LINE_WIDTH, subsequent_indent="    ", break_on_hyphens=False))
    return 0


def _spans(values: Sequence[int]) -> str:
    """``3,4,5,6`` as ``3-6``, ``6,8,..,20`` as ``6-20/2``; short uneven lists stay lists."""
    ordered = sorted(values)
    steps = {b - a for a, b in itertools.pairwise(ordered)}
    if len(ordered) > SPAN_MIN and len(steps) == 1:
        (step,) = steps
        return f"{ordered[0]}-{ordered[-1]}" + ("" if step == 1 else f"/{step}")
    return ",".join(map(str, ordered))


def _range_of(resolutions: Sequence[str]) -> str:
    """Two resolutions as a list, more as ``first-last`` (the data lists them ascending)."""
    if len(resolutions) > 2:
        return f"{resolutions[0]}-{resolutions[-1]}"
    return ",".join(resolutions)


def _key_state(provider: str, *, runs_locally: bool) -> str:
    from abebeats_lab import config

    if runs_locally:
        return "no key needed"
    env = config.PROVIDER_ENV[provider]
    if config.key_for(provider, required=False) is None:
        return f"{' or '.join(env.keys)} missing (use --emulate)"
    if env.also and config.env_first(*env.also) is None:
        return f"key set, {' or '.join(env.also)} missing (use --emulate)"
    return "key set"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


async def cmd_history(args: argparse.Namespace) -> int:
    from abebeats_lab import history

    _check_history_routes(args.route or ())
    if args.clear:
        removed = history.clear(args.route)
        which = ", ".join(args.route) if args.route else "every route"
        print(f"forgot {removed} run times ({which}) in {history.history_path()}")
        return 0
    kept = history.summaries(args.route)
    print(f"run-time history: {history.history_path()}")
    rows = [
        [h.route, "emulated" if h.emulated else "real", str(h.samples), f"{h.median_s:.1f}s",
         f"{h.spread_s:.1f}s", h.last_recorded_at]
        for h in kept
    ]  # fmt: skip
    if rows:
        _print_table(["route", "kind", "jobs", "median", "spread", "last"], rows)
    else:
        which = f" for {', '.join(args.route)}" if args.route else ""
        print(f"no run times recorded{which} yet")
    return 0


def _check_history_routes(routes: Sequence[str]) -> None:
    """A route neither in the history nor in the route table is a typo: an `UnknownRouteError`
    naming its provider's routes (one the table no longer lists can still be shown or
    cleared while the history holds it)."""
    from abebeats_lab import capabilities, history

    recorded = {h.route for h in history.summaries()} if routes else set()
    for route in routes:
        if route not in recorded:
            capabilities.capabilities_for(route)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


async def cmd_emulate(args: argparse.Namespace) -> int:
    from abebeats_lab.emulator import Emulators

    with Emulators(base_port=args.port) as emulators:
        for provider in emulators.servers:
            print(f"{provider:10s} {emulators.url(provider)}")
        print("\n# point the clients (and the official SDKs) at the emulators:")
        for name, value in emulators.env().items():
            print(f"export {name}={value}")
        print("\n# Ctrl-C stops the emulators", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(args.seconds if args.seconds else float("inf"))
    return 0
