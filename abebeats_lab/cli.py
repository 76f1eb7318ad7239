"""The ``abebeats-lab`` command: a thin view over the runner.

Every path argument is checked before anything is submitted. User errors print one line
to stderr; tracebacks are for bugs only. Exit codes: 0 every job succeeded, 1 a job did not
succeed or something failed, 2 bad input (nothing was submitted), 130 interrupted (remote
jobs cancelled where possible; the command that finishes the run is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import io
import itertools
import json
import logging
import os
import shlex
import shutil
import sqlite3
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from abebeats_lab import JobState, __version__
from abebeats_lab._text import cut
from abebeats_lab._types import Route, VideoRequest
from abebeats_lab.errors import LabError, ValidationError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from abebeats_lab.run.job import JobEvent

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
PathCheck = Callable[[Path, str], None]
DESCRIPTION = """\
Send the same prompt and settings to several AI-video providers (Runway, Veo, Pika via
fal, Replicate, and a local renderer), record every job in a run directory and compare
time, cost and output. --emulate runs a command offline against built-in emulators of
the providers (no key, no network)."""
EPILOG = """exit codes:
  0    success: every job of the run succeeded
  1    failure: a job failed, was cancelled, is ambiguous or unfinished (the summary's
       last line counts them), or a provider, a missing key, a busy run, a file that
       cannot be written
  2    bad input (a setting, a route, a path, text that is not UTF-8): nothing was submitted
  130  interrupted (Ctrl-C): remote jobs cancelled where possible; the command that
       finishes the run is printed"""
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
PROMPT_CHARS = 30
"""A prompt is shortened to about this many characters in progress lines."""
ERROR_CHARS = 100
LINE_WIDTH = 100
"""`routes` keeps its lines this short (user-priced rows add " (user)")."""
SPAN_MIN = 3
"""A duration list longer than this, evenly spaced, prints as a range."""
FINAL_STATES = frozenset(state for state in JobState if state.terminal)
DEMO_PROMPTS = (
    "a paper boat drifting down a neon river at night",
    "a red kite over desert dunes at golden hour",
    "a lighthouse in a storm, waves crashing",
)
DEMO_ROUTES = (
    "local:procedural",
    "runway:gen4.5",
    "replicate:google/veo-3-fast",
    "veo:veo-3.1-fast-generate-001",
    "pika:fal-ai/pika/v2.2/text-to-video",
    "fal:fal-ai/veo3.1/fast",
    "runway:veo3.1_fast",
)
"""Every provider once, and Veo 3.1 Fast on three resellers (Vertex, fal, Runway), so the
report shows one model side by side."""


def _request_args(parser: argparse.ArgumentParser) -> None:
    route_default = "default: the route's own"
    parser.add_argument(
        "--duration", type=int, default=None, metavar="S", help=f"seconds of video; {route_default}"
    )
    parser.add_argument(
        "--ratio", default=None, metavar="W:H", help=f"aspect ratio, e.g. 16:9; {route_default}"
    )
    parser.add_argument(
        "--resolution", default=None, metavar="R", help=f"e.g. 720p; {route_default}"
    )
    parser.add_argument(
        "--seed", type=int, default=None, metavar="N", help="seed, for repeatable output"
    )
    parser.add_argument("--negative", default=None, metavar="TEXT", help="negative prompt")
    parser.add_argument("--audio", action="store_true", help="ask for an audio track")
    parser.add_argument(
        "--emulate", action="store_true", help="run against the built-in emulators (no key needed)"
    )


def _price_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--price",
        action="append",
        default=None,
        metavar="ROUTE=USD_PER_S",
        help="your price for a route, in USD per second of video (repeatable); wins over "
        "prices.toml in your config folder and the built-in price table",
    )


def _prices_from(args: argparse.Namespace) -> dict[str, float]:
    from abebeats_lab import capabilities

    return dict(capabilities.parse_price(text) for text in args.price or ())


def _request_from(args: argparse.Namespace, prompt: str = "") -> VideoRequest:
    return VideoRequest(
        prompt=prompt,
        duration_s=args.duration,
        aspect_ratio=args.ratio,
        resolution=args.resolution,
        seed=args.seed,
        negative_prompt=args.negative,
        generate_audio=args.audio,
    )


def _short(text: str, limit: int = PROMPT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Progress:
    """Job progress on stderr: live per-route bars on a terminal; on a pipe, one line
    each time a job reaches a state it has not been in (route, prompt, repeat, state)."""

    def __init__(self, expected: Mapping[str, int] | None = None, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.expected = dict(expected or {})
        self.states: dict[tuple[int, str, int], str] = {}
        self.printed: dict[tuple[int, str, int], set[str]] = {}
        self.bars = _Bars(self.stream) if self.stream.isatty() else None

    def __enter__(self) -> _Progress:
        if self.bars is not None:
            self.bars.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.progress.stop()

    def __call__(self, event: JobEvent) -> None:
        state = str(event.state)
        if event.state is JobState.SUCCEEDED and event.output_path is None:
            return  # the provider is done: "downloading" follows, "succeeded" once it is saved
        self.states[event.key] = state
        if self.bars is not None:
            mine = [s for key, s in self.states.items() if key[1] == event.route]
            self.bars.show(event.route, mine, self.expected.get(event.route, 0))
            return
        seen = self.printed.setdefault(event.key, set())
        if state in seen:
            return
        seen.add(state)
        line = (
            f"{time.monotonic() - self.started:6.1f}s  {event.route}  "
            f"{_short(event.prompt)!r}  #{event.key[2] + 1}  {state}"
        )
        if event.error and state in FINAL_STATES:
            line += f": {_short(event.error, ERROR_CHARS)}"
        print(line, file=self.stream, flush=True)


class _Bars:
    """One rich progress bar per route, with how many of its jobs are in each state."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
        )
        self.tasks: dict[str, TaskID] = {}

    def show(self, route: str, states: Sequence[str], expected: int) -> None:
        total = max(expected, len(states))
        detail = "  ".join(f"{n} {state}" for state, n in sorted(Counter(states).items()))
        if route not in self.tasks:
            self.tasks[route] = self.progress.add_task(route, total=total, detail="")
        done = sum(state in FINAL_STATES for state in states)
        self.progress.update(self.tasks[route], total=total, completed=done, detail=detail)


def _new_run_dir(prefix: str = "") -> Path:
    """A fresh run directory chosen here, so an interrupt can name it."""
    from abebeats_lab.run.api import RUNS_DIR, new_run_id

    return Path(RUNS_DIR) / f"{prefix}{new_run_id()}"


def _finish_on_interrupt(args: argparse.Namespace, run_dir: Path, *, then: str = "") -> None:
    """Tell `main` the command that finishes ``run_dir`` if this command is interrupted."""
    command = f"abebeats-lab resume {shlex.quote(str(run_dir))}"
    if getattr(args, "run", None):
        command += f" --run {shlex.quote(args.run)}"
    if getattr(args, "emulate", False):
        command += " --emulate"
    command += f" --rerun-cancelled{then}"
    from abebeats_lab.run.api import DB_NAME

    args.on_interrupt = lambda: command if (run_dir / DB_NAME).is_file() else None


async def _cmd_generate(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner

    prices = _prices_from(args)
    run_dir = Path(args.run_dir) if args.run_dir else _new_run_dir()
    _finish_on_interrupt(args, run_dir)
    with _Progress() as progress:
        result = await runner.generate(
            args.prompt,
            args.route,
            _request_from(args, args.prompt),
            fallback=True,
            run_dir=run_dir,
            emulate=args.emulate,
            on_update=progress,
            adapt=args.adapt,
            prices=prices,
        )
    source = Path(result.output_path)
    target = Path(args.out) if args.out else source
    if args.out:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    for failure in result.failures:
        print(f"fell back after: {failure}", file=sys.stderr)
    print(target)
    return 0


async def _cmd_compare(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner

    prices = _prices_from(args)
    run_dir = Path(args.run_dir) if args.run_dir else _new_run_dir()
    if not args.dry_run:
        _finish_on_interrupt(args, run_dir)
    per_route = len(args.prompts) * args.repeats
    routes = list(args.route)
    if args.model:
        routes += [str(r) for r in runner.model_routes(args.model, emulate=args.emulate)]
    if not routes:
        raise ValidationError("--route", None, "a route (--route) or a model (--model)")
    with _Progress(dict.fromkeys(routes, per_route)) as progress:
        comparison = await runner.compare(
            args.prompts,
            routes,
            _request_from(args),
            repeats=args.repeats,
            run_dir=run_dir,
            emulate=args.emulate,
            max_cost_usd=args.max_cost,
            adapt=args.adapt,
            dry_run=args.dry_run,
            on_update=None if args.json else progress,
            prices=prices,
        )
    _print_comparison(comparison, as_json=args.json, dry_run=args.dry_run)
    return 0 if args.dry_run else _verdict(args, comparison.rows)


def _verdict(args: argparse.Namespace, rows: Sequence[Any]) -> int:
    """Print the outcome of a run's rows as the last line and return the exit code: 0 only
    when every job succeeded (on stderr with ``--json``, so stdout stays JSON). Jobs left
    unfinished (a full disk, a provider that stopped answering) get the command that
    finishes them."""
    missed = Counter(str(row.state) for row in rows if row.state is not JobState.SUCCEEDED)
    if not missed:
        line, code = f"all {len(rows)} job(s) succeeded", 0
    else:
        states = ", ".join(f"{n} {state}" for state, n in sorted(missed.items()))
        line = f"{missed.total()} of {len(rows)} job(s) did not succeed ({states}): exit code 1"
        code = EXIT_FAILURE
        hint = getattr(args, "on_interrupt", lambda: None)()
        if hint and set(missed) - FINAL_STATES:
            line += f"; to finish the unfinished ones: {hint}"
    print(line, file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    return code


def _print_comparison(comparison: Any, *, as_json: bool, dry_run: bool = False) -> None:
    for note in comparison.notes:
        print(f"abebeats-lab: {note}", file=sys.stderr)
    if as_json:
        json.dump(comparison.to_rows(), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    if dry_run:
        print(comparison.describe_plan())
        return
    if comparison.rows:
        print(comparison.summary_text())
    print(f"\nrun directory: {comparison.run_dir}")


async def _cmd_resume(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner

    run_dir = Path(args.run_dir)
    _finish_on_interrupt(args, run_dir)
    with _Progress() as progress:
        comparison = await runner.resume(
            run_dir,
            run_id=args.run,
            emulate=args.emulate,
            on_update=progress,
            rerun_cancelled=args.rerun_cancelled,
        )
    _print_comparison(comparison, as_json=args.json)
    cancelled = sum(map(runner.was_interrupted, comparison.rows))
    if cancelled:
        flags = f" --run {shlex.quote(args.run)}" if args.run else ""
        flags += " --emulate" if args.emulate else ""
        print(
            f"abebeats-lab: {cancelled} job(s) were cancelled by an interrupt; to run them "
            f"again: abebeats-lab resume {shlex.quote(str(run_dir))}{flags} --rerun-cancelled",
            file=sys.stderr,
        )
    return _verdict(args, comparison.rows)


async def _cmd_report(args: argparse.Namespace) -> int:
    from abebeats_lab.views import report

    print(report.write_report(args.run_dir, out=args.out, run_id=args.run, score=args.score))
    return 0


async def _cmd_runs(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner

    listings = runner.list_runs(args.run_dir)
    rows = [
        [
            r.run_id,
            r.created_at[:19],
            r.kind,
            str(r.jobs),
            ", ".join(f"{n} {state}" for state, n in sorted(r.states.items())) or "-",
        ]
        for r in listings
    ]
    _print_table(["run", "created (UTC)", "kind", "jobs", "states"], rows)
    latest = next((r.run_id for r in reversed(listings) if r.jobs), None)
    if latest is not None:
        print(f"\nreport and resume use {latest} (the latest run with jobs) unless --run is given")
    return 0


SCORE_COLUMNS = ("motion", "flicker", "sharpness", "black_fraction", "loudness_lufs")
"""The metric medians `score` prints per route; every metric is in quality.sqlite."""


async def _cmd_score(args: argparse.Namespace) -> int:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from abebeats_lab.quality.metrics import QUALITY_DB, score

    pool = None
    if args.workers is not None and args.workers < 1:
        raise ValidationError("--workers", args.workers, "a whole number of 1 or more")
    if args.workers:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=args.workers, mp_context=context)
    try:
        frame = await asyncio.to_thread(
            score, args.run_dir, run_id=args.run, executor=pool, refresh=args.refresh
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
    from abebeats_lab.views.comparison import SUMMARY_WIDTH

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


async def _cmd_demo(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner
    from abebeats_lab.views import report

    prices = _prices_from(args)
    run_dir = Path(args.out) / time.strftime("demo-%Y%m%d-%H%M%S")
    args.emulate = True
    _finish_on_interrupt(args, run_dir, then=f" && abebeats-lab report {shlex.quote(str(run_dir))}")
    print(
        f"abebeats-lab demo: {len(DEMO_PROMPTS)} prompts x {len(DEMO_ROUTES)} routes, "
        "emulated providers on 127.0.0.1 (no key, no network)",
        file=sys.stderr,
    )
    with _Progress(dict.fromkeys(DEMO_ROUTES, len(DEMO_PROMPTS))) as progress:
        comparison = await runner.compare(
            list(DEMO_PROMPTS),
            list(DEMO_ROUTES),
            VideoRequest(prompt="", duration_s=5, aspect_ratio="16:9", resolution="720p", seed=7),
            run_dir=run_dir,
            emulate=True,
            adapt=True,
            on_update=progress,
            prices=prices,
        )
    print(comparison.summary_text())
    path = report.write_report(comparison.run_dir or run_dir, run_id=comparison.run_id)
    print(f"\nrun directory: {comparison.run_dir}\nreport: {path}")
    print("figures from emulated routes are labelled 'emulated': they measure this tool,")
    print("not the providers.")
    return _verdict(args, comparison.rows)


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
    if config.key_for(provider, required=False) is not None:
        return "key set"
    return f"{' or '.join(config.PROVIDER_ENV[provider].keys)} missing (use --emulate)"


async def _cmd_routes(args: argparse.Namespace) -> int:
    from abebeats_lab import capabilities, fmt

    listed = capabilities.priced_routes()
    if args.model:
        capabilities.routes_for_model(args.model)  # an unknown model names the known ones
        listed = [(n, c) for n, c in listed if c.model == args.model and "*" not in n]
    groups: dict[str, list[list[str]]] = {}
    local: set[str] = set()
    unknown: list[tuple[str, str]] = []
    for name, caps in listed:
        if caps.runs_locally:
            local.add(name.partition(":")[0])
        price = fmt.rate(caps.price.usd_per_s)
        if caps.price.source == capabilities.USER_SOURCE:
            price += " (user)"
        if caps.price.usd_per_s is None and caps.price.per_video_usd is None:
            unknown.append((name, caps.price.source))
        cells = [
            name,
            caps.model or "-",
            _spans(caps.durations),
            _range_of(caps.resolutions),
            price,
        ]
        groups.setdefault(name.partition(":")[0], []).append(cells)
    header = ["route", "model", "secs", "resolution", "price"]
    widths = [max(len(r[i]) for rows in groups.values() for r in [header, *rows]) for i in range(5)]
    print(_line(header, widths))
    for provider, rows in groups.items():
        print(f"# {provider}: {_key_state(provider, runs_locally=provider in local)}")
        for row in rows:
            print(_line(row, widths))
    notes = [f"{name}: price {reason}" for name, reason in unknown] if args.model else []
    if unknown and not args.model:
        notes.append(
            f"unknown: no trustworthy price found for {len(unknown)} route(s); each reason: "
            "routes --model MODEL; give one with --price ROUTE=USD_PER_S or prices.toml"
        )
    for note in notes:
        print(textwrap.fill(note, LINE_WIDTH, subsequent_indent="    "))
    return 0


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


async def _cmd_emulate(args: argparse.Namespace) -> int:
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


async def _cmd_history(args: argparse.Namespace) -> int:
    from abebeats_lab import history

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
        print("no run times recorded yet")
    return 0


async def _cmd_music_video(args: argparse.Namespace) -> int:
    from abebeats_lab.musicvideo import pipeline

    run_dir = Path(args.run_dir) if args.run_dir else _new_run_dir("music-video-")
    again = shlex.join(
        ["abebeats-lab", *args.argv, *([] if args.run_dir else ["--run-dir", str(run_dir)])]
    )
    # A music video is one run plus the assembly: running it again reuses its clips.
    args.on_interrupt = lambda: f"{again}  (clips made so far are kept in {run_dir})"
    with _Progress() as progress:
        video = await pipeline.make_music_video(
            args.prompt,
            args.audio,
            routes=args.route or ["local:procedural"],
            seed=args.seed,
            run_dir=run_dir,
            out=args.out,
            emulate=args.emulate,
            on_update=progress,
        )
    print(video.path)
    return 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default where it has a real one; keeps the epilog's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS)
        if not shown or not action.option_strings or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


def _command(
    sub: Any,
    name: str,
    summary: str,
    handler: Handler,
    paths: Sequence[tuple[str, str, PathCheck]] = (),
) -> argparse.ArgumentParser:
    """A subcommand whose help shows defaults and the exit codes."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=summary, epilog=EPILOG, formatter_class=_HelpFormatter
    )
    parser.set_defaults(handler=handler, paths=tuple(paths))
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abebeats-lab", description=DESCRIPTION, epilog=EPILOG, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"abebeats-lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _command(
        sub,
        "demo",
        "compare every provider offline (emulated) and write a report",
        _cmd_demo,
        [("out", "--out", _dir_out)],
    )
    demo.add_argument(
        "--out", default="abebeats-runs", metavar="DIR", help="folder that receives the run folder"
    )
    _price_args(demo)

    gen = _command(
        sub,
        "generate",
        "one prompt, one route (more --route = fallback chain)",
        _cmd_generate,
        [("out", "--out", _file_out), ("run_dir", "--run-dir", _dir_out)],
    )
    gen.add_argument("prompt", help="what the video shows")
    gen.add_argument(
        "--route",
        action="append",
        required=True,
        metavar="ROUTE",
        help="provider:model (see `abebeats-lab routes`); repeat it for a fallback chain",
    )
    gen.add_argument("--out", metavar="FILE", help="copy the video here")
    gen.add_argument(
        "--run-dir",
        default=None,
        metavar="DIR",
        help="folder for the run store and outputs (default: a new one under abebeats-runs/)",
    )
    gen.add_argument(
        "--adapt",
        action="store_true",
        help="snap a setting a route refuses to the nearest value it allows (recorded)",
    )
    _price_args(gen)
    _request_args(gen)

    cmp_ = _command(
        sub,
        "compare",
        "prompts x routes x repeats, recorded in a run directory",
        _cmd_compare,
        [("run_dir", "--run-dir", _dir_out)],
    )
    cmp_.add_argument("prompts", nargs="+", metavar="PROMPT", help="one or more prompts")
    cmp_.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="ROUTE",
        help="provider:model to compare (see `abebeats-lab routes`); repeat for more",
    )
    cmp_.add_argument(
        "--model",
        default=None,
        metavar="MODEL",
        help="also every route selling this model that has a key (all of them with "
        "--emulate), e.g. veo-3.1-fast: one model across its resellers",
    )
    cmp_.add_argument(
        "--repeats", type=int, default=1, metavar="N", help="jobs per prompt and route"
    )
    cmp_.add_argument(
        "--run-dir",
        default=None,
        metavar="DIR",
        help="folder for the run store and outputs (default: a new one under abebeats-runs/)",
    )
    cmp_.add_argument(
        "--max-cost",
        type=float,
        default=None,
        metavar="USD",
        help="refuse to start when the estimated cost is higher (with --emulate, which is "
        "free, it only says what the run would cost)",
    )
    cmp_.add_argument("--dry-run", action="store_true", help="print the plan and estimate only")
    cmp_.add_argument(
        "--adapt", action="store_true", help="snap settings to what each route allows"
    )
    cmp_.add_argument("--json", action="store_true", help="print the rows as JSON")
    _price_args(cmp_)
    _request_args(cmp_)

    res = _command(
        sub,
        "resume",
        "finish a run: re-attach to its unfinished jobs (a sent job is never sent again)",
        _cmd_resume,
        [("run_dir", "RUN_DIR", _run_in)],
    )
    res.add_argument("run_dir", metavar="RUN_DIR", help="the run directory to finish")
    _run_arg(res)
    res.add_argument(
        "--rerun-cancelled",
        action="store_true",
        help="also run the jobs an interrupt cancelled (a job the provider may still finish "
        "is collected, never paid twice) and an emulated run's jobs lost with its emulators",
    )
    res.add_argument(
        "--emulate", action="store_true", help="the run was emulated: use the built-in emulators"
    )
    res.add_argument("--json", action="store_true", help="print the rows as JSON")

    rep = _command(
        sub,
        "report",
        "write a self-contained HTML report of a run",
        _cmd_report,
        [("run_dir", "RUN_DIR", _run_in), ("out", "--out", _file_out)],
    )
    rep.add_argument("run_dir", metavar="RUN_DIR", help="the run directory to report on")
    _run_arg(rep)
    rep.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="where to write it (default: RUN_DIR/report.html)",
    )
    rep.add_argument(
        "--score",
        action="store_true",
        help="compute the automatic quality metrics first (as abebeats-lab score does); without "
        "it the Quality section shows only figures already stored",
    )

    sco = _command(
        sub,
        "score",
        "compute automatic quality metrics (motion, flicker, sharpness, ...) for a run's videos",
        _cmd_score,
        [("run_dir", "RUN_DIR", _run_in)],
    )
    sco.add_argument("run_dir", metavar="RUN_DIR", help="the run directory whose videos to score")
    sco.add_argument(
        "--run",
        default=None,
        metavar="ID",
        help="which run of the folder (default: the latest with jobs; see abebeats-lab runs)",
    )
    sco.add_argument(
        "--refresh",
        action="store_true",
        help="measure again even where quality.sqlite already has current figures",
    )
    sco.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes measuring clips at once (default: one per CPU core)",
    )

    runs = _command(
        sub,
        "runs",
        "list the runs in a run directory: id, start, kind, jobs and their states",
        _cmd_runs,
        [("run_dir", "RUN_DIR", _run_in)],
    )
    runs.add_argument("run_dir", metavar="RUN_DIR", help="the run directory to list")

    rts = _command(
        sub, "routes", "list routes, the model each sells, its price and key state", _cmd_routes
    )
    rts.add_argument(
        "--model",
        default=None,
        metavar="MODEL",
        help="only the routes selling this model (e.g. veo-3.1-fast), with each price's source",
    )

    emu = _command(sub, "emulate", "serve every provider emulator on 127.0.0.1", _cmd_emulate)
    emu.add_argument(
        "--seconds", type=float, default=0, metavar="S", help="stop after this long (0: never)"
    )
    emu.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="N",
        help="first port (providers take N, N+1, ...); 0 lets the OS choose",
    )

    hist = _command(
        sub,
        "history",
        "show or clear the per-user run times the wait schedule learns from",
        _cmd_history,
    )
    hist.add_argument("--clear", action="store_true", help="forget them (a cold start)")
    hist.add_argument(
        "--route",
        action="append",
        default=None,
        metavar="ROUTE",
        help="only this route (repeat for more; default: every route)",
    )

    mv = _command(
        sub,
        "music-video",
        "an audio track and a prompt in, a beat-cut video out",
        _cmd_music_video,
        [
            ("audio", "--audio", _file_in),
            ("out", "--out", _file_out),
            ("run_dir", "--run-dir", _dir_out),
        ],
    )
    mv.add_argument("prompt", help="what the video shows (each shot adds a framing and a mood)")
    mv.add_argument(
        "--audio", required=True, metavar="FILE", help="the audio track (WAV, MP3, ...)"
    )
    mv.add_argument(
        "--route",
        action="append",
        default=None,
        metavar="ROUTE",
        help="provider:model for the clips; repeat for a fallback chain "
        "(default: local:procedural)",
    )
    mv.add_argument(
        "--out", default=None, metavar="FILE", help="the video (default: RUN_DIR/music_video.mp4)"
    )
    mv.add_argument(
        "--run-dir",
        default=None,
        metavar="DIR",
        help="folder for the clips and run store (default: a new one under abebeats-runs/)",
    )
    mv.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed for every clip (default: from the prompt)",
    )
    mv.add_argument(
        "--emulate", action="store_true", help="run against the built-in emulators (no key needed)"
    )
    return parser


def _run_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        default=None,
        metavar="ID",
        help="which run of RUN_DIR (abebeats-lab runs RUN_DIR lists them; "
        "default: the latest run with jobs)",
    )


class _BadPath(LabError):
    """A path argument that cannot work; found before anything is submitted."""


def _ancestor(path: Path) -> Path:
    """The nearest existing folder-or-file at or above ``path``."""
    absolute = path.absolute()
    return next(p for p in [absolute, *absolute.parents] if p.exists())


def _writable_under(path: Path, label: str) -> None:
    above = _ancestor(path)
    if not above.is_dir():
        raise _BadPath(f"{label} {path}: {above} is a file, not a directory")
    if not os.access(above, os.W_OK | os.X_OK):
        raise _BadPath(f"{label} {path}: no permission to write in {above}")


def _dir_out(path: Path, label: str) -> None:
    """A directory to create or write into."""
    if path.exists() and not path.is_dir():
        raise _BadPath(f"{label} {path}: is a file, not a directory")
    _writable_under(path, label)


def _file_out(path: Path, label: str) -> None:
    """A file to create or replace."""
    if path.is_dir():
        raise _BadPath(f"{label} {path}: is a directory; give a file name")
    _writable_under(path.parent, label)


def _file_in(path: Path, label: str) -> None:
    """A file to read."""
    if not path.exists():
        raise _BadPath(f"{label} {path}: no such file")
    if path.is_dir():
        raise _BadPath(f"{label} {path}: is a directory, not a file")


def _run_in(path: Path, label: str) -> None:
    """An existing run directory."""
    from abebeats_lab.run.api import DB_NAME

    if not path.exists():
        raise _BadPath(f"{label} {path}: no such directory")
    if not path.is_dir():
        raise _BadPath(f"{label} {path}: is a file, not a run directory")
    if not (path / DB_NAME).is_file():
        raise _BadPath(f"{label} {path}: not a run directory (no {DB_NAME} in it)")


def _check_paths(args: argparse.Namespace) -> None:
    """Every path argument of the command, before anything runs."""
    for name, label, check in args.paths:
        value = getattr(args, name)
        if value is not None:
            check(Path(value), label)


def _os_error_text(exc: OSError) -> str:
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def _check_text(args: argparse.Namespace) -> None:
    """Text arguments (prompts, routes) must be UTF-8: bytes a terminal could not decode
    arrive as lone surrogates, which no store or provider can take. Paths may be any bytes."""
    paths = {name for name, _, _ in args.paths}
    for name, value in vars(args).items():
        if name in paths:
            continue
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError(
                    name, text, "UTF-8 text (the terminal passed bytes that are not UTF-8)"
                ) from None


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every exception inside a (nested) group, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def _describe(exc: BaseException) -> str:
    """One line for a user's error: an OS error names its file, a store error says so."""
    if isinstance(exc, OSError):
        text = _os_error_text(exc)
    elif isinstance(exc, sqlite3.Error):
        text = f"run store: {exc}"
    else:
        text = str(exc)
    return cut(text)


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return isinstance(exc, sqlite3.Error) and "full" in str(exc)


def _fail(args: argparse.Namespace, exc: BaseException, code: int, more: int = 0) -> int:
    line = _describe(exc) + (f" (and {more} more error(s))" if more else "")
    hint = getattr(args, "on_interrupt", lambda: None)()
    if hint and _disk_full(exc):
        line += f"; free some space, then finish the run: {hint}"
    print(f"abebeats-lab: {line}", file=sys.stderr)
    return code


USER_ERRORS = (LabError, OSError, sqlite3.Error)
"""What a user's situation raises (bad input, a provider, the disk); anything else is a bug."""


def _code_for(exc: BaseException) -> int:
    return EXIT_BAD_INPUT if isinstance(exc, (ValidationError, _BadPath)) else EXIT_FAILURE


class _OneLineLog(logging.Handler):
    """The library's warnings as one line on stderr, never a traceback, and a cause once
    (a full disk fails every job alike): used when the caller configured no logging, where
    Python's last-resort handler would print every traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.causes: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        cause = _describe(exc) if exc is not None else record.getMessage()
        if cause in self.causes:
            return
        self.causes.add(cause)
        text = record.getMessage() + (f" ({cause})" if exc is not None else "")
        print(f"abebeats-lab: {cut(text)}", file=sys.stderr)


def _interrupted(args: argparse.Namespace) -> int:
    hint = getattr(args, "on_interrupt", lambda: None)()
    message = "abebeats-lab: interrupted; remote jobs were cancelled where possible"
    if hint:
        message += f". To finish the run:\n  {hint}"
    print(message, file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (see the module docstring)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # a path given as undecodable bytes prints back
        sys.stdout.reconfigure(errors="surrogateescape")
    if not logging.getLogger().handlers:
        logging.getLogger().addHandler(_OneLineLog())
    args = _parser().parse_args(words)
    try:
        _check_paths(args)
        _check_text(args)
        args.argv = words
        if hasattr(args, "route") and args.route:
            args.route = [str(Route.parse(r)) for r in args.route]
        handler: Handler = args.handler
        return asyncio.run(handler(args))
    except USER_ERRORS as exc:
        return _fail(args, exc, _code_for(exc))
    except KeyboardInterrupt:
        return _interrupted(args)
    except BaseExceptionGroup as group:
        # Errors of concurrent jobs (a full disk hits them all): the first says what happened.
        leaves = _leaves(group)
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            return _interrupted(args)
        if not all(isinstance(leaf, USER_ERRORS) for leaf in leaves):
            raise
        return _fail(args, leaves[0], _code_for(leaves[0]), len(leaves) - 1)


if __name__ == "__main__":
    sys.exit(main())
