"""One owner per run: an OS file lock per run id, held while a process works on that run.

`compare`, `generate` and `resume` take the lock of the run they write (a file
``locks/<run id>.lock`` inside the run folder) before their first write and keep it until
they return. It is a kernel lock (``flock`` on Linux and macOS, ``msvcrt.locking`` on
Windows), so a crashed or SIGKILLed process never leaves it behind. It is per run, not per
folder: two notebooks writing new runs into one folder never wait for each other. The file
records who holds it (pid, command, since when) so a refused caller can say so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from abebeats_lab.errors import RunBusyError

__all__ = ["LOCKS_DIR", "RunBusyError", "hold_run", "lock_path"]

LOCKS_DIR = "locks"
"""Folder of the run folder holding one lock file per run id."""
COMMAND_CHARS = 160
"""The holder's command line is cut to about this many characters in the message."""
HOLDER_BYTES = 4096
"""More than any holder record this module writes."""
_WINDOWS_LOCK_OFFSET = 1 << 20
"""Windows locks a byte range that readers then cannot read, so the locked byte lies past
the holder record."""


def lock_path(run_dir: Path | str, run_id: str) -> Path:
    """Where the lock of ``run_id`` lives."""
    return Path(run_dir) / LOCKS_DIR / f"{run_id}.lock"


def _command() -> str:
    words = getattr(sys, "orig_argv", None) or sys.argv
    text = shlex.join(str(w) for w in words)
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…"


def _try_lock(fd: int) -> bool:
    """Take the lock without waiting; False when someone holds it."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    # Elsewhere closing the descriptor releases the flock.


def _holder(fd: int) -> str:
    """Who holds the lock, as the holder wrote it (it may not have written it yet)."""
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, HOLDER_BYTES)
    try:
        record = json.loads(raw.decode("utf-8"))
        return f"pid {record['pid']}, `{record['command']}`, since {record['since']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet"


def _record_self(fd: int) -> None:
    since = datetime.now(UTC).isoformat(timespec="seconds")
    record = {"pid": os.getpid(), "command": _command(), "since": since}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode("utf-8"))


@contextlib.contextmanager
def hold_run(run_dir: Path | str, run_id: str) -> Iterator[None]:
    """Own run ``run_id`` in ``run_dir`` for the ``with`` block.

    Raises `RunBusyError` at once, naming the holder, when another owner has it; nothing
    is written to the run then. An `OSError` (a read-only folder) passes through.
    """
    path = lock_path(run_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise RunBusyError(
                f"run {run_id} in {run_dir} is in use by {_holder(fd)}: nothing was sent; "
                "try again once that process has finished (or stop it)"
            )
        try:
            _record_self(fd)
            yield
        finally:
            with contextlib.suppress(OSError):  # a full disk must not hide the real error
                os.ftruncate(fd, 0)  # released: no holder to name
            _unlock(fd)
    finally:
        os.close(fd)
