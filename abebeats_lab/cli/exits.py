"""How a command ends: the exit codes, a user's error as one line on stderr (tracebacks are for
bugs only), Ctrl-C (the first stops the command, its jobs settle; later ones cannot cut that
short) with the command that finishes the run, and the library's warnings as one line each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

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
CLEANUP_LIMIT_S = 60.0
"""The longest an interrupted command spends settling its jobs (a create's answer, a lost
create looked up, remote jobs cancelled, their ids recorded): each step has its own, shorter
bound in the library, so this is only reached when something hangs; then the command stops
and says the cleanup was cut short."""
UNWRITABLE_ADVICE = {
    "report": "give --out FILE in a folder you can write",
    "report --score": "drop --score (scores are stored in the run folder), or report on a "
    "writable copy of the folder",
    "score": "scores are stored in the run folder: score a writable copy of it",
}
"""What to do when a command cannot write into its (read-only) run folder, per command."""


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


def _unwritable(args: argparse.Namespace, exc: BaseException) -> str | None:
    """For a command that writes into its run folder and failed because it cannot, one line
    saying so and what to do (not a temporary file's name or SQLite's own words)."""
    command = getattr(args, "command", None)
    if command == "report" and getattr(args, "score", False):
        command = "report --score"
    elif command == "report" and getattr(args, "out", None):
        return None  # it writes where --out says: the run folder is not the cause
    advice = UNWRITABLE_ADVICE.get(command or "")
    run_dir = getattr(args, "run_dir", None)
    if advice is None or run_dir is None or not isinstance(exc, OSError | sqlite3.Error):
        return None
    folder = Path(run_dir)
    if os.access(folder, os.W_OK):
        return None
    read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    reason = "Read-only file system" if read_only else "no permission to write"
    return f"cannot write in the run folder {folder} ({reason}): {advice}"


def fail(args: argparse.Namespace, exc: BaseException, code: int, more: int = 0) -> int:
    line = _unwritable(args, exc) or _describe(exc) + (
        f" (and {more} more error(s))" if more else ""
    )
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


def interrupted(args: argparse.Namespace, *, cut_short: bool = False) -> int:
    hint = getattr(args, "on_interrupt", lambda: None)()
    if cut_short:
        message = (
            f"abebeats-lab: interrupted; settling the jobs took over {CLEANUP_LIMIT_S:g} s and "
            "was cut short: a job may still run at its provider without its id recorded"
        )
    else:
        message = "abebeats-lab: interrupted; remote jobs were cancelled where possible"
    if hint:
        message += f". To finish the run:\n  {hint}"
    print(message, file=sys.stderr)
    return EXIT_INTERRUPTED


class Interrupts:
    """Ctrl-C during a command, on the event loop (`loop.add_signal_handler`).

    The first press cancels the command: its jobs then cancel their remote jobs and record
    their ids. A later press only says that this is finishing and by when: cutting it short
    could leave a paid job running with no id recorded. After `CLEANUP_LIMIT_S` the command
    is stopped anyway (`cut_short`). Where the loop cannot take signals (Windows, another
    thread) `asyncio.Runner`'s own Ctrl-C handling applies.
    """

    def __init__(self) -> None:
        self.cut_short = False
        self._task: asyncio.Task[Any] | None = None
        self._first_at: float | None = None
        self._told = False
        self._limit: asyncio.TimerHandle | None = None
        self._take_sigint = False

    def run(
        self,
        handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
        args: argparse.Namespace,
    ) -> int:
        """``handler(args)`` on a new event loop; raises KeyboardInterrupt once Ctrl-C has
        stopped it."""
        # Only where Ctrl-C has Python's default meaning (a shell may have it ignored).
        self._take_sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with asyncio.Runner() as runner:
            try:
                return runner.run(self._watched(handler, args))
            except asyncio.CancelledError:
                if self._first_at is None:
                    raise
                raise KeyboardInterrupt from None

    async def _watched(
        self,
        handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
        args: argparse.Namespace,
    ) -> int:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        # No signals on this loop (Windows, another thread): asyncio.Runner's handler stays.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            if self._take_sigint:
                loop.add_signal_handler(signal.SIGINT, self._pressed)
        try:
            return await handler(args)
        finally:
            if self._limit is not None:
                self._limit.cancel()

    def _pressed(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        loop = task.get_loop()
        if self._first_at is None:
            self._first_at = loop.time()
            task.cancel()
            self._limit = loop.call_later(CLEANUP_LIMIT_S, self._give_up)
            return
        if not self._told:
            self._told = True
            left = max(0.0, CLEANUP_LIMIT_S - (loop.time() - self._first_at))
            print(
                "abebeats-lab: finishing the interrupt: cancelling remote jobs and recording "
                f"their ids (at most {left:.0f} s more)",
                file=sys.stderr,
                flush=True,
            )

    def _give_up(self) -> None:
        if self._task is not None and not self._task.done():
            self.cut_short = True
            self._task.cancel()
