"""What `resume` does with each row of a stored run, decided before any request.

An unfinished row is run on from where it stands. A row an interrupt cancelled
(`was_interrupted`) is, with ``rerun_cancelled``, either submitted again as a new job (its
job never existed, or the provider confirmed the cancel) or re-attached first and submitted
again only if the provider reports it cancelled, so nothing is paid twice. Jobs of an
emulated run died with the emulators of the process that ran them: they cannot be
re-attached, only submitted again to new emulators.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from abebeats_lab import capabilities
from abebeats_lab._types import JobState
from abebeats_lab.errors import LabError
from abebeats_lab.run.submit import CANCELLED, NEVER_SENT
from abebeats_lab.store import JobRow, RunInfo, RunStore

__all__ = [
    "INTERRUPTED",
    "PARTIAL_GLOB",
    "RUN_FIELDS",
    "fresh",
    "may_still_run",
    "remove_partial_downloads",
    "resume_plan",
    "to_finish",
    "was_interrupted",
]

PARTIAL_GLOB = ".*.part"
"""The temporary names `media.save_output` writes to before its atomic rename."""
INTERRUPTED = "comparison cancelled"
"""How every error `RunContext` writes on a row cancelled by our own cancel begins."""
RUN_FIELDS = (
    "job_id", "handles", "state", "error", "progress", "timing", "output_path", "sha256",
    "duration_s", "width", "height", "fps", "codec", "has_audio", "bytes", "duration_ok",
    "ratio_ok", "resolution_ok", "submitted_at", "finished_at",
)  # fmt: skip
"""What a job's run wrote on its row; a rerun starts from the plan without them."""


def was_interrupted(row: JobRow) -> bool:
    """True for a row cancelled because its comparison was (Ctrl-C, a kernel interrupt)."""
    return row.state is JobState.CANCELED and (row.error or "").startswith(INTERRUPTED)


def to_finish(row: JobRow, rerun_cancelled: bool) -> bool:
    """Whether `resume` has anything to do for this row."""
    return row.state.unfinished or (rerun_cancelled and was_interrupted(row))


def resume_plan(
    store: RunStore, info: RunInfo, *, emulate: bool, rerun_cancelled: bool
) -> tuple[list[JobRow], set[tuple[int, str, int]]]:
    """The rows `resume` runs (as they must be stored first) and the keys of those it
    re-attaches only to learn whether their job still runs; raises before any request."""
    emulated_run = bool(info.spec.get("emulate"))
    rows = list(store.unfinished(info.run_id))
    lost = [r for r in rows if emulated_run and r.emulated and r.state is not JobState.PLANNED]
    if lost and not rerun_cancelled:
        raise LabError(_lost_message(len(lost)))
    # A render on this machine died with the process that ran it: it starts again (free), so
    # its timing is the new render's, not the time between the stop and this resume.
    lost += [r for r in rows if r.state is not JobState.PLANNED and _renders_here(r)]
    again, recheck = (
        _rerun_plan(store.rows(info.run_id), emulated_run) if rerun_cancelled else ([], [])
    )
    lost_keys = {r.key for r in lost}
    todo = [r for r in rows if r.key not in lost_keys] + [fresh(r) for r in lost + again]
    todo += [r.evolve(state=JobState.QUEUED, error=None) for r in recheck]
    if emulated_run and not emulate and any(r.emulated for r in todo):
        raise LabError(
            "this run was emulated: resume it with --emulate (emulate=True), "
            "or its jobs would go to the real, paid providers"
        )
    return todo, {r.key for r in recheck}


def _rerun_plan(rows: Sequence[JobRow], emulated_run: bool) -> tuple[list[JobRow], list[JobRow]]:
    """Interrupted rows split into (submit again now, re-attach first): see `resume`."""
    again: list[JobRow] = []
    recheck: list[JobRow] = []
    for row in filter(was_interrupted, rows):
        (recheck if may_still_run(row, emulated_run) else again).append(row)
    return again, recheck


def may_still_run(row: JobRow, emulated_run: bool) -> bool:
    """True for an interrupted row whose job the provider may still finish (its cancel was
    not confirmed): sending it again could pay twice, so it is re-attached first."""
    gone = row.job_id is None or row.error in (CANCELLED, NEVER_SENT) or _renders_here(row)
    # An in-process emulator's jobs died with it: nothing to re-attach, nothing to pay.
    return was_interrupted(row) and not gone and not (emulated_run and row.emulated)


def _renders_here(row: JobRow) -> bool:
    return capabilities.capabilities_for(row.route).runs_locally


def fresh(row: JobRow) -> JobRow:
    """The row as planned, with a new client reference: a new job, not the old one."""
    blank = JobRow(row.run_id, row.prompt_index, row.route, row.repeat, "", "", "")
    defaults = {name: getattr(blank, name) for name in RUN_FIELDS}
    return row.evolve(**defaults, client_ref=uuid.uuid4().hex)


def _lost_message(count: int) -> str:
    return (
        f"{count} job(s) of this emulated run were in flight in emulators that stopped with "
        "the process that ran them, so they cannot be re-attached: resume with --emulate "
        "--rerun-cancelled (rerun_cancelled=True) to submit them again to new emulators "
        "(free), or start a new compare"
    )


def remove_partial_downloads(folder: Path) -> None:
    """Delete half-written downloads a killed process left behind (resume fetches them again)."""
    for stale in folder.glob(PARTIAL_GLOB):
        stale.unlink(missing_ok=True)
