"""How a command ends: the exit codes, a user's error as one line on stderr (tracebacks are for
bugs only), an interrupt with the command that finishes the run, and the library's warnings
as one line each."""

from __future__ import annotations

import argparse
import errno
import logging
import sqlite3
import sys

from abebeats_lab._text import cut
from abebeats_lab.cli.checks import BadPath, UsageError
from abebeats_lab.errors import ConfigError, LabError, ValidationError

EPILOG = """exit codes:
  0    success: every job of the run succeeded
  1    failure: a job failed, was cancelled, is ambiguous or unfinished (the summary's
       last line counts them), or a provider, a busy run, a file that cannot be written
  2    bad input (a setting, a route, a price, a path, text that is not UTF-8, a missing
       key, a cost over --max-cost): nothing was submitted
  130  interrupted (Ctrl-C): remote jobs cancelled where possible; the command that
       finishes the run is printed"""
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
USER_ERRORS = (LabError, OSError, sqlite3.Error)
"""What a user's situation raises (bad input, a provider, the disk); anything else is a bug."""
BAD_INPUT = (ValidationError, ConfigError, BadPath, UsageError)
"""The user errors found before anything is submitted: they exit 2 (`ConfigError`: a missing
key or extra, a bad prices.toml, a cost over --max-cost)."""


def _os_error_text(exc: OSError) -> str:
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def leaves_of(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every exception inside a (nested) group, in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves_of(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
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


def fail(args: argparse.Namespace, exc: BaseException, code: int, more: int = 0) -> int:
    line = _describe(exc) + (f" (and {more} more error(s))" if more else "")
    hint = getattr(args, "on_interrupt", lambda: None)()
    if hint and _disk_full(exc):
        line += f"; free some space, then finish the run: {hint}"
    print(f"abebeats-lab: {line}", file=sys.stderr)
    return code


def code_for(exc: BaseException) -> int:
    return EXIT_BAD_INPUT if isinstance(exc, BAD_INPUT) else EXIT_FAILURE


class OneLineLog(logging.Handler):
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


def interrupted(args: argparse.Namespace) -> int:
    hint = getattr(args, "on_interrupt", lambda: None)()
    message = "abebeats-lab: interrupted; remote jobs were cancelled where possible"
    if hint:
        message += f". To finish the run:\n  {hint}"
    print(message, file=sys.stderr)
    return EXIT_INTERRUPTED
