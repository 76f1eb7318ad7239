"""When to ask again: the sleep before the next status request, from what the job has shown.

Three sources, best first: provider ``progress`` (a fine one projected to the end; a coarse one,
such as a tqdm bar of 50 steps, kept as a window of possible end times that each poll halves),
then the run times this route has shown before (a dense window around the expected end), then
a blind backoff. Pure functions of the policy, the status and the clock: `waiting` runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from abebeats_lab._types import JobState, JobStatus

__all__ = ["WaitPolicy", "end_window", "next_interval"]

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
