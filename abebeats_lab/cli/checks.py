"""Checks of the command line's arguments before anything runs: every path a command reads or
writes, and every text argument (UTF-8), so bad input never costs a paid job."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from abebeats_lab.errors import LabError, ValidationError

PathCheck = Callable[[Path, str], None]


class BadPath(LabError):
    """A path argument that cannot work; found before anything is submitted."""


class UsageError(LabError):
    """Arguments that make no command (a comparison with nothing to compare on)."""


def _ancestor(path: Path) -> Path:
    """The nearest existing folder-or-file at or above ``path``."""
    absolute = path.absolute()
    return next(p for p in [absolute, *absolute.parents] if p.exists())


def _writable_under(path: Path, label: str) -> None:
    above = _ancestor(path)
    if not above.is_dir():
        raise BadPath(f"{label} {path}: {above} is a file, not a directory")
    if not os.access(above, os.W_OK | os.X_OK):
        raise BadPath(f"{label} {path}: no permission to write in {above}")


def dir_out(path: Path, label: str) -> None:
    """A directory to create or write into."""
    if path.exists() and not path.is_dir():
        raise BadPath(f"{label} {path}: is a file, not a directory")
    _writable_under(path, label)


def file_out(path: Path, label: str) -> None:
    """A file to create or replace."""
    if path.is_dir():
        raise BadPath(f"{label} {path}: is a directory; give a file name")
    _writable_under(path.parent, label)


def file_in(path: Path, label: str) -> None:
    """A file to read."""
    if not path.exists():
        raise BadPath(f"{label} {path}: no such file")
    if path.is_dir():
        raise BadPath(f"{label} {path}: is a directory, not a file")


def run_in(path: Path, label: str) -> None:
    """An existing run directory."""
    from abebeats_lab.run.api import DB_NAME

    if not path.exists():
        raise BadPath(f"{label} {path}: no such directory")
    if not path.is_dir():
        raise BadPath(f"{label} {path}: is a file, not a run directory")
    if not (path / DB_NAME).is_file():
        raise BadPath(f"{label} {path}: not a run directory (no {DB_NAME} in it)")


def run_folders(path: Path) -> list[Path]:
    """``path`` itself when it is a run directory, else the run directories just under it
    (a folder of runs, such as ``abebeats-runs``), by name."""
    from abebeats_lab.run.api import DB_NAME

    if (path / DB_NAME).is_file():
        return [path]
    return sorted(p for p in path.iterdir() if (p / DB_NAME).is_file())


def runs_in(path: Path, label: str) -> None:
    """An existing run directory, or a folder with run directories in it."""
    from abebeats_lab.run.api import DB_NAME

    if not path.exists():
        raise BadPath(f"{label} {path}: no such directory")
    if not path.is_dir():
        raise BadPath(f"{label} {path}: is a file, not a run directory")
    if not run_folders(path):
        raise BadPath(f"{label} {path}: no run in it (no {DB_NAME} in it or in a folder under it)")


def check_paths(args: argparse.Namespace) -> None:
    """Every path argument of the command, before anything runs."""
    for name, label, check in args.paths:
        value = getattr(args, name)
        if value is not None:
            check(Path(value), label)


def check_text(args: argparse.Namespace) -> None:
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
