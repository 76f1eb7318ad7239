"""The ``abebeats-lab`` command: a thin view over the run API.

Every path argument is checked before anything is submitted. User errors print one line
to stderr; tracebacks are for bugs only. Exit codes: 0 every job succeeded, 1 a job did not
succeed or something failed, 2 bad input (nothing was submitted), 130 interrupted (remote
jobs cancelled where possible; the command that finishes the run is printed). A second Ctrl-C
does not cut that cleanup short (`exits.Interrupts`).

The package: `parser` (the grammar), `run_commands` (commands that submit jobs),
`info_commands` (commands that submit nothing), `progress` (terminal progress), `checks`
(arguments checked before anything runs) and `exits` (exit codes, one-line errors).
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Sequence

from abebeats_lab._types import Route
from abebeats_lab.cli.checks import check_paths, check_text
from abebeats_lab.cli.exits import (
    USER_ERRORS,
    Interrupts,
    OneLineLog,
    code_for,
    fail,
    interrupted,
    leaves_of,
)
from abebeats_lab.cli.parser import Handler, build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (see the module docstring)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # a path given as undecodable bytes prints back
        sys.stdout.reconfigure(errors="surrogateescape")
    if not logging.getLogger().handlers:
        logging.getLogger().addHandler(OneLineLog())
    args = build_parser().parse_args(words)
    interrupts = Interrupts()
    try:
        check_paths(args)
        check_text(args)
        args.argv = words
        if hasattr(args, "route") and args.route:
            args.route = [str(Route.parse(r)) for r in args.route]
        handler: Handler = args.handler
        return interrupts.run(handler, args)
    except USER_ERRORS as exc:
        return fail(args, exc, code_for(exc))
    except KeyboardInterrupt:
        return interrupted(args, cut_short=interrupts.cut_short)
    except BaseExceptionGroup as group:
        # Errors of concurrent jobs (a full disk hits them all): the first says what happened.
        leaves = leaves_of(group)
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
            return interrupted(args, cut_short=interrupts.cut_short)
        if not all(isinstance(leaf, USER_ERRORS) for leaf in leaves):
            raise
        return fail(args, leaves[0], code_for(leaves[0]), len(leaves) - 1)
