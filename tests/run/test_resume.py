"""Crash and resume: a comparison SIGKILLed mid-flight resumes with zero duplicate creates.

The killed comparison runs in a child process (the same code a notebook or the CLI runs),
talking to emulators served by this test process through the real environment variables,
so the emulator's request log is the ground truth about creates.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _runner_support import (
    FAST,
    KILL_TRIES,
    LATE_EVERY_TIME,
    LOCAL,
    REMOTE,
    ROUTE_OF,
    SMALL,
    db_rows,
    run_cli,
)

from abebeats_lab import Settings
from abebeats_lab.emulator import Emulators, EmulatorState, Scenario
from abebeats_lab.providers import provider_class
from abebeats_lab.run.api import compare, load_run, resume, was_interrupted
from abebeats_lab.run.submit import CANCEL_ASKED, FINISHED_FIRST
from abebeats_lab.store import JobRow
from abebeats_lab.waiting import WaitPolicy

CHILD = """
import asyncio, json, sys
from abebeats_lab import Settings
from abebeats_lab.run.api import compare
from abebeats_lab.waiting import WaitPolicy
spec = json.loads(sys.argv[1])
asyncio.run(compare(
    spec["prompts"], spec["routes"], Settings(**spec["settings"]),
    repeats=spec["repeats"], run_dir=spec["run_dir"], concurrency=spec["concurrency"], adapt=True,
    policy=WaitPolicy(min_interval_s=0.02, max_interval_s=0.1),
))
"""
CHILD_TIMEOUT_S = 60.0
"""Generous: the child imports PyAV and numpy on a machine shared with other test runs."""
POLL_S = 0.02


@pytest.fixture
def emulators(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    with Emulators(["runway", "replicate"], Scenario.fast()) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        yield emus


def _start_child(
    run_dir: Path, prompts: list[str], route: str, **options: object
) -> subprocess.Popen[bytes]:
    settings = options.pop("settings", {"duration_s": 2, "resolution": "720p"})
    spec = {
        "prompts": prompts,
        "routes": [route],
        "settings": settings,
        "run_dir": str(run_dir),
        "concurrency": options.pop("concurrency", None),
        "repeats": options.pop("repeats", 1),
    }
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec)],
        env=dict(os.environ),
        cwd=run_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(child: subprocess.Popen[bytes], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not ready():
        if child.poll() is not None:
            raise AssertionError(
                f"child ended early: {child.stderr.read().decode() if child.stderr else ''}"
            )
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("child never reached the point to kill it")
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    if child.stderr is not None:
        child.stderr.close()


MID_FLIGHT_RUN_S = 3.0
"""Jobs long enough that the kill, once every id is stored, normally finds them all running."""
WAITED_ON = frozenset({"queued", "running"})
"""Row states of a job sent, answered and not yet seen finished."""
COLLECTED = frozenset({"downloading", "succeeded"})
"""Row states of a job the child saw finished (allowed only if its provider had finished it)."""


def _finished_at(state: EmulatorState, moment: float) -> set[str]:
    """Ids of the jobs the emulator had finished (their video ready) at ``moment``."""
    return {job.id for job in state.jobs.values() if job.phase(moment) == "succeeded"}


async def _all_finished(state: EmulatorState) -> None:
    """Wait until the emulator has finished every job (its video ready)."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while any(job.phase() != "succeeded" for job in state.jobs.values()):
        assert time.monotonic() < deadline, [job.phase() for job in state.jobs.values()]
        await asyncio.sleep(POLL_S)


@pytest.mark.parametrize("watched", [True, False], ids=["reattach-running", "finished-unwatched"])
async def test_sigkill_mid_flight_then_resume_finishes_every_job_exactly_once(
    emulators: Emulators, tmp_path: Path, watched: bool
) -> None:
    state = emulators.states["runway"]
    state.set_scenario(Scenario.fast().with_times(0.05, MID_FLIGHT_RUN_S))
    run_dir = tmp_path / "run"
    jobs = 4  # one prompt repeated: the emulator renders its video once
    child = _start_child(
        run_dir, ["a kite"], ROUTE_OF["runway"], concurrency={"runway": jobs}, repeats=jobs
    )
    _kill_when(child, lambda: sum(1 for r in db_rows(run_dir) if r["job_id"]) == jobs)
    finished = _finished_at(state, time.time())  # the child is dead: its rows are final
    before = {(r["repeat"], r["job_id"], r["state"]) for r in db_rows(run_dir)}
    for _, job_id, row_state in before:  # the kill found every job sent and ...
        # ... none seen finished that its provider had not finished (normally: none at all).
        allowed = WAITED_ON | COLLECTED if job_id in finished else WAITED_ON
        assert row_state in allowed, (job_id, row_state, finished)
    if not watched:  # let every job finish while nobody is watching
        await _all_finished(state)
    result = await resume(run_dir, policy=FAST)
    assert [r.state for r in result.rows] == ["succeeded"] * jobs
    assert {(r.repeat, r.job_id) for r in result.rows} == {(i, j) for i, j, _ in before}
    assert state.count("create") == jobs and len(state.jobs) == jobs
    for row in result.rows:
        assert (run_dir / (row.output_path or "missing")).is_file()
        assert row.timing.download_s is not None and row.timing.total_s is not None
    if not watched:
        assert all(r.timing.polls >= 1 for r in result.rows)


@pytest.mark.parametrize("provider", ["runway", "replicate"])
async def test_a_create_cut_off_by_sigkill_is_never_resubmitted(
    emulators: Emulators, tmp_path: Path, provider: str
) -> None:
    state = emulators.states[provider]
    state.set_scenario(Scenario.fast(hang_create=1))
    run_dir = tmp_path / "run"
    child = _start_child(run_dir, ["a kite"], ROUTE_OF[provider])
    _kill_when(child, lambda: state.count("create") == 1)
    assert [r["state"] for r in db_rows(run_dir)] == ["submitting"]
    result = await resume(run_dir, policy=FAST)
    (row,) = result.rows
    if provider_class(provider).can_reconcile:  # found the job it made: followed it
        assert row.state == "succeeded", row.error
        assert row.job_id == next(iter(state.jobs))
    else:
        assert row.state == "ambiguous" and "not resubmitted" in (row.error or "")
    assert state.count("create") == 1 and len(state.jobs) == 1
    again = await resume(run_dir, policy=FAST)  # a second resume changes nothing
    assert again.rows == result.rows and state.count("create") == 1


async def test_an_ambiguous_create_in_a_live_run_is_a_row_not_a_duplicate(
    emulators: Emulators, tmp_path: Path
) -> None:
    state = emulators.states["runway"]
    state.set_scenario(Scenario.fast(drop_create=1))
    result = await compare(["a kite"], [ROUTE_OF["runway"]], REMOTE, run_dir=tmp_path, policy=FAST)
    (row,) = result.rows
    assert row.state in ("ambiguous", "succeeded")
    assert row.state == "succeeded" or "AmbiguousSubmitError" in (row.error or "")
    assert state.count("create") == 1


async def test_sigkill_on_local_renders_unfinished_rows_again(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    prompts = [f"scene {i} of a long night" for i in range(4)]
    settings = {"duration_s": 4, "resolution": "360p"}
    child = _start_child(run_dir, prompts, LOCAL, settings=settings, concurrency={"local": 1})

    def some_started_some_planned() -> bool:
        states = [r["state"] for r in db_rows(run_dir)]
        return "planned" in states and any(s in ("queued", "running") for s in states)

    _kill_when(child, some_started_some_planned)
    before = {r["prompt_index"]: r for r in db_rows(run_dir)}
    resumed_at = datetime.now(UTC)
    result = await resume(run_dir, policy=FAST)
    assert [r.state for r in result.rows] == ["succeeded"] * len(prompts)
    for row in result.rows:
        assert (run_dir / (row.output_path or "missing")).is_file()
        old = before[row.prompt_index]
        if old["state"] == "succeeded":  # kept as it was
            assert (row.job_id, row.submitted_at) == (old["job_id"], old["submitted_at"])
        else:  # the render died with the process: rendered again, timed from this resume
            assert row.job_id != old["job_id"] and row.submitted_at is not None
            assert datetime.fromisoformat(row.submitted_at) >= resumed_at


async def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    first = await compare("a kite", [LOCAL], SMALL, run_dir=tmp_path, policy=FAST)
    again = await resume(tmp_path)
    assert again.rows == first.rows == load_run(tmp_path).rows


# -- interrupted runs: `resume --rerun-cancelled` ------------------------------------------

CLI = [sys.executable, "-m", "abebeats_lab.cli"]
NOT_PAID_TWICE = Scenario.fast().with_times(0.05, 5.0)
"""Jobs that outlive the interrupt (sent once their create's answer is stored) but end soon
after, so the resume sees them finish."""
OUTLIVES_ANY_START = Scenario.fast().with_times(0.05, 600.0)
"""A job still running when the interrupt comes, however late the other route's create."""


async def _interrupt_when_all_sent(task: asyncio.Task[object], run_dir: Path, jobs: int) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while sum(1 for r in db_rows(run_dir) if r["job_id"]) < jobs:
        assert time.monotonic() < deadline and not task.done(), "the jobs were never sent"
        await asyncio.sleep(0.02)
    task.cancel()  # what Ctrl-C in the CLI or a kernel interrupt does to the comparison
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_rerun_cancelled_collects_a_job_that_may_still_finish_and_resends_a_cancelled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Emulators(["runway", "veo"], NOT_PAID_TWICE) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        # Runway's first job cannot end before it is cancelled, whenever Veo's create is
        # answered; the one sent again is quick.
        emus.set_scenario(OUTLIVES_ANY_START, "runway")
        routes = [ROUTE_OF["runway"], ROUTE_OF["veo"]]
        run = compare("a kite", routes, REMOTE, run_dir=tmp_path, adapt=True)
        task = asyncio.ensure_future(run)
        await _interrupt_when_all_sent(task, tmp_path, len(routes))
        emus.set_scenario(Scenario.fast(), "runway")
        before = {r.provider: r for r in load_run(tmp_path).rows}
        assert all(was_interrupted(r) for r in before.values())
        assert "cannot cancel" in (before["veo"].error or "")  # Veo's job runs on, paid for

        untouched = await resume(tmp_path, policy=FAST)
        assert untouched.rows == load_run(tmp_path).rows
        assert [r.state for r in untouched.rows] == ["canceled", "canceled"]

        result = await resume(tmp_path, policy=FAST, rerun_cancelled=True)
        after = {r.provider: r for r in result.rows}
        runway, veo = emus.states["runway"], emus.states["veo"]
    assert [r.state for r in result.rows] == ["succeeded", "succeeded"]
    # Veo could not cancel: its own job was collected, never a second one paid for.
    assert veo.count("create") == 1 and after["veo"].job_id == before["veo"].job_id
    # Runway cancelled its job (the provider says so): only then was it sent again.
    assert runway.count("create") == 2 and after["runway"].job_id != before["runway"].job_id
    for row in result.rows:
        assert (tmp_path / (row.output_path or "missing")).is_file()


def _stop_when(child: subprocess.Popen[str], run_dir: Path, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not ready():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline, "the run never reached the point to stop it"
        time.sleep(0.02)


def test_ctrl_c_prints_the_command_that_finishes_the_run(tmp_path: Path) -> None:
    prompts = ["night one", "night two", "night three"]  # local runs two at a time
    child = subprocess.Popen(
        [*CLI, "compare", *prompts, "--route", LOCAL, "--duration", "10", "--resolution", "1080p"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = tmp_path / "abebeats-runs"

    def rendering() -> bool:
        folders = list(runs.glob("*")) if runs.is_dir() else []
        return bool(folders) and any(r["state"] == "running" for r in db_rows(folders[0]))

    _stop_when(child, runs, rendering)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    (run_dir,) = runs.iterdir()
    command = stderr.strip().splitlines()[-1].strip()
    assert command == f"abebeats-lab resume abebeats-runs/{run_dir.name} --rerun-cancelled"
    interrupted = load_run(run_dir).rows
    assert all(was_interrupted(r) for r in interrupted)
    sent = {r.prompt_index: r.job_id for r in interrupted if r.job_id}
    assert sent and len(sent) < len(prompts)  # one was rendering, one was never sent

    plain = run_cli("resume", str(run_dir), cwd=tmp_path)  # reports them, reruns nothing
    assert plain.returncode == 1, plain.stderr  # cancelled jobs are not success (issue 17)
    assert "--rerun-cancelled" in plain.stderr
    assert load_run(run_dir).rows == interrupted

    finish = run_cli(*shlex.split(command)[1:], cwd=tmp_path)
    assert finish.returncode == 0, finish.stderr
    rows = load_run(run_dir).rows
    assert [r.state for r in rows] == ["succeeded"] * len(prompts)
    for row in rows:
        assert (run_dir / (row.output_path or "missing")).is_file()
        # A render stopped with its process: rendered again as a new job (re-attaching to
        # a job a provider may still finish is test_rerun_cancelled_collects_...'s case).
        assert row.job_id not in (None, sent.get(row.prompt_index))


def _kill_an_emulated_run(run_dir: Path) -> list[JobRow]:
    """Start ``compare --emulate`` in ``run_dir``, SIGKILL it once its job is sent (or it is
    done), and return the stored rows."""
    run_dir.mkdir(parents=True)
    child = subprocess.Popen(
        [*CLI, "compare", "a kite", "--route", ROUTE_OF["runway"], "--emulate", "--run-dir", "."],
        cwd=run_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def sent_or_done() -> bool:
        return child.poll() is not None or any(r["job_id"] for r in db_rows(run_dir))

    _stop_when(child, run_dir, sent_or_done)
    child.kill()  # SIGKILL: its in-process emulators die with it
    child.communicate()
    return load_run(run_dir).rows


def test_resume_after_sigkill_of_an_emulated_run_says_what_to_do_in_one_line(
    tmp_path: Path,
) -> None:
    # The emulators' default jobs take about a second: a kill that late (or a child done by
    # then) finds the job finished, nothing was lost, and a new run is killed instead.
    for attempt in range(KILL_TRIES):
        run_dir = tmp_path / f"run {attempt}"
        stored = _kill_an_emulated_run(run_dir)
        if [r.state for r in stored] != ["succeeded"]:
            break
        finished = run_cli("resume", ".", "--emulate", cwd=run_dir)
        assert finished.returncode == 0, finished.stderr
        assert load_run(run_dir).rows == stored
    else:
        pytest.fail(LATE_EVERY_TIME)

    done = run_cli("resume", ".", "--emulate", cwd=run_dir)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "emulators that stopped" in line and "--rerun-cancelled" in line
    assert load_run(run_dir).rows == stored  # no request changed any row

    again = run_cli("resume", ".", "--emulate", "--rerun-cancelled", cwd=run_dir)
    assert again.returncode == 0, again.stderr
    (row,) = load_run(run_dir).rows
    assert row.state == "succeeded" and row.emulated
    assert row.job_id != stored[0].job_id


FINISHES_IN_S = 0.5
"""A job quick enough that Replicate's held create answers with it inside the 1 s grace an
interrupted create gets (`run.submit.LOOKUP_GRACE_S`)."""
INTERRUPT_AFTER_S = 0.1
"""When the interrupt lands after the create arrived: well before the job finishes."""


async def _warm(route: str, run_dir: Path, settings: Settings) -> None:
    """One run first, so the emulator's render is cached and jobs end when scripted."""
    await compare("a red fox", [route], settings, run_dir=run_dir, policy=FAST)


async def test_a_job_that_finished_during_the_interrupt_is_collected_not_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 1: Ctrl-C while Replicate holds the create (``Prefer: wait``); the
    create answers ``succeeded`` inside the grace. A finished job is never cancelled nor
    counted as cancelled, so ``resume --rerun-cancelled`` collects it instead of paying
    for a second one."""
    route, settings = (
        ROUTE_OF["replicate"],
        Settings(duration_s=4, aspect_ratio="16:9", resolution="720p"),
    )
    with Emulators(["replicate"], Scenario.fast().with_times(0.05, FINISHES_IN_S)) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        state = emus.states["replicate"]
        await _warm(route, tmp_path / "warm", settings)
        sent = state.count("create")
        run_dir = tmp_path / "run"
        task = asyncio.ensure_future(
            compare("a red fox", [route], settings, run_dir=run_dir, policy=FAST)
        )
        while state.count("create") == sent:
            await asyncio.sleep(POLL_S)
        await asyncio.sleep(INTERRUPT_AFTER_S)
        interrupted_at = time.time()
        task.cancel()  # what Ctrl-C in the CLI or a kernel interrupt does to the comparison
        with pytest.raises(asyncio.CancelledError):
            await task
        (row,) = load_run(run_dir).rows
        job = state.jobs[row.job_id or "missing"]
        assert job.finished > interrupted_at, "the job ended before the interrupt"
        assert job.phase() == "succeeded" and state.count("cancel") == 0
        assert row.state == "queued" and row.error == FINISHED_FIRST  # not `canceled`
        assert not was_interrupted(row)

        result = await resume(run_dir, policy=FAST, rerun_cancelled=True)
        (done,) = result.rows
        creates = state.count("create") - sent
    assert creates == 1  # the same prediction collected, never a second one paid for
    assert (done.state, done.job_id) == ("succeeded", row.job_id)
    assert (run_dir / (done.output_path or "missing")).is_file()


async def test_an_interrupt_never_deletes_a_runway_task_that_succeeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 4: Ctrl-C while waiting on a Runway task that has succeeded but was not
    polled yet. Runway's cancel (DELETE) deletes a finished task and its video, so the task
    is read first and left alone; ``resume --rerun-cancelled`` collects that very video."""
    route = ROUTE_OF["runway"]
    # Polls far apart: the task ends long before the first status request.
    seldom = WaitPolicy(deadline_s=60.0, min_interval_s=30.0, max_interval_s=30.0, use_stream=False)
    with Emulators(["runway"], Scenario.fast().with_times(0.05, 0.3)) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        state = emus.states["runway"]
        await _warm(route, tmp_path / "warm", REMOTE)
        run_dir = tmp_path / "run"
        task = asyncio.ensure_future(
            compare("a red fox", [route], REMOTE, run_dir=run_dir, policy=seldom)
        )
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not (rows := db_rows(run_dir) if run_dir.is_dir() else []) or not rows[0]["job_id"]:
            assert time.monotonic() < deadline and not task.done(), "the job was never sent"
            await asyncio.sleep(POLL_S)
        job = state.jobs[rows[0]["job_id"]]
        while job.phase() != "succeeded":
            await asyncio.sleep(POLL_S)
        assert state.count("status", job.id) == 0  # we do not know it finished
        task.cancel()  # what Ctrl-C in the CLI or a kernel interrupt does to the comparison
        with pytest.raises(asyncio.CancelledError):
            await task
        (row,) = load_run(run_dir).rows
        assert was_interrupted(row) and row.error == CANCEL_ASKED
        assert state.count("cancel") == 0 and not job.deleted  # no DELETE: the video is kept

        result = await resume(run_dir, policy=FAST, rerun_cancelled=True)
        (done,) = result.rows
        creates = len(state.jobs)
    assert creates == 2  # the warm-up's and this run's: the same task collected
    assert (done.state, done.job_id) == ("succeeded", row.job_id)
    assert (run_dir / (done.output_path or "missing")).is_file()
