"""Run-time history per user: learnt in one run folder, used in the next, cleared on request."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _runner_support import run_cli

from abebeats_lab import Settings, history
from abebeats_lab._types import JobState, JobStatus
from abebeats_lab.emulator import Emulators, EmulatorState, Scenario
from abebeats_lab.run.api import compare
from abebeats_lab.store import JobRow
from abebeats_lab.waiting import WaitPolicy, WaitResult

VEO = "veo:veo-3.1-fast-generate-001"
LOCAL = "local:procedural"
VEO_SETTINGS = Settings(duration_s=4, aspect_ratio="16:9", resolution="720p")
DONE = JobStatus(JobState.SUCCEEDED, "done")
SMALL = Settings(duration_s=1, aspect_ratio="16:9", resolution="240p")
FAST_CREATES = {"veo": 600.0}
"""Veo's published 10 creates a minute would space two creates 6 s apart."""
QUEUE_S = Scenario().queue_s
LATE_RUN_S = 3.0
"""A job about three times the learnt one: it outlives the learnt window, and still ends long
before the blind schedule's second status request."""
BLIND_CAP_S = WaitPolicy().max_interval_s
"""Without history, Veo's 60 s prior polls every `max_interval_s` (8 s): a 1 s emulated job is
seen done 8 s after it was first seen running."""


def _status_requests(state: EmulatorState) -> list[int]:
    """Per job, the status requests the emulator logged for it."""
    return [truth["status_requests"] for truth in state.truth()]


async def test_a_second_comparison_in_a_new_folder_waits_on_the_first_ones_run_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulators(["veo"], Scenario()) as emus:  # what --emulate serves, logged here
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        state = emus.states["veo"]

        async def comparison(folder: str, repeats: int = 1) -> list[JobRow]:
            state.jobs.clear()
            state.requests.clear()
            done = await compare(
                "a paper boat", [VEO], VEO_SETTINGS, repeats=repeats, run_dir=tmp_path / folder,
                rate_per_min=FAST_CREATES,
            )  # fmt: skip
            assert all(row.state == "succeeded" and row.emulated for row in done.rows)
            return done.rows

        cold = await comparison("first", repeats=2)
        blind = _status_requests(state)
        # Cold: nothing learnt yet, so the second status request comes a blind cap after the
        # first (a lower bound: the schedule's own sleep, which load can only lengthen).
        assert all((row.timing.run_s or 0) >= BLIND_CAP_S for row in cold)
        assert history.run_time_prior(VEO, emulated=True) is not None
        assert history.run_time_prior(VEO, emulated=False) is None  # emulated never trains real

        # Warm, in a folder that has never seen Veo: it adds its sample (counted below). How
        # many requests it makes depends on where the cold samples fell (each is drawn between
        # the last unfinished and the first done poll), so only the late job below is bounded.
        [row] = await comparison("second")
        assert row.timing.polls >= 1

        # The schedule aims at the learnt window: a job that outlives it is asked about around
        # the window, where the blind schedule asks once in `BLIND_CAP_S` and then sees it done.
        state.set_scenario(Scenario().with_times(QUEUE_S, LATE_RUN_S))
        await comparison("third")
        [late] = _status_requests(state)
    assert late > max(blind)

    listed = run_cli("history")
    assert listed.returncode == 0, listed.stderr
    assert str(history.history_path()) in listed.stdout
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(VEO)]
    assert line.split()[1:3] == ["emulated", "4"]


def test_history_lives_in_the_user_cache_and_the_env_var_moves_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(history.CACHE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert history.history_path() == tmp_path / "elsewhere" / history.HISTORY_FILE
    monkeypatch.delenv(history.CACHE_DIR_ENV)
    import platformdirs

    assert history.cache_dir() == Path(platformdirs.user_cache_dir("abebeats-lab"))


def test_each_route_keeps_its_last_runs_and_emulated_apart_from_real() -> None:
    for seconds in range(1, history.KEEP + 11):
        history.record(VEO, float(seconds), emulated=True)
    history.record(VEO, 40.0, emulated=False)
    kept = {(h.route, h.emulated): h for h in history.summaries()}
    assert kept[(VEO, True)].samples == history.KEEP
    assert kept[(VEO, True)].median_s == pytest.approx((11 + history.KEEP + 10) / 2)
    assert kept[(VEO, False)].samples == 1
    assert history.run_time_prior(VEO, emulated=False) is None  # one run time is not a history
    history.record(VEO, 44.0, emulated=False)
    assert history.run_time_prior(VEO, emulated=False) == (42.0, pytest.approx(2 * 1.4826))


def test_the_cli_clears_one_route_or_all() -> None:
    for route in (VEO, LOCAL):
        for seconds in (1.0, 2.0):
            history.record(route, seconds, emulated=False)
    one = run_cli("history", "--clear", "--route", LOCAL)
    assert one.returncode == 0, one.stderr
    assert "forgot 2 run times (local:procedural)" in one.stdout
    assert [h.route for h in history.summaries()] == [VEO]
    every = run_cli("history", "--clear")
    assert every.returncode == 0 and "forgot 2 run times (every route)" in every.stdout
    assert history.summaries() == []
    assert "no run times recorded yet" in run_cli("history").stdout
    assert history.clear() == 0


async def test_an_unreadable_history_never_fails_a_run_and_the_cli_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    path = history.history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    result = await compare("a kite", [LOCAL], SMALL, repeats=2, run_dir=tmp_path / "run")
    assert [row.state for row in result.rows] == ["succeeded", "succeeded"]
    listed = run_cli("history")
    assert listed.returncode == 1
    assert listed.stderr.strip().startswith("abebeats-lab: cannot read the run-time history")
    assert len(listed.stderr.strip().splitlines()) == 1
    assert os.environ[history.CACHE_DIR_ENV] in listed.stderr


def test_a_polled_run_time_is_drawn_between_the_last_unfinished_poll_and_the_first_done() -> None:
    """A coarse schedule's run times carry its lag; the history must not learn the lag."""
    polled = WaitResult(DONE, running_seen_at=10.0, last_pending_at=18.0, done_seen_at=26.0)
    draws = [history.run_time_sample(polled, 16.0, "client") for _ in range(200)]
    assert all(8.0 <= (d or 0) <= 16.0 for d in draws)
    assert len(set(draws)) > 1  # a draw, not the midpoint: the spread survives
    pushed = WaitResult(DONE, running_seen_at=10.0, done_seen_at=13.5, pushed=True)
    assert history.run_time_sample(pushed, 3.5, "client") == 3.5
    assert history.run_time_sample(polled, 12.5, "provider") == 12.5
