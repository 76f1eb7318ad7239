"""Timing: provider timestamps win where they exist, else client observations; sources say which.

The honesty checks against emulator truth live in test_runner (they need a whole run).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from abebeats_lab._types import Job, JobState, JobStatus, Route, VideoRequest
from abebeats_lab.run.timing import Clock, Marks, build_timing
from abebeats_lab.waiting import WaitResult

T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
CLOCK = Clock(T0, 1000.0)
"""Monotonic 1000.0 is wall T0, so expected figures are easy to read."""


def _job(initial: JobStatus | None = None) -> Job:
    return Job(Route.parse("local:procedural"), "job-1", VideoRequest("p"), T0, initial=initial)


def _result(status: JobStatus, *, running: float | None, done: float, polls: int = 5) -> WaitResult:
    return WaitResult(status=status, polls=polls, running_seen_at=running, done_seen_at=done)


def _marks(**changes: object) -> Marks:
    marks = Marks(
        submitted_at=T0,
        submit_start=1000.0,
        submit_end=1000.5,
        download_start=1020.0,
        download_end=1021.0,
    )
    for name, value in changes.items():
        setattr(marks, name, value)
    return marks


def test_provider_timestamps_win_and_are_labelled() -> None:
    status = JobStatus(
        JobState.SUCCEEDED,
        "succeeded",
        created_at=T0 + timedelta(seconds=0.4),
        started_at=T0 + timedelta(seconds=3.4),
        completed_at=T0 + timedelta(seconds=18.4),
    )
    timing = build_timing(_job(), _result(status, running=1004.0, done=1019.0), _marks(), CLOCK)
    assert (timing.queue_s, timing.run_s) == (3.0, 15.0)
    assert timing.detect_lag_s == 0.6  # seen at 1019.0 = T0+19.0; done at T0+18.4
    assert (timing.submit_s, timing.download_s, timing.total_s, timing.polls) == (0.5, 1.0, 21.0, 5)
    assert timing.sources == {
        "submit_s": "client",
        "queue_s": "provider",
        "run_s": "provider",
        "detect_lag_s": "provider",
        "download_s": "client",
        "total_s": "client",
    }


def test_without_timestamps_the_client_observations_are_used_and_no_lag_is_invented() -> None:
    status = JobStatus(JobState.SUCCEEDED, "SUCCEEDED", created_at=T0)
    timing = build_timing(_job(), _result(status, running=1004.0, done=1019.0), _marks(), CLOCK)
    assert (timing.queue_s, timing.run_s) == (3.5, 15.0)
    assert timing.detect_lag_s is None
    assert timing.sources["queue_s"] == timing.sources["run_s"] == "client"
    assert "detect_lag_s" not in timing.sources


def test_timestamps_seen_on_earlier_statuses_count() -> None:
    running = JobStatus(
        JobState.RUNNING, "running", created_at=T0, started_at=T0 + timedelta(seconds=2)
    )
    done = JobStatus(JobState.SUCCEEDED, "succeeded", completed_at=T0 + timedelta(seconds=7))
    result = _result(done, running=1003.0, done=1008.0)
    result.transitions.append((1003.0, running))
    timing = build_timing(_job(), result, _marks(), CLOCK)
    assert (timing.queue_s, timing.run_s, timing.detect_lag_s) == (2.0, 5.0, 1.0)


def test_a_resumed_job_uses_wall_clock_and_keeps_earlier_polls() -> None:
    accepted = T0 + timedelta(seconds=0.5)
    marks = Marks(submitted_at=T0, accepted_at=accepted, prior_submit_s=0.5, prior_polls=4)
    status = JobStatus(JobState.SUCCEEDED, "SUCCEEDED")
    clock = Clock(T0 + timedelta(seconds=100), 50.0)  # a new process: another monotonic origin
    timing = build_timing(_job(), _result(status, running=51.0, done=52.0, polls=2), marks, clock)
    assert timing.submit_s == 0.5
    assert timing.queue_s == 100.5  # accepted at T0+0.5, first seen running at T0+101
    assert timing.total_s == 102.0
    assert timing.polls == 6


def test_a_job_that_never_ran_has_only_what_was_measured() -> None:
    marks = Marks(submitted_at=T0, submit_start=1000.0)  # the create call raised
    timing = build_timing(None, None, marks, CLOCK)
    assert timing.sources == {}
    assert timing.polls == 0
