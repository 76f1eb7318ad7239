"""A job being worked on (`Live`), and `Recorder`, which stores each change and reports it.

Shared by the two halves of a job's life, `run.submit` (the never-pay-twice create) and
`run.job` (everything after it), so each writes the store and ``on_update`` the same way.
Store writes never block the event loop: they are committed in order by the store's writer
thread. `Recorder.save` returns at once (progress: a crash may lose the last few, which
`resume` reads again from the provider); `Recorder.commit` returns once the row is on disk,
for what a crash must not lose (a create about to be sent, a job id before its first
status request, a final state).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from abebeats_lab._text import cut
from abebeats_lab._types import Job, JobState, JobStatus, Output, VideoRequest
from abebeats_lab.media.conformance import output_fields
from abebeats_lab.run import costs
from abebeats_lab.run.timing import Clock, Marks, build_timing
from abebeats_lab.secret import scrub
from abebeats_lab.store import JobRow, RunStore
from abebeats_lab.waiting import WaitResult

__all__ = ["JobEvent", "Live", "Recorder", "durable", "error_text", "parse_time", "request_of"]

log = logging.getLogger("abebeats_lab.run.api")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One change of one job, for ``on_update`` (progress bars, widgets, the CLI)."""

    run_id: str
    key: tuple[int, str, int]
    """(prompt_index, route, repeat)."""
    route: str
    prompt: str
    state: JobState
    progress: float | None = None
    queue_position: int | None = None
    elapsed_s: float | None = None
    error: str | None = None
    output_path: str | None = None


@dataclass
class Live:
    """A row being worked on, with the client-side facts that are not stored."""

    row: JobRow
    job: Job | None = None
    marks: Marks | None = None
    result: WaitResult | None = None
    output: Output | None = None


def request_of(row: JobRow) -> VideoRequest:
    """The request a row sent (or will send), rebuilt from its stored settings."""
    return VideoRequest(**row.settings)


def parse_time(text: str | None) -> datetime:
    """A stored UTC time; now when the row has none."""
    return datetime.fromisoformat(text) if text else datetime.now(UTC)


def error_text(exc: BaseException) -> str:
    """An exception as a row's ``error`` shows it."""
    return f"{type(exc).__name__}: {exc}"


class Recorder:
    """Writes a live row's changes to the store and tells ``on_update`` about them."""

    def __init__(self, store: RunStore, on_update: Callable[[JobEvent], None] | None) -> None:
        self.store = store
        self.on_update = on_update

    def save(self, live: Live, **changes: Any) -> Future[None]:
        """Change the row and queue its commit; the future is done once it is committed."""
        if changes.get("error"):  # provider words may echo a key back, or run to megabytes
            changes["error"] = cut(scrub(changes["error"]))  # scrubbed whole, then cut
        live.row = live.row.evolve(**changes)
        written = self.store.save_soon(live.row)
        written.add_done_callback(_log_failure)
        return written

    async def commit(self, live: Live, **changes: Any) -> None:
        """Change the row and return once it is committed (its failure raised here).

        A cancel while waiting does not stop the commit: the row is written all the same.
        """
        await durable(self.save(live, **changes))

    def emit(self, live: Live, state: JobState, status: JobStatus | None = None) -> None:
        """Report a change; a callback that fails is logged, never the job's failure."""
        if self.on_update is None:
            return
        row = live.row
        event = JobEvent(
            row.run_id,
            row.key,
            row.route,
            row.prompt,
            state,
            progress=status.progress if status else None,
            queue_position=status.queue_position if status else None,
            elapsed_s=_elapsed(live),
            error=row.error,
            output_path=row.output_path,
        )
        try:
            self.on_update(event)
        except Exception:  # a broken progress view must not lose a paid job
            log.exception("on_update callback failed; the run continues")

    async def finish(self, live: Live, state: JobState, error: str | None) -> None:
        """Commit the final state with the job's figures (and its output's, if saved), then
        report it."""
        changes: dict[str, Any] = {"state": state, "error": error}
        changes["finished_at"] = datetime.now(UTC).isoformat()
        if live.marks is not None:
            changes["timing"] = build_timing(live.job, live.result, live.marks, Clock.now())
        if live.output is not None:
            changes.update(output_fields(live.output, self.store.run_dir, request_of(live.row)))
        if live.result is not None and live.result.status.usage:
            changes["usage"] = dict(live.result.status.usage)
        if live.row.job_id is None and state is not JobState.AMBIGUOUS:
            # No provider job exists: the plan's charge did not happen (every figure says $0).
            changes.update(cost_usd=0.0, cost_note=costs.NOTE_NO_JOB)
        written = self.save(live, **changes)
        # Reported only once stored: a listener reading the store on the event finds this row;
        # a commit that fails reports nothing here (the caller's failure path reports that).
        await durable(written)
        self.emit(live, state, live.result.status if live.result else None)


async def durable(written: Future[None]) -> None:
    """Wait for a queued commit without blocking the loop; a cancel does not undo it."""
    await asyncio.shield(asyncio.wrap_future(written))


def _log_failure(written: Future[None]) -> None:
    if not written.cancelled() and (exc := written.exception()) is not None:
        log.error("a job row could not be stored: %s: %s", type(exc).__name__, exc)


def _elapsed(live: Live) -> float | None:
    marks = live.marks
    if marks is None:
        return None
    if marks.submit_start is not None:
        return time.monotonic() - marks.submit_start
    return (datetime.now(UTC) - marks.submitted_at).total_seconds()
