"""`generate_many(continue_run=...)` never pays twice: while a job of the run may still make
a video it sends nothing and names the `resume` that settles it, runnable as printed.

Rows are checked against what the emulator had finished at the interrupt or kill, never
against timings.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path

import pytest
from _runner_support import (
    FAST,
    KILL_TRIES,
    LATE_EVERY_TIME,
    REMOTE,
    ROUTE_OF,
    db_rows,
    run_cli,
)

from abebeats_lab._types import JobState
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.errors import LabError
from abebeats_lab.run.api import GenerateResult, generate_many, load_run, was_interrupted
from abebeats_lab.run.resume_plan import may_still_run
from abebeats_lab.store import JobRow, RunStore

PROMPTS = ["a kite at dawn", "a boat at dusk"]
RUN_ID = "mv5"
JOB_S = 5.0
"""Jobs that outlive the interrupt (normally) but end soon after, so resume collects them."""
TIMEOUT_S = 60.0
"""Only a run that never gets going reaches it."""
QUOTED = re.compile(r"`([^`]+)`")
"""The command a `LabError` names, between backquotes."""

CHILD = """
import asyncio, sys
from abebeats_lab.run.api import generate_many
from abebeats_lab.waiting import WaitPolicy

policy = WaitPolicy(deadline_s=60, min_interval_s=0.05, max_interval_s=0.3)
asyncio.run(generate_many(sys.argv[2:-1], [sys.argv[1]], run_dir=sys.argv[-1], emulate=True,
                          run_id="mv5", policy=policy))
"""


def _command(failure: pytest.ExceptionInfo[LabError]) -> str:
    (command,) = QUOTED.findall(str(failure.value))
    return str(command)


def _finish(command: str, cwd: Path) -> None:
    """Run the named command as a user would, from the folder it was named in."""
    words = shlex.split(command)
    assert words[0] == "abebeats-lab"
    done = run_cli(*words[1:], cwd=cwd)
    assert done.returncode == 0, done.stderr[-2000:]


async def _interrupt_a_run(run_dir: Path, route: str) -> list[JobRow]:
    """Start a run in this process, interrupt it (what Ctrl-C does) once every job is sent,
    and return the stored rows."""
    first = generate_many(
        PROMPTS, [route], REMOTE, run_dir=run_dir, adapt=True, policy=FAST, run_id=RUN_ID
    )
    task = asyncio.ensure_future(first)
    deadline = time.monotonic() + TIMEOUT_S
    while sum(1 for r in db_rows(run_dir) if r["job_id"]) < len(PROMPTS):
        assert time.monotonic() < deadline and not task.done(), "the jobs were never sent"
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    interrupted = load_run(run_dir).rows
    # Veo cannot cancel: a job not finished at the interrupt runs on, and is paid for.
    for row in interrupted:
        assert row.state == "succeeded" or may_still_run(row, False), (row.state, row.error)
    return interrupted


async def test_an_interrupted_job_that_may_still_finish_blocks_until_resumed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    veo = ROUTE_OF["veo"]
    with Emulators(["veo"], Scenario.fast().with_times(0.05, JOB_S)) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        state = emus.states["veo"]
        for attempt in range(KILL_TRIES):
            state.jobs.clear()  # each attempt's creates are counted alone
            state.requests.clear()
            run_dir = tmp_path / str(attempt) / "my runs"  # a space: the command must quote it
            interrupted = await _interrupt_a_run(run_dir, veo)
            if any(may_still_run(r, False) for r in interrupted):
                break  # normally at once
        else:
            pytest.fail(LATE_EVERY_TIME)

        def again() -> Coroutine[object, object, list[GenerateResult]]:
            return generate_many(
                PROMPTS, [veo], REMOTE, run_dir=run_dir, adapt=True, policy=FAST,
                continue_run=RUN_ID,
            )  # fmt: skip

        # Nothing may be sent while a job can still finish.
        with pytest.raises(LabError, match="may still finish") as caught:
            await again()
        assert state.count("create") == len(PROMPTS)  # nothing was sent
        command = _command(caught)
        quoted = shlex.quote(str(run_dir))
        assert command == f"abebeats-lab resume {quoted} --run {RUN_ID} --rerun-cancelled"
        _finish(command, tmp_path)

        results = await again()
        creates = state.count("create")
    assert creates == len(PROMPTS)  # each prompt paid once
    kept = {r.prompt_index: r.job_id for r in interrupted if r.job_id}
    for index, result in enumerate(results):
        assert result.row.state == "succeeded" and result.output_path.is_file()
        assert result.row.job_id == kept[index]  # its own job, collected


def _kill_a_child_run(run_dir: Path, route: str) -> list[JobRow]:
    """Run ``generate_many(emulate=True)`` in a child, SIGKILL it once a job is sent (or it
    is done), and return the stored rows."""
    argv = [sys.executable, "-c", CHILD, route, *PROMPTS, str(run_dir)]
    child = subprocess.Popen(argv, cwd=run_dir.parent, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT_S
    while not any(r["job_id"] for r in db_rows(run_dir)) and child.poll() is None:
        assert time.monotonic() < deadline, "the run never sent a job"
        time.sleep(0.02)
    child.kill()
    child.communicate()
    return load_run(run_dir).rows


def test_a_killed_emulated_run_names_the_resume_that_works(tmp_path: Path) -> None:
    runway = ROUTE_OF["runway"]
    # The emulators' jobs take about a second: the kill normally finds them in flight (they
    # die with the child); a late kill finds them finished, and a new run is killed instead.
    for attempt in range(KILL_TRIES):
        run_dir = tmp_path / str(attempt) / "mv 5"
        run_dir.parent.mkdir()
        killed = _kill_a_child_run(run_dir, runway)
        if any(r.state != "succeeded" for r in killed):
            break
    else:
        pytest.fail(LATE_EVERY_TIME)

    def again() -> Coroutine[object, object, list[GenerateResult]]:
        return generate_many(
            PROMPTS, [runway], run_dir=run_dir, emulate=True, policy=FAST, continue_run=RUN_ID
        )

    with pytest.raises(LabError) as caught:
        asyncio.run(again())
    command = _command(caught)
    quoted = shlex.quote(str(run_dir))
    expected = f"abebeats-lab resume {quoted} --run {RUN_ID} --emulate --rerun-cancelled"
    assert command == expected
    assert load_run(run_dir).rows == killed  # nothing was sent
    _finish(command, tmp_path)
    results = asyncio.run(again())
    assert [r.row.prompt_index for r in results] == list(range(len(PROMPTS)))
    assert all(r.row.state == "succeeded" and r.output_path.is_file() for r in results)
    assert not any(map(was_interrupted, (r.row for r in results)))


async def test_an_ambiguous_paid_create_blocks_and_points_at_the_dashboard(
    tmp_path: Path,
) -> None:
    """`resume` cannot settle an ambiguous create (the provider cannot be asked), so naming
    it would be a dead end: the message says what a person can do instead."""
    local = "local:procedural"
    first = await generate_many(PROMPTS, [local], REMOTE, run_dir=tmp_path, adapt=True)
    row = first[0].row
    with RunStore(tmp_path) as store:  # what a real create whose answer was lost leaves
        store.save(row.evolve(state=JobState.AMBIGUOUS, job_id=None, emulated=False))
    with pytest.raises(LabError) as failure:
        await generate_many(PROMPTS, [local], REMOTE, run_dir=tmp_path, continue_run=row.run_id)
    assert "dashboard" in str(failure.value) and "resume" not in str(failure.value)
    assert len(load_run(tmp_path, row.run_id).rows) == len(PROMPTS)  # nothing was sent
