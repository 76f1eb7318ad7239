"""The one wait loop: every provider's job is waited on here and nowhere else.

It uses the best signal a provider offers: a status carried by the create response
(Replicate's ``Prefer: wait``), a push stream (fal's SSE, the local renderer), else polls on a
schedule that spends requests where completion is likely (provider ``progress``, then the run
times this route has shown before), never faster than `WaitPolicy.min_interval_s` and never
slower than `WaitPolicy.max_interval_s`. That schedule is `waiting.schedule`; this module is
the loop around it.

A server's ``Retry-After`` (or ``retry-after-ms``, or a body hint) holds back the next status
request whichever path it came from: a throttled stream, a throttled poll, or a status that
carries a hint. One rule, `_Tracker.hold`, so no path asks early.

Every wait has a deadline. On the deadline, or when the waiting task is cancelled or
interrupted, the remote job is cancelled where the provider can (`cancel_remote`, the one
cancel helper, also used by `run.submit`).

This loop owns the retries of a status request (providers send it once): a transport error or
a 408/409/429/5xx is asked again after the server's hint or a backoff, up to
`MAX_CONSECUTIVE_ERRORS` in a row; a garbled answer up to `MAX_GARBLED_ANSWERS`. Then the
error propagates and the runner keeps the row for ``resume``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from abebeats_lab._types import Job, JobState, JobStatus
from abebeats_lab.errors import (
    CANNOT_CANCEL,
    JobTimeout,
    ProtocolError,
    ProviderError,
    ProviderHTTPError,
    ProviderTransportError,
)
from abebeats_lab.http import RETRY_STATUSES, retry_delay
from abebeats_lab.providers.base import Provider
from abebeats_lab.waiting.schedule import WaitPolicy, end_window, next_interval

__all__ = [
    "CANCEL_TIMEOUT_S",
    "MAX_CONSECUTIVE_ERRORS",
    "MAX_GARBLED_ANSWERS",
    "CancelUnconfirmed",
    "UpdateCallback",
    "WaitPolicy",
    "WaitResult",
    "cancel_remote",
    "end_window",
    "next_interval",
    "wait",
]

UpdateCallback = Callable[[Job, JobStatus], None]

MAX_CONSECUTIVE_ERRORS = 6
"""Status requests in a row that may fail (transport error, 408/409/429/5xx) before the wait
gives up; with `http.retry_delay`'s backoff (0.5 s doubling to 8 s) that rides out about 15 s
of outage, longer under the server's hints."""
MAX_GARBLED_ANSWERS = 3
CANCEL_TIMEOUT_S = 10.0
"""One cancel, the provider's own retries included, may take this long."""


@dataclass(slots=True)
class WaitResult:
    """The terminal status and what it cost to learn it."""

    status: JobStatus
    polls: int = 0
    """Status requests made (a stream counts as one)."""
    running_seen_at: float | None = None
    """Monotonic time the client first saw the job running."""
    done_seen_at: float = 0.0
    """Monotonic time the client learnt the job was terminal."""
    transitions: list[tuple[float, JobStatus]] = field(default_factory=list)
    last_pending_at: float | None = None
    """Monotonic time of the last poll that still saw the job unfinished: the end lies between
    it and `done_seen_at`. None when the end was pushed (then `done_seen_at` is the end)."""
    pushed: bool = False
    """True when a push stream (or the create answer) reported the end."""


class _Tracker:
    """Counts, transitions and callbacks shared by the stream and poll paths."""

    def __init__(self, job: Job, on_update: UpdateCallback | None) -> None:
        self.job = job
        self.on_update = on_update
        self.result: WaitResult | None = None
        self.polls = 0
        self.running_seen_at: float | None = None
        self.run_started: float | None = None
        """Monotonic time the job started running, for the schedule: the provider's own start
        where it reports one (a job first seen after Replicate's 60 s hold has been running
        for most of it, and its progress must be extrapolated from then), else
        `running_seen_at`."""
        self.last: JobStatus | None = None
        self.readings: list[tuple[float, float, float]] = []
        """Coarse progress readings (running for, progress, step), for `end_window`."""
        self.transitions: list[tuple[float, JobStatus]] = []
        self.last_pending_at: float | None = None
        self.not_before = 0.0
        """Monotonic time before which no status request may be sent (a server's hint)."""

    def hold(self, seconds: float | None) -> None:
        """A server asked us to wait ``seconds`` before asking again: no path asks sooner."""
        if seconds:
            self.not_before = max(self.not_before, time.monotonic() + seconds)

    def held_for(self) -> float:
        """Seconds still to wait before the next status request may go out."""
        return max(0.0, self.not_before - time.monotonic())

    def see(self, status: JobStatus) -> None:
        now = time.monotonic()
        if not status.state.terminal:
            self.last_pending_at = now
        if status.state is not JobState.QUEUED and self.running_seen_at is None:
            self.running_seen_at = now
        if self.run_started is None:
            self.run_started = _provider_start(self.job, status, now) or self.running_seen_at
        progress, step = status.progress, status.progress_step
        if step and progress and progress < 1 and self.run_started is not None:
            self.readings.append((now - self.run_started, progress, step))
        last = self.last
        changed = last is None or (
            (status.state, status.progress, status.queue_position)
            != (last.state, last.progress, last.queue_position)
        )
        self.last = status
        if changed:
            self.transitions.append((now, status))
            if self.on_update is not None:
                self.on_update(self.job, status)

    def finish(self, status: JobStatus, *, pushed: bool = False) -> WaitResult:
        return WaitResult(
            status=status,
            polls=self.polls,
            running_seen_at=self.running_seen_at,
            done_seen_at=time.monotonic(),
            transitions=self.transitions,
            last_pending_at=None if pushed else self.last_pending_at,
            pushed=pushed,
        )


async def wait(
    provider: Provider,
    job: Job,
    *,
    policy: WaitPolicy | None = None,
    on_update: UpdateCallback | None = None,
    started_at: float | None = None,
) -> WaitResult:
    """Wait until ``job`` is terminal and return its last status; see the module docstring.

    The deadline counts from ``started_at`` (a ``time.monotonic()`` value, e.g. when the
    create was sent), or from now. Raises `JobTimeout` on the deadline, after cancelling
    where possible (its message says whether it did, and if not why). Provider errors that
    persist past a few retries propagate; a FAILED or CANCELED job is a normal return.
    """
    policy = policy or WaitPolicy()
    tracker = _Tracker(job, on_update)
    waited_s = 0.0 if started_at is None else max(0.0, time.monotonic() - started_at)
    try:
        async with asyncio.timeout(policy.deadline_s - waited_s):
            return await _until_terminal(provider, job, policy, tracker)
    except TimeoutError:
        left_running = await _cancel_on_deadline(provider, job, policy)
        if left_running is None:
            raise JobTimeout(job.id, policy.deadline_s, canceled=True) from None
        raise JobTimeout(
            job.id, policy.deadline_s, canceled=False, left_running=left_running
        ) from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        if provider.can_cancel:
            await asyncio.shield(cancel_remote(provider, job))
        raise


class CancelUnconfirmed(ProviderError):
    """A cancel the provider took without confirming the job will not run: it had already
    finished, or the provider only passes the request on. The job may still be charged."""


async def cancel_remote(provider: Provider, job: Job) -> Exception | None:
    """Ask the provider to stop ``job``, within `CANCEL_TIMEOUT_S`: None once it confirmed
    the job will not run (`Provider.cancel`), else why not: `CancelUnconfirmed`, or the
    request's error (the timeout included). Only cancellation of the caller escapes."""
    try:
        async with asyncio.timeout(CANCEL_TIMEOUT_S):
            confirmed = await provider.cancel(job)
    except Exception as exc:  # best effort: the caller records or drops the reason
        return exc
    if confirmed:
        return None
    return CancelUnconfirmed(
        "the provider did not confirm the cancel: the job may have finished, or may still",
        provider=provider.name,
    )


async def _cancel_on_deadline(provider: Provider, job: Job, policy: WaitPolicy) -> str | None:
    """Cancel a job past its deadline where allowed: None once cancelled, else why it runs on
    (one line, for `JobTimeout`)."""
    if not provider.can_cancel:
        return CANNOT_CANCEL
    if not policy.cancel_on_deadline:
        return "not cancelled (cancel_on_deadline is off)"
    failure = await cancel_remote(provider, job)
    if failure is None:
        return None
    if isinstance(failure, TimeoutError):
        return f"the cancel request had no answer within {CANCEL_TIMEOUT_S:g} s"
    if isinstance(failure, CancelUnconfirmed):
        return "the provider took the cancel without confirming it"
    reason = " ".join(f"{type(failure).__name__}: {failure}".split())
    return f"the cancel request failed ({reason})"


async def _until_terminal(
    provider: Provider, job: Job, policy: WaitPolicy, tracker: _Tracker
) -> WaitResult:
    if job.initial is not None:
        tracker.see(job.initial)
        if job.initial.state.terminal:
            return tracker.finish(job.initial, pushed=True)
    if policy.use_stream:
        streamed = await _follow_stream(provider, job, tracker)
        if streamed is not None:
            return streamed
    return await _poll(provider, job, policy, tracker)


async def _follow_stream(provider: Provider, job: Job, tracker: _Tracker) -> WaitResult | None:
    stream = provider.stream(job)
    if stream is None:
        return None
    tracker.polls += 1
    try:
        async for status in stream:
            tracker.see(status)
            tracker.hold(status.retry_after_s)
            if status.state.terminal:
                return tracker.finish(status, pushed=True)
    except ProviderHTTPError as exc:
        # The stream is an optimisation and polling below the ground truth, but a throttled
        # stream (429, or 503 with Retry-After) throttles the poll that replaces it too.
        tracker.hold(exc.retry_after_s)
    except ProviderTransportError:
        pass
    finally:
        # Close the connection now rather than whenever the generator is collected.
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            await closer()
    return None


async def _poll(provider: Provider, job: Job, policy: WaitPolicy, tracker: _Tracker) -> WaitResult:
    status = tracker.last or JobStatus(JobState.QUEUED, "submitted")
    errors = garbled = 0
    while True:
        running_for = time.monotonic() - tracker.run_started if tracker.run_started else None
        window = end_window(tracker.readings)
        planned = next_interval(policy, status, tracker.polls, running_for, window)
        await asyncio.sleep(max(planned, tracker.held_for()))
        tracker.polls += 1
        try:
            status = await provider.status(job)
        except (ProviderTransportError, ProviderHTTPError) as exc:
            errors += 1
            if errors >= MAX_CONSECUTIVE_ERRORS or not _transient(exc):
                raise
            hint = exc.retry_after_s if isinstance(exc, ProviderHTTPError) else None
            tracker.hold(retry_delay(errors, hint or None))
            continue
        except ProtocolError:
            # A gateway's HTML page or a half-written body is often a one-off; the job itself
            # is still running and paid for, so ask again a few times before giving up on it.
            garbled += 1
            if garbled >= MAX_GARBLED_ANSWERS:
                raise
            continue
        errors = garbled = 0
        tracker.see(status)
        if status.state.terminal:
            return tracker.finish(status)


def _provider_start(job: Job, status: JobStatus, now: float) -> float | None:
    """When the provider says the job started, on this client's monotonic clock.

    Only the provider's own interval (created to started) is used, added to when this client
    sent the create, so a provider clock that is off by minutes does not matter.
    """
    if status.started_at is None or status.created_at is None:
        return None
    queued_s = max(0.0, (status.started_at - status.created_at).total_seconds())
    since_submit_s = (datetime.now(UTC) - job.submitted_at).total_seconds()
    return min(now, now - since_submit_s + queued_s)


def _transient(exc: Exception) -> bool:
    if isinstance(exc, ProviderHTTPError):
        return exc.status_code in RETRY_STATUSES
    return True
