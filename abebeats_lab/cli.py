"""The ``abebeats-lab`` command: a thin view over the runner.

User errors print one line to stderr and exit non-zero (2 for bad input, 1 otherwise);
tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

from abebeats_lab import __version__
from abebeats_lab._types import Route, VideoRequest
from abebeats_lab.errors import LabError, ValidationError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
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
)


def _request_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=int, default=5, metavar="S", help="seconds of video")
    parser.add_argument("--ratio", default="16:9", metavar="W:H", help="aspect ratio")
    parser.add_argument("--resolution", default="720p", metavar="R", help="e.g. 720p")
    parser.add_argument("--seed", type=int, default=None, metavar="N")
    parser.add_argument("--negative", default=None, metavar="TEXT", help="negative prompt")
    parser.add_argument("--audio", action="store_true", help="ask for an audio track")
    parser.add_argument(
        "--emulate", action="store_true", help="run against the built-in emulators (no key needed)"
    )


def _price_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="ROUTE=USD_PER_S",
        help="your price for a route, in USD per second of video (repeatable); wins over "
        "prices.toml in your config folder and the built-in price table",
    )


def _prices_from(args: argparse.Namespace) -> dict[str, float]:
    from abebeats_lab import capabilities

    return dict(capabilities.parse_price(text) for text in args.price)


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


class _Progress:
    """One status line per job on stderr, rewritten in place on a terminal."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.tty = stream.isatty()

    def __call__(self, event: Any) -> None:
        parts = [f"{event.route}", f"{event.state}"]
        if getattr(event, "progress", None) is not None:
            parts.append(f"{event.progress:.0%}")
        if getattr(event, "queue_position", None) is not None:
            parts.append(f"queue {event.queue_position}")
        parts.append(f"{time.monotonic() - self.started:5.1f}s")
        line = "  ".join(parts)
        if self.tty:
            self.stream.write(f"\r\x1b[2K{line}")
            self.stream.flush()
        else:
            self.stream.write(line + "\n")

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


async def _cmd_generate(args: argparse.Namespace) -> int:
    from abebeats_lab import runner

    progress = _Progress()
    result = await runner.generate(
        args.prompt,
        args.route,
        _request_from(args, args.prompt),
        fallback=True,
        run_dir=args.run_dir,
        emulate=args.emulate,
        on_update=progress,
        prices=_prices_from(args),
    )
    progress.done()
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
    from abebeats_lab import runner

    progress = _Progress()
    comparison = await runner.compare(
        args.prompts,
        args.route,
        _request_from(args),
        repeats=args.repeats,
        run_dir=args.run_dir,
        emulate=args.emulate,
        max_cost_usd=args.max_cost,
        adapt=args.adapt,
        dry_run=args.dry_run,
        on_update=None if args.json else progress,
        prices=_prices_from(args),
    )
    progress.done()
    _print_comparison(comparison, as_json=args.json, dry_run=args.dry_run)
    return 0


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
    print(comparison.summary_text())
    print(f"\nrun directory: {comparison.run_dir}")


async def _cmd_resume(args: argparse.Namespace) -> int:
    from abebeats_lab import runner

    progress = _Progress()
    comparison = await runner.resume(args.run_dir, emulate=args.emulate, on_update=progress)
    progress.done()
    _print_comparison(comparison, as_json=args.json)
    return 0


async def _cmd_report(args: argparse.Namespace) -> int:
    from abebeats_lab import report

    print(report.write_report(args.run_dir, out=args.out))
    return 0


async def _cmd_demo(args: argparse.Namespace) -> int:
    from abebeats_lab import report, runner

    out = Path(args.out)
    run_dir = out / time.strftime("demo-%Y%m%d-%H%M%S")
    print(
        f"abebeats-lab demo: {len(DEMO_PROMPTS)} prompts x {len(DEMO_ROUTES)} routes, "
        "emulated providers on 127.0.0.1 (no key, no network)",
        file=sys.stderr,
    )
    progress = _Progress()
    comparison = await runner.compare(
        list(DEMO_PROMPTS),
        list(DEMO_ROUTES),
        VideoRequest(prompt="", duration_s=5, aspect_ratio="16:9", resolution="720p", seed=7),
        run_dir=run_dir,
        emulate=True,
        adapt=True,
        on_update=progress,
        prices=_prices_from(args),
    )
    progress.done()
    print(comparison.summary_text())
    path = report.write_report(comparison.run_dir or run_dir)
    print(f"\nrun directory: {comparison.run_dir}\nreport: {path}")
    print("figures from emulated routes are labelled 'emulated': they measure this tool,")
    print("not the providers.")
    return 0


async def _cmd_routes(args: argparse.Namespace) -> int:
    from abebeats_lab import capabilities, config, fmt

    rows = []
    for name, caps in capabilities.priced_routes():
        provider = name.partition(":")[0]
        has_key = provider == "local" or config.key_for(provider, required=False) is not None
        price = fmt.rate(caps.price.usd_per_s)
        rows.append(
            [
                name,
                ",".join(map(str, caps.durations)),
                ",".join(caps.aspect_ratios),
                ",".join(caps.resolutions),
                "yes" if caps.cancel else "no",
                f"{price} (user)" if caps.price.source == capabilities.USER_SOURCE else price,
                "set" if has_key else "missing (use --emulate)",
            ]
        )
    header = ["route", "durations", "ratios", "resolutions", "cancel", "price", "key"]
    _print_table(header, rows)
    return 0


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


async def _cmd_music_video(args: argparse.Namespace) -> int:
    from abebeats_lab import pipeline

    progress = _Progress()
    video = await pipeline.make_music_video(
        args.prompt,
        args.audio,
        routes=args.route or ["local:procedural"],
        seed=args.seed,
        run_dir=args.run_dir,
        out=args.out,
        emulate=args.emulate,
        on_update=progress,
    )
    progress.done()
    print(video.path)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="abebeats-lab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"abebeats-lab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="compare every provider offline (emulated) and write a report"
    )
    demo.add_argument("--out", default="abebeats-runs", metavar="DIR")
    _price_args(demo)
    demo.set_defaults(handler=_cmd_demo)

    gen = sub.add_parser("generate", help="one prompt, one route (more --route = fallback chain)")
    gen.add_argument("prompt")
    gen.add_argument("--route", action="append", required=True, metavar="ROUTE")
    gen.add_argument("--out", metavar="FILE", help="copy the video here")
    gen.add_argument("--run-dir", default=None, metavar="DIR")
    _price_args(gen)
    _request_args(gen)
    gen.set_defaults(handler=_cmd_generate)

    cmp_ = sub.add_parser("compare", help="prompts x routes x repeats, recorded in a run directory")
    cmp_.add_argument("prompts", nargs="+", metavar="PROMPT")
    cmp_.add_argument("--route", action="append", required=True, metavar="ROUTE")
    cmp_.add_argument("--repeats", type=int, default=1, metavar="N")
    cmp_.add_argument("--run-dir", default=None, metavar="DIR")
    cmp_.add_argument("--max-cost", type=float, default=None, metavar="USD")
    cmp_.add_argument("--dry-run", action="store_true", help="print the plan and estimate only")
    cmp_.add_argument(
        "--adapt", action="store_true", help="snap settings to what each route allows"
    )
    cmp_.add_argument("--json", action="store_true", help="print the rows as JSON")
    _price_args(cmp_)
    _request_args(cmp_)
    cmp_.set_defaults(handler=_cmd_compare)

    res = sub.add_parser("resume", help="re-attach to a run's unfinished jobs (never resubmits)")
    res.add_argument("run_dir", metavar="RUN_DIR")
    res.add_argument("--emulate", action="store_true")
    res.add_argument("--json", action="store_true")
    res.set_defaults(handler=_cmd_resume)

    rep = sub.add_parser("report", help="write a self-contained HTML report of a run")
    rep.add_argument("run_dir", metavar="RUN_DIR")
    rep.add_argument("--out", default=None, metavar="FILE")
    rep.set_defaults(handler=_cmd_report)

    routes = sub.add_parser("routes", help="list routes, what they accept and whether keys are set")
    routes.set_defaults(handler=_cmd_routes)

    emu = sub.add_parser("emulate", help="serve every provider emulator on 127.0.0.1")
    emu.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    emu.add_argument(
        "--port",
        type=int,
        default=0,
        metavar="N",
        help="first port (providers take N, N+1, ...); default: ports the OS chooses",
    )
    emu.set_defaults(handler=_cmd_emulate)

    mv = sub.add_parser("music-video", help="an audio track and a prompt in, a beat-cut video out")
    mv.add_argument("prompt")
    mv.add_argument("--audio", required=True, metavar="FILE")
    mv.add_argument("--route", action="append", default=None, metavar="ROUTE")
    mv.add_argument("--out", default=None, metavar="FILE")
    mv.add_argument("--run-dir", default=None, metavar="DIR")
    mv.add_argument("--seed", type=int, default=None)
    mv.add_argument("--emulate", action="store_true")
    mv.set_defaults(handler=_cmd_music_video)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        if hasattr(args, "route") and args.route:
            args.route = [str(Route.parse(r)) for r in args.route]
        handler: Handler = args.handler
        return asyncio.run(handler(args))
    except ValidationError as exc:
        print(f"abebeats-lab: {exc}", file=sys.stderr)
        return 2
    except LabError as exc:
        print(f"abebeats-lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "abebeats-lab: interrupted; remote jobs were cancelled where possible", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
