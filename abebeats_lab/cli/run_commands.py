"""The commands that submit jobs (generate, compare, resume, demo, music-video), each a thin
call of the run API with terminal progress, and the verdict line that sets the exit code."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from abebeats_lab._text import cut
from abebeats_lab._types import JobState, Settings
from abebeats_lab.cli.checks import UsageError
from abebeats_lab.cli.exits import EXIT_FAILURE
from abebeats_lab.cli.progress import FINAL_STATES, JobProgress

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
    "gemini:gemini-omni-flash-preview",
    "pika:fal-ai/pika/v2.2/text-to-video",
    "fal:fal-ai/veo3.1/fast",
    "runway:veo3.1_fast",
)
"""Every provider once, and Veo 3.1 Fast on three resellers (Vertex, fal, Runway), so the
report shows one model side by side."""
REASON_CHARS = 400
"""A stored reason is printed up to this many characters: enough to say what failed."""
NO_ROUTES = "compare needs at least one --route or a --model (see `abebeats-lab routes`)"


def _settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        duration_s=args.duration,
        aspect_ratio=args.ratio,
        resolution=args.resolution,
        seed=args.seed,
        negative_prompt=args.negative,
        generate_audio=args.audio,
    )


def _prices_from(args: argparse.Namespace) -> dict[str, float]:
    from abebeats_lab import capabilities

    return dict(capabilities.parse_price(text) for text in args.price or ())


def _run_dir_and_id(args: argparse.Namespace, prefix: str = "") -> tuple[Path, str | None]:
    """The run directory, chosen here so an interrupt can name it: ``--run-dir``, or a new
    one named after the id the run gets (returned with it; None: the run picks its own)."""
    from abebeats_lab.run.plan import RUNS_DIR, new_run_id

    if args.run_dir:
        return Path(args.run_dir), None
    run_id = new_run_id()
    return Path(RUNS_DIR) / f"{prefix}{run_id}", run_id


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


async def cmd_generate(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner

    prices = _prices_from(args)
    run_dir, run_id = _run_dir_and_id(args)
    _finish_on_interrupt(args, run_dir)
    with JobProgress() as progress:
        result = await runner.generate(
            args.prompt,
            args.route,
            _settings_from(args),
            fallback=True,
            run_dir=run_dir,
            emulate=args.emulate,
            on_update=progress,
            adapt=args.adapt,
            prices=prices,
            run_id=run_id,
        )
    source = Path(result.output_path)
    target = Path(args.out) if args.out else source
    if args.out:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    for failure in result.failures:
        print(f"abebeats-lab: fell back after {failure.route}: {failure.error}", file=sys.stderr)
    # stdout is the video's path alone (scripts read it); the run folder goes to stderr.
    print(f"run directory: {result.run_dir or run_dir}", file=sys.stderr)
    print(target)
    return 0


async def cmd_compare(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner

    if not args.route and not args.model:
        raise UsageError(NO_ROUTES)
    prices = _prices_from(args)
    run_dir, run_id = _run_dir_and_id(args)
    if not args.dry_run:
        _finish_on_interrupt(args, run_dir)
    per_route = len(args.prompts) * args.repeats
    routes = list(args.route)
    if args.model:
        routes += [str(r) for r in runner.model_routes(args.model, emulate=args.emulate)]
    with JobProgress(dict.fromkeys(routes, per_route)) as progress:
        comparison = await runner.compare(
            args.prompts,
            routes,
            _settings_from(args),
            repeats=args.repeats,
            run_dir=run_dir,
            emulate=args.emulate,
            max_cost_usd=args.max_cost,
            adapt=args.adapt,
            dry_run=args.dry_run,
            on_update=None if args.json else progress,
            prices=prices,
            score=args.score,
            run_id=run_id,
        )
    _print_comparison(comparison, as_json=args.json, dry_run=args.dry_run)
    return 0 if args.dry_run else _verdict(args, comparison.rows)


async def cmd_resume(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner

    run_dir = Path(args.run_dir)
    _finish_on_interrupt(args, run_dir)
    with JobProgress() as progress:
        comparison = await runner.resume(
            run_dir,
            run_id=args.run,
            emulate=args.emulate,
            on_update=progress,
            rerun_cancelled=args.rerun_cancelled,
        )
    _print_comparison(comparison, as_json=args.json)
    cancelled = [row for row in comparison.rows if runner.was_interrupted(row)]
    if cancelled:
        flags = f" --run {shlex.quote(args.run)}" if args.run else ""
        # Emulated jobs go to emulators again (free), never to the paid providers.
        flags += " --emulate" if args.emulate or any(r.emulated for r in cancelled) else ""
        print(
            f"abebeats-lab: {len(cancelled)} job(s) were cancelled by an interrupt; to run them "
            f"again: abebeats-lab resume {shlex.quote(str(run_dir))}{flags} --rerun-cancelled",
            file=sys.stderr,
        )
    return _verdict(args, comparison.rows)


async def cmd_demo(args: argparse.Namespace) -> int:
    from abebeats_lab.run import api as runner
    from abebeats_lab.run.plan import new_run_id
    from abebeats_lab.views import report

    prices = _prices_from(args)
    run_id = new_run_id()
    run_dir = Path(args.out) / run_id  # named after its run, as `runs` lists it
    args.emulate = True
    _finish_on_interrupt(args, run_dir, then=f" && abebeats-lab report {shlex.quote(str(run_dir))}")
    print(
        f"abebeats-lab demo: {len(DEMO_PROMPTS)} prompts x {len(DEMO_ROUTES)} routes, "
        "emulated providers on 127.0.0.1 (no key, no network)",
        file=sys.stderr,
    )
    with JobProgress(dict.fromkeys(DEMO_ROUTES, len(DEMO_PROMPTS))) as progress:
        comparison = await runner.compare(
            list(DEMO_PROMPTS),
            list(DEMO_ROUTES),
            Settings(duration_s=5, aspect_ratio="16:9", resolution="720p", seed=7),
            run_dir=run_dir,
            emulate=True,
            adapt=True,
            on_update=progress,
            prices=prices,
            run_id=run_id,
        )
    print(comparison.summary_text())
    path = report.write_report(comparison.run_dir or run_dir, run_id=comparison.run_id)
    print(f"\nrun directory: {comparison.run_dir}\nreport: {path}")
    print("figures from emulated routes are labelled 'emulated': they measure this tool,")
    print("not the providers.")
    return _verdict(args, comparison.rows)


async def cmd_music_video(args: argparse.Namespace) -> int:
    from abebeats_lab.musicvideo import pipeline

    run_dir, run_id = _run_dir_and_id(args, "music-video-")
    again = shlex.join(
        ["abebeats-lab", *args.argv, *([] if args.run_dir else ["--run-dir", str(run_dir)])]
    )
    # Asked again, a music video settles its interrupted jobs as `resume --rerun-cancelled`
    # does (never paying twice) and reuses its clips: the same command finishes it.
    args.on_interrupt = lambda: again
    with JobProgress() as progress:
        video = await pipeline.make_music_video(
            args.prompt,
            args.audio,
            routes=args.route or ["local:procedural"],
            settings=Settings(seed=args.seed),
            run_dir=run_dir,
            out=args.out,
            emulate=args.emulate,
            on_update=progress,
            run_id=run_id,
        )
    print(video.path)
    return 0


def _verdict(args: argparse.Namespace, rows: Sequence[Any]) -> int:
    """Print the outcome of a run's rows as the last line and return the exit code: 0 only
    when every job succeeded (on stderr with ``--json``, so stdout stays JSON). Jobs left
    unfinished (a full disk, a provider that stopped answering) get the command that
    finishes them."""
    missed = Counter(str(row.state) for row in rows if row.state is not JobState.SUCCEEDED)
    _why_unfinished(rows)
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


def _why_unfinished(rows: Sequence[Any]) -> None:
    """Say once per state why jobs were left unfinished (a folder that cannot be written, a
    provider that stopped answering): the first such row's reason stands for the others."""
    left: dict[str, list[Any]] = {}
    for row in rows:
        if row.state.unfinished and row.error:
            left.setdefault(str(row.state), []).append(row)
    for state, stuck in sorted(left.items()):
        first = stuck[0]
        line = f"{len(stuck)} job(s) left {state}; why ({first.route}): {first.error}"
        print(f"abebeats-lab: {cut(line, REASON_CHARS)}", file=sys.stderr)


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
