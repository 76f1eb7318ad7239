"""The one wait loop: every provider's job is waited on here and nowhere else.

It uses the best signal a provider offers: a status carried by the create response
(Replicate's ``Prefer: wait``), a push stream (fal's SSE, the local renderer), else polls on a
schedule that spends requests where completion is likely (provider ``progress``, then the run
times this route has shown before), never faster than `WaitPolicy.min_interval_s` and never
slower than `WaitPolicy.max_interval_s`.

A server's ``Retry-After`` (or ``retry-after-ms``, or a body hint) holds back the next status
request whichever path it came from: a throttled stream, a throttled poll, or a status that
carries a hint. One rule, `_Tracker.hold`, so no path asks early.

Every wait has a deadline. On the deadline, or when the waiting task is cancelled or
interrupted, the remote job is cancelled where the provider can (`cancel_remote`, the one
cancel helper, also used by `run.job`).

This loop owns the retries of a status request (providers send it once): a transport error or
a 408/409/429/5xx is asked again after the server's hint or a backoff, up to
`MAX_CONSECUTIVE_ERRORS` in a row; a garbled answer up to `MAX_GARBLED_ANSWERS`. Then the
error propagates and the runner keeps the row for ``resume``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from abebeats_lab._types import Job, JobState, JobStatus
from abebeats_lab.errors import JobTimeout, ProtocolError, ProviderHTTPError, ProviderTransportError
from abebeats_lab.http import RETRY_STATUSES, retry_delay
from abebeats_lab.providers.base import Provider

__all__ = [
    "CANCEL_TIMEOUT_S",
    "MAX_CONSECUTIVE_ERRORS",
    "MAX_GARBLED_ANSWERS",
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
_BACKOFF = 1.5
_BACKOFF_STEPS = 20
_MIN_PROGRESS = 0.02  # below this a progress-based estimate of the end is mostly noise
_AIM = 0.9  # fraction of the predicted remainder to sleep; the next poll re-aims
# Coarse progress (a tqdm bar: Replicate's 50 steps are 1.8 s each on a 90 s job) leaves the end
# anywhere in a window that wide. Polls placed where the window's middle predicts the next step
# halve it (the step has come or not) at no risk of overshooting the end. Simulated on
# N(90 s, 30 s) jobs after a 60 s hold: ~0.2 s p50 / 0.6 s p95 lag for 6 requests, where
# aiming at each coarse reading alone gave 0.9 / 2.1 s for 4.
_FAR_STEPS = 2  # a window further than this many steps ahead is only aimed at, as without steps
_STEP_WINDOW_S = 1.0  # narrower than this, poll the end window itself instead of halving it
_STEP_SPAN = 0.1  # readings this far below the newest are left out: a model's setup time
# before its first step biases early readings, and the end game needs only the late ones
# The history schedule's constants were tuned by simulation against N(30 s, 5 s) run times
# with a noisy spread estimate (30.8 +- 6.7 s): p50 lag ~0.7 s, p95 ~1.4 s, ~11-12 requests;
# with room, in a 20-job sample, under issue 6's 1 s / 2 s / 12 requests (benchmarks/).
_WINDOW_STEP_FRACTION = 0.3  # window step as a fraction of the run-time spread
_WINDOW_STEP_MAX_S = 1.4  # keeps the median detection lag well under a second
_EARLY_TAIL_STEPS = 1.75  # steps this much coarser where fewer jobs end
_CHECKPOINT = 0.8
_MIN_SPREAD_FRACTION = 0.1  # a history with no spread would still vary a little
_LATE_GROWTH = 0.1  # a late job's step grows by this per second past the window


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How long to wait and how often to ask."""

    deadline_s: float = 900.0
    """Give up (and cancel where possible) after this many seconds."""
    min_interval_s: float = 0.25
    max_interval_s: float = 8.0
    """Cap on a blind backoff (no progress, no history)."""
    max_planned_s: float = 30.0
    """Cap on a sleep planned from progress or history."""
    expected_run_s: float | None = None
    """Typical run time of this route (history median, else the capability prior)."""
    spread_s: float | None = None
    """Typical deviation of the run time; the dense-polling window is about ±2 of these.
    ``None`` means ``expected_run_s`` is a prior, not a measured history: the schedule still
    follows it, but no sleep exceeds ``max_interval_s``."""
    cancel_on_deadline: bool = True
    use_stream: bool = True


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


def next_interval(
    policy: WaitPolicy,
    status: JobStatus,
    polls: int,
    running_for: float | None,
    end_within: tuple[float, float] | None = None,
) -> float:
    """Seconds until the next status request. Pure, so the schedule is testable.

    ``end_within`` is the run time (low, high] that every coarse progress reading so far
    allows (`end_window`); with it the schedule places polls on the progress steps.
    """
    planned = None
    if status.state is JobState.RUNNING and running_for is not None:
        planned = _from_progress(policy, status, running_for, end_within)
        if planned is None:
            planned = _from_history(policy, running_for)
    if planned is not None:
        interval = _clamp(planned, policy.min_interval_s, policy.max_planned_s)
    else:
        blind = policy.min_interval_s * math.pow(_BACKOFF, min(polls, _BACKOFF_STEPS))
        interval = _clamp(blind, policy.min_interval_s, policy.max_interval_s)
    if status.retry_after_s:
        interval = max(interval, status.retry_after_s)
    return interval


def _from_progress(
    policy: WaitPolicy,
    status: JobStatus,
    running_for: float,
    end_within: tuple[float, float] | None,
) -> float | None:
    """Progress predicts the end: aim just before it, and re-aim as it comes closer."""
    progress = status.progress
    if progress is None or not _MIN_PROGRESS <= progress < 1:
        return None
    if status.progress_step and end_within is not None:
        return _from_steps(policy, progress, status.progress_step, running_for, end_within)
    remaining = running_for * (1 - progress) / progress
    return remaining * _AIM + policy.min_interval_s / 2


def _from_steps(
    policy: WaitPolicy,
    progress: float,
    step: float,
    running_for: float,
    end_within: tuple[float, float],
) -> float:
    """Coarse progress: halve the end window on the steps before it, then poll inside it.

    A wide window is halved by a poll where its middle predicts a step boundary (the step is
    seen or not), never later than the usual aim at `_AIM` of the remainder; far from the end
    the usual aim alone; once narrow, a poll at the window's middle (then in the half that is
    left, or at its far edge when the middle is closer than `WaitPolicy.min_interval_s`).
    """
    low, high = end_within
    middle = (low + high) / 2
    earliest = running_for + policy.min_interval_s
    aim_at = running_for + _AIM * (middle - running_for)
    if high - low > _STEP_WINDOW_S:
        boundary = _step_boundary(progress, step, middle, earliest, aim_at)
        if boundary is not None:
            return boundary - running_for
    if aim_at < low - _FAR_STEPS * step * middle:
        return aim_at - running_for
    # Too close to the middle to ask there: ask once at the latest end the window allows.
    return (middle if earliest < middle else high) - running_for


def _step_boundary(
    progress: float, step: float, run_s: float, earliest: float, latest: float
) -> float | None:
    """The latest time in [earliest, latest] at which a job of ``run_s`` crosses a step it
    has not yet shown (the final step, the end itself, excluded), or None."""
    steps = round(1 / step)
    level = min(math.floor(latest / (step * run_s)), steps - 1)
    if level <= round(progress / step):
        return None
    at = level * step * run_s
    return at if at >= earliest else None


def end_window(readings: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """The run time (low, high] that coarse progress readings allow, if progress is linear.

    Each reading (running for, progress, step) says the job is between ``progress`` and
    ``progress + step`` done, so it ends after running_for / (progress + step) and no later
    than running_for / progress; the window is what the late readings agree on (the newest
    alone if they disagree: the progress is not linear, or a new bar began).
    """
    if not readings:
        return None
    newest_progress, newest_step = readings[-1][1], readings[-1][2]
    late = [
        (running_for, progress, step)
        for running_for, progress, step in readings
        if step == newest_step and newest_progress - _STEP_SPAN <= progress <= newest_progress
    ]
    low = max(running_for / (progress + step) for running_for, progress, step in late)
    high = min(running_for / progress for running_for, progress, _ in late)
    if low > high:
        running_for, progress, step = readings[-1]
        return running_for / (progress + step), running_for / progress
    return low, high


def _from_history(policy: WaitPolicy, running_for: float) -> float | None:
    """No progress: sleep to the likely window (expected ± 2 spreads), then step through it.

    The first hop stops at `_CHECKPOINT` of the way to the window, so a history that is too
    long (jobs got faster) costs one early poll and corrects itself instead of repeating.
    Steps are finest around the expected time, coarser in the early tail, growing when late.
    """
    expected = policy.expected_run_s
    if expected is None:
        return None
    if policy.spread_s is None:
        # A prior, not a measured history: follow it, but never sleep past the blind cap.
        return min(
            _history_sleep(policy, expected, expected / 6, running_for), policy.max_interval_s
        )
    return _history_sleep(policy, expected, policy.spread_s, running_for)


def _history_sleep(policy: WaitPolicy, expected: float, spread: float, running_for: float) -> float:
    """The history schedule itself (see `_from_history`)."""
    spread = max(spread, expected * _MIN_SPREAD_FRACTION)
    step = _clamp(spread * _WINDOW_STEP_FRACTION, policy.min_interval_s, _WINDOW_STEP_MAX_S)
    window_start = expected - 2 * spread
    checkpoint = _CHECKPOINT * window_start
    if running_for < checkpoint:
        # Never a checkpoint poll sooner than the blind cap, but never past the window either:
        # for short routes the cap alone would sleep through the whole window.
        hop_to = min(max(checkpoint, running_for + policy.max_interval_s), window_start)
        return hop_to - running_for
    if running_for < window_start:
        return window_start - running_for
    if running_for < expected - spread:
        return step * _EARLY_TAIL_STEPS
    if running_for < expected + spread:
        return step
    return step + (running_for - expected - spread) * _LATE_GROWTH


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


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
    create was sent), or from now. Raises `JobTimeout` on the deadline (after cancelling
    where possible). Provider errors that persist past a few retries propagate; a FAILED or
    CANCELED job is a normal return.
    """
    policy = policy or WaitPolicy()
    tracker = _Tracker(job, on_update)
    waited_s = 0.0 if started_at is None else max(0.0, time.monotonic() - started_at)
    try:
        async with asyncio.timeout(policy.deadline_s - waited_s):
            return await _until_terminal(provider, job, policy, tracker)
    except TimeoutError:
        canceled = False
        if policy.cancel_on_deadline and provider.can_cancel:
            canceled = await cancel_remote(provider, job) is None
        raise JobTimeout(job.id, policy.deadline_s, canceled=canceled) from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        if provider.can_cancel:
            await asyncio.shield(cancel_remote(provider, job))
        raise


async def cancel_remote(provider: Provider, job: Job) -> Exception | None:
    """Ask the provider to stop ``job``, within `CANCEL_TIMEOUT_S`: None once it acknowledged,
    else why not (the timeout included). Only cancellation of the caller escapes."""
    try:
        async with asyncio.timeout(CANCEL_TIMEOUT_S):
            await provider.cancel(job)
    except Exception as exc:  # best effort: the caller records or drops the reason
        return exc
    return None


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
