"""Turn what the client saw and what the provider reported into one `Timing` record.

DESIGN.md "Timing" defines every field once for every route. Provider timestamps win
where the provider reports them (``created_at``, ``started_at``, ``completed_at`` on any
status seen); otherwise the client's own observations are used. Each field's origin is
recorded in ``Timing.sources``: ``provider`` (computed from provider timestamps; the
detection lag pairs the provider's completion time with our clock) or ``client``.
Durations measured inside one process use the monotonic clock; a job resumed by another
process falls back to wall-clock differences, because monotonic readings do not cross
processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from abebeats_lab._types import Job, JobStatus, Timing
from abebeats_lab.waiting import WaitResult

__all__ = ["CLIENT", "PROVIDER", "Clock", "Marks", "build_timing", "seconds_between", "with_submit"]

PROVIDER = "provider"
CLIENT = "client"
DIGITS = 4
"""Figures are kept to 0.1 ms: finer is noise from the clocks themselves."""


@dataclass(frozen=True, slots=True)
class Clock:
    """One wall-clock (UTC) reading taken together with a monotonic one, to convert between them."""

    wall: datetime
    mono: float

    @classmethod
    def now(cls) -> Clock:
        """Read both clocks now."""
        return cls(datetime.now(UTC), time.monotonic())

    def to_wall(self, mono: float) -> datetime:
        """The UTC time of a monotonic reading taken in this process."""
        return self.wall + timedelta(seconds=mono - self.mono)


@dataclass(slots=True)
class Marks:
    """What the client observed about one job, in this process's monotonic seconds.

    A resumed job has no submit marks (they belong to the dead process); its stored
    ``submit_s`` and the wall times stand in.
    """

    submitted_at: datetime
    """UTC wall time the create call was sent."""
    submit_start: float | None = None
    submit_end: float | None = None
    accepted_at: datetime | None = None
    """UTC wall time the create response arrived (kept in the store for resumed jobs)."""
    download_start: float | None = None
    download_end: float | None = None
    prior_submit_s: float | None = None
    prior_polls: int = 0


def seconds_between(start: datetime, end: datetime) -> float:
    """``end - start`` in seconds; naive datetimes are taken as UTC."""
    return (_aware(end) - _aware(start)).total_seconds()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _provider_times(
    job: Job | None, result: WaitResult | None
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """First reported created/started/completed times, the terminal status first."""
    statuses: list[JobStatus] = []
    if result is not None:
        statuses.append(result.status)
        statuses.extend(status for _, status in result.transitions)
    if job is not None and job.initial is not None:
        statuses.append(job.initial)
    created = next((s.created_at for s in statuses if s.created_at), None)
    started = next((s.started_at for s in statuses if s.started_at), None)
    completed = next((s.completed_at for s in statuses if s.completed_at), None)
    return created, started, completed


def _put(timing: Timing, name: str, value: float | None, source: str) -> None:
    if value is None:
        return
    setattr(timing, name, round(value, DIGITS))
    timing.sources[name] = source


def build_timing(job: Job | None, result: WaitResult | None, marks: Marks, clock: Clock) -> Timing:
    """The `Timing` of one job; ``clock`` converts this process's monotonic marks to UTC."""
    timing = Timing(polls=marks.prior_polls + (result.polls if result else 0))
    _submit(timing, marks)
    created, started, completed = _provider_times(job, result)
    _queue(timing, marks, result, clock, created, started)
    _run(timing, result, started, completed)
    if completed is not None and result is not None:
        lag = seconds_between(completed, clock.to_wall(result.done_seen_at))
        _put(timing, "detect_lag_s", lag, PROVIDER)
    if marks.download_start is not None and marks.download_end is not None:
        _put(timing, "download_s", marks.download_end - marks.download_start, CLIENT)
    _total(timing, marks, result, clock)
    return timing


def with_submit(timing: Timing, submit_s: float | None) -> Timing:
    """``timing`` once the create answered: its submit figure measured here (None when the
    job was found again rather than answered, e.g. by `reconcile`)."""
    sources = {name: src for name, src in timing.sources.items() if name != "submit_s"}
    fresh = replace(timing, submit_s=None, sources=sources)
    _put(fresh, "submit_s", submit_s, CLIENT)
    return fresh


def _submit(timing: Timing, marks: Marks) -> None:
    if marks.submit_start is not None and marks.submit_end is not None:
        _put(timing, "submit_s", marks.submit_end - marks.submit_start, CLIENT)
    else:
        _put(timing, "submit_s", marks.prior_submit_s, CLIENT)


def _queue(
    timing: Timing,
    marks: Marks,
    result: WaitResult | None,
    clock: Clock,
    created: datetime | None,
    started: datetime | None,
) -> None:
    if created is not None and started is not None:
        _put(timing, "queue_s", seconds_between(created, started), PROVIDER)
        return
    if result is None or result.running_seen_at is None:
        return
    if marks.submit_end is not None:
        _put(timing, "queue_s", result.running_seen_at - marks.submit_end, CLIENT)
    elif marks.accepted_at is not None:
        seen = clock.to_wall(result.running_seen_at)
        _put(timing, "queue_s", seconds_between(marks.accepted_at, seen), CLIENT)


def _run(
    timing: Timing, result: WaitResult | None, started: datetime | None, completed: datetime | None
) -> None:
    if started is not None and completed is not None:
        _put(timing, "run_s", seconds_between(started, completed), PROVIDER)
    elif result is not None and result.running_seen_at is not None:
        _put(timing, "run_s", result.done_seen_at - result.running_seen_at, CLIENT)


def _total(timing: Timing, marks: Marks, result: WaitResult | None, clock: Clock) -> None:
    end = marks.download_end if marks.download_end is not None else None
    if end is None and result is not None:
        end = result.done_seen_at
    if end is None:
        return
    if marks.submit_start is not None:
        _put(timing, "total_s", end - marks.submit_start, CLIENT)
    else:
        _put(timing, "total_s", seconds_between(marks.submitted_at, clock.to_wall(end)), CLIENT)
