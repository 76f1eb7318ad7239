"""A run folder opened to read: its store, read-only where needed, and the run asked for.

`load_run`, `list_runs` and `resume` all start here, so a read-only folder, a folder with
no store and a run id that is not there get the same handling and the same messages.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from abebeats_lab.errors import LabError, ValidationError
from abebeats_lab.store import DB_NAME, RunInfo, RunStore

__all__ = ["open_to_read", "pick_run", "run_ids"]

LISTED_RUNS = 5
"""A wrong run id is answered with this many of the folder's latest run ids."""


def open_to_read(run_dir: Path | str) -> RunStore:
    """The store opened to read: read-only where this process cannot write (a read-only
    folder or file); elsewhere as usual, so an older store is upgraded and SQLite's WAL
    files are cleaned up on close."""
    directory = Path(run_dir)
    path = directory / DB_NAME
    if not path.is_file():
        raise LabError(f"no run store in {directory} (expected {DB_NAME})")
    writable = os.access(directory, os.W_OK) and os.access(path, os.W_OK)
    return RunStore(directory, read_only=not writable)


def pick_run(store: RunStore, run_id: str | None) -> RunInfo:
    """The run asked for, or the latest one with jobs (a run that failed before planning
    anything must not hide the good run before it)."""
    runs = store.runs()
    where = f"{store.run_dir} (abebeats-lab runs {shlex.quote(str(store.run_dir))} lists them)"
    if run_id is not None:
        found = next((info for info in runs if info.run_id == run_id), None)
        if found is None:
            raise ValidationError("run_id", run_id, f"a run of {where}: {run_ids(runs)}")
        return found
    latest = store.latest_run(with_jobs=True)
    if latest is None:
        raise LabError(f"no run with jobs in {where}")
    return latest


def run_ids(runs: Sequence[RunInfo]) -> str:
    """The ids a ``--run`` may name (the latest `LISTED_RUNS` of them), for an error line."""
    ids = ", ".join(info.run_id for info in runs[-LISTED_RUNS:])
    if not ids:
        return "none yet"
    return f"the latest are {ids}" if len(runs) > LISTED_RUNS else ids
