"""Ctrl-C pressed twice on `abebeats-lab compare`: the second press cannot cut short the
cleanup the first one started, so every job a provider accepted is cancelled and its id
recorded, and the printed resume command finishes the run (first-run report, finding 1).

The CLI runs as a child process against emulators served by this process (reached through
the variables a user sets), so their request log is the truth of what the providers got.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _reliability import ROUTES, point_at, reset
from _runner_support import db_rows

from abebeats_lab.cli.exits import EXIT_INTERRUPTED
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.run.api import load_run

CLI = [sys.executable, "-m", "abebeats_lab.cli"]
CLI_TIMEOUT_S = 180
START_TIMEOUT_S = 60.0
"""Generous: a child imports PyAV and numpy on a machine shared with other test runs."""
POLL_S = 0.02
PROVIDERS = ("replicate", "runway")
OUTLIVES_THE_TEST = Scenario.fast().with_times(0.05, 600.0)
"""Jobs still running at both presses; Replicate's creates are then held (``Prefer: wait``),
so its rows are settled by a lookup after a grace period: the cleanup the second press hits."""
PROMPTS = ("a kite", "a boat")
REPEATS = 2


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    with Emulators(PROVIDERS, OUTLIVES_THE_TEST) as emus:
        yield emus


@pytest.fixture
def env(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> Emulators:
    for provider in PROVIDERS:
        reset(emulators, provider, OUTLIVES_THE_TEST)
    return point_at(emulators, monkeypatch)


def _wait_until(ready: Callable[[], bool], child: subprocess.Popen[str], what: str) -> None:
    give_up = time.monotonic() + START_TIMEOUT_S
    while not ready():
        assert child.poll() is None, child.communicate()[1][-2000:]
        assert time.monotonic() < give_up, f"never got there: {what}"
        time.sleep(POLL_S)


def test_a_second_ctrl_c_lets_the_cleanup_finish_and_loses_no_job_id(
    env: Emulators, tmp_path: Path
) -> None:
    replicate, runway = env.states["replicate"], env.states["runway"]
    routes = [arg for p in PROVIDERS for arg in ("--route", ROUTES[p])]
    args = ["compare", *PROMPTS, *routes, "--repeats", str(REPEATS), "--run-dir", "run"]
    child = subprocess.Popen(
        [*CLI, *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    run_dir = tmp_path / "run"

    def sent() -> bool:  # Runway's creates answered and stored; Replicate's held
        stored = sum(1 for r in db_rows(run_dir) if r["job_id"] and r["provider"] == "runway")
        return stored >= 1 and replicate.count("create") >= 1

    _wait_until(sent, child, "creates sent to both providers")
    child.send_signal(signal.SIGINT)
    # The first press is being handled once Runway is asked to cancel; Replicate's held
    # creates are still being settled (a grace period, then a lookup) when the second lands.
    _wait_until(lambda: runway.count("cancel") >= 1, child, "the first cancel")
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=CLI_TIMEOUT_S)

    assert child.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    assert "Traceback" not in stderr and "Task was destroyed" not in stderr, stderr[-3000:]
    finishing = [line for line in stderr.splitlines() if "finishing the interrupt" in line]
    assert len(finishing) == 1 and "at most" in finishing[0], stderr[-3000:]
    assert "cancelled where possible" in stderr and "cut short" not in stderr

    rows = load_run(run_dir).rows
    stored = {r.job_id for r in rows if r.job_id}
    for state in (replicate, runway):  # emulator truth: every job it made is known and stopped
        assert state.jobs, state.provider
        for job_id, job in state.jobs.items():
            assert job_id in stored, (state.provider, job_id, [tuple(r) for r in db_rows(run_dir)])
            assert job.phase() == "canceled", (state.provider, job_id)
    assert [r.state for r in rows] == ["canceled"] * len(rows)
    creates = replicate.count("create") + runway.count("create")

    command = stderr.strip().splitlines()[-1].strip()
    assert command == "abebeats-lab resume run --rerun-cancelled"
    env.set_scenario(Scenario.fast())  # the jobs sent again finish at once
    finished = subprocess.run(
        [*CLI, *shlex.split(command)[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = load_run(run_dir).rows
    assert [r.state for r in rows] == ["succeeded"] * len(rows)
    # Each row was sent again once, after its first job was seen cancelled.
    assert replicate.count("create") + runway.count("create") - creates == len(rows)


def test_plain_resume_of_an_interrupted_emulated_run_names_emulate(tmp_path: Path) -> None:
    runway = ROUTES["runway"]
    slots = 2  # Runway's concurrency: the two rows after them wait unsent
    args = ["compare", "a kite", "--route", runway, "--repeats", str(2 * slots), "--emulate"]
    child = subprocess.Popen(
        [*CLI, *args, "--run-dir", "run"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = tmp_path / "run"
    _wait_until(lambda: any(r["job_id"] for r in db_rows(run_dir)), child, "a job sent")
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=CLI_TIMEOUT_S)
    assert child.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    rows = load_run(run_dir).rows
    assert sum(r.state == "canceled" for r in rows) >= slots  # the unsent ones at least

    def cli(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *words], cwd=tmp_path, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
        )

    plain = cli("resume", "run")  # reports the cancelled jobs, runs nothing
    assert plain.returncode == 1, plain.stderr[-3000:]
    hint = plain.stderr.strip().splitlines()[-1]
    command = hint.partition("to run them again: ")[2]
    assert command == "abebeats-lab resume run --emulate --rerun-cancelled", hint
    finished = cli(*shlex.split(command)[1:])
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [r.state for r in load_run(run_dir).rows] == ["succeeded"] * len(rows)
