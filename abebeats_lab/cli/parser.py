"""The command line's grammar: every command, its arguments and help, the path checks each
argument gets, and the handler that runs it. One module past 400 lines: the whole grammar in
one place is what a reader looks for, with the two argparse subclasses that shape its help and
its errors."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from abebeats_lab import __version__
from abebeats_lab.cli.checks import PathCheck, dir_out, file_in, file_out, run_in, runs_in
from abebeats_lab.cli.exits import EPILOG
from abebeats_lab.cli.info_commands import (
    cmd_emulate,
    cmd_history,
    cmd_report,
    cmd_routes,
    cmd_runs,
    cmd_score,
)
from abebeats_lab.cli.run_commands import (
    cmd_compare,
    cmd_demo,
    cmd_generate,
    cmd_music_video,
    cmd_resume,
)

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
DESCRIPTION = """\
Send the same prompt and settings to several AI-video providers (Runway, Veo, Pika via
fal, Replicate, and a local renderer), record every job in a run directory and compare
time, cost and output. --emulate runs a command offline against built-in emulators of
the providers (no key, no network)."""
READ_EPILOG = """exit codes:
  0    success
  1    failure: a run folder or file that cannot be read or written{more}
  2    bad input (an argument, a path, prices.toml): nothing was written
  130  interrupted (Ctrl-C)"""
"""The footer of the commands that submit nothing (`EPILOG` speaks of jobs)."""
SCORE_FAILURE = ", or a clip that could not be measured"
EMULATE_EPILOG = """exit codes:
  0    stopped after --seconds
  1    failure: a port that cannot be bound
  2    bad input (an argument)
  130  stopped by Ctrl-C"""
CLOSE_MATCH = 0.6
"""How alike a misspelt flag and a real one must be (difflib's ratio) to suggest it."""


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: an argument it does not know is its own error (its usage and
    one line, with the closest flag it has), not the top-level parser's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.flags: list[str] = []  # before super(): it adds --help through add_argument
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.flags.extend(action.option_strings)
        return action

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self._unknown(extra)
        return parsed, extra

    def _unknown(self, extra: Sequence[str]) -> NoReturn:
        message = f"unrecognized arguments: {' '.join(extra)}"
        for word in extra:
            flag = word.partition("=")[0]
            close = difflib.get_close_matches(flag, self.flags, n=1, cutoff=CLOSE_MATCH)
            if flag.startswith("-") and close:
                message += f" (did you mean {close[0]}?)"
                break
        self.error(message)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default where it has a real one; keeps the epilog's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # Identity, not equality: a default of 0 or 1 is a real one; a flag's True/False is not,
        # nor the empty list a repeatable option starts from.
        shown = not any(action.default is v for v in (None, False, True, argparse.SUPPRESS))
        shown = shown and action.default != []
        if not shown or not action.option_strings or "%(default)" in text:
            return text
        return f"{text} (default: %(default)s)"


def _command(
    sub: Any,
    name: str,
    summary: str,
    handler: Handler,
    paths: Sequence[tuple[str, str, PathCheck]] = (),
    epilog: str = EPILOG,
) -> argparse.ArgumentParser:
    """A subcommand whose help shows defaults and the exit codes it can end with."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=summary, epilog=epilog, formatter_class=_HelpFormatter
    )
    parser.set_defaults(handler=handler, paths=tuple(paths))
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abebeats-lab", description=DESCRIPTION, epilog=EPILOG, formatter_class=_HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"abebeats-lab {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )

    demo = _command(
        sub,
        "demo",
        "compare every provider offline (emulated) and write a report",
        cmd_demo,
        [("out", "--out", dir_out)],
    )
    demo.add_argument(
        "--out", default="abebeats-runs", metavar="DIR", help="folder that receives the run folder"
    )
    _price_args(demo)

    gen = _command(
        sub,
        "generate",
        "one prompt, one route (more --route = fallback chain)",
        cmd_generate,
        [("out", "--out", file_out), ("run_dir", "--run-dir", dir_out)],
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
    _settings_args(gen)

    cmp_ = _command(
        sub,
        "compare",
        "prompts x routes x repeats, recorded in a run directory",
        cmd_compare,
        [("run_dir", "--run-dir", dir_out)],
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
    cmp_.add_argument(
        "--score",
        action="store_true",
        help="measure each video's quality metrics as it arrives, in a process pool (as "
        "abebeats-lab score does, without waiting for the run to end)",
    )
    _price_args(cmp_)
    _settings_args(cmp_)

    res = _command(
        sub,
        "resume",
        "finish a run: re-attach to its unfinished jobs (a sent job is never sent again)",
        cmd_resume,
        [("run_dir", "RUN_DIR", run_in)],
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
        "write an HTML report of a run (videos up to --embed-max-mb inside it, bigger ones "
        "linked: keep the run folder where the report can reach it)",
        cmd_report,
        [("run_dir", "RUN_DIR", run_in), ("out", "--out", file_out)],
        READ_EPILOG.format(more=""),
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
    rep.add_argument(
        "--no-clip",
        dest="clip",
        action="store_false",
        help="with --score: skip the CLIP prompt-alignment score (no [metrics] extra or weights "
        "needed, nothing downloaded)",
    )
    rep.add_argument(
        "--embed-max-mb",
        type=float,
        default=None,
        metavar="MB",
        help="videos up to this size (MiB) go inside the report; bigger ones are linked "
        "(default: 4)",
    )
    rep.add_argument(
        "--by",
        default=None,
        metavar="SETTING",
        help="also a blind-vote leaderboard per value of this setting (resolution, duration_s, "
        "aspect_ratio, generate_audio, a route extra); votes on videos that differ in it go "
        "to 'mixed'",
    )

    sco = _command(
        sub,
        "score",
        "compute automatic quality metrics (motion, flicker, sharpness, ...) for a run's videos",
        cmd_score,
        [("run_dir", "RUN_DIR", run_in)],
        READ_EPILOG.format(more=SCORE_FAILURE),
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
    sco.add_argument(
        "--no-clip",
        dest="clip",
        action="store_false",
        help="skip the CLIP prompt-alignment score (no [metrics] extra or weights needed)",
    )

    runs = _command(
        sub,
        "runs",
        "list the runs in a run directory: id, start, kind, jobs and their states",
        cmd_runs,
        [("run_dir", "RUN_DIR", runs_in)],
        READ_EPILOG.format(more=""),
    )
    runs.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or a folder of them")

    rts = _command(
        sub,
        "routes",
        "list routes, the model each sells, its price and key state",
        cmd_routes,
        epilog=READ_EPILOG.format(more=""),
    )
    rts.add_argument(
        "--model",
        default=None,
        metavar="MODEL",
        help="only the routes selling this model (e.g. veo-3.1-fast), with each price's source",
    )

    emu = _command(
        sub,
        "emulate",
        "serve every provider emulator on 127.0.0.1",
        cmd_emulate,
        epilog=EMULATE_EPILOG,
    )
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
        cmd_history,
        epilog=READ_EPILOG.format(more=""),
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
        cmd_music_video,
        [
            ("audio", "--audio", file_in),
            ("out", "--out", file_out),
            ("run_dir", "--run-dir", dir_out),
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


def _settings_args(parser: argparse.ArgumentParser) -> None:
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


def _run_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        default=None,
        metavar="ID",
        help="which run of RUN_DIR (abebeats-lab runs RUN_DIR lists them; "
        "default: the latest run with jobs)",
    )
