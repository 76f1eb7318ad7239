"""Crash and resume: a comparison SIGKILLed mid-flight resumes with zero duplicate creates.

The killed comparison runs in a child process (the same code a notebook or the CLI runs),
talking to emulators served by this test process through the real environment variables,
so the emulator's request log is the ground truth about creates.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _runner_support import (
    FAST,
    LOCAL,
    REMOTE,
    ROUTE_OF,
    SMALL,
    db_rows,
    emulator_available,
    require_emulator,
)

from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.providers import provider_class
from abebeats_lab.runner import compare, load_run, resume

CHILD = """
import asyncio, json, sys
from abebeats_lab import VideoRequest
from abebeats_lab.runner import compare
from abebeats_lab.waiting import WaitPolicy
spec = json.loads(sys.argv[1])
asyncio.run(compare(
    spec["prompts"], spec["routes"], VideoRequest("x", **spec["request"]),
    repeats=spec["repeats"], run_dir=spec["run_dir"], concurrency=spec["concurrency"], adapt=True,
    policy=WaitPolicy(min_interval_s=0.02, max_interval_s=0.1),
))
"""
CHILD_TIMEOUT_S = 60.0
"""Generous: the child imports PyAV and numpy on a machine shared with other test runs."""


@pytest.fixture
def emulators(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    names = [p for p in ("runway", "replicate") if emulator_available(p)]
    with Emulators(names, Scenario.fast()) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        yield emus


def _start_child(
    run_dir: Path, prompts: list[str], route: str, **options: object
) -> subprocess.Popen[bytes]:
    request = options.pop("request", {"duration_s": 2, "resolution": "720p"})
    spec = {
        "prompts": prompts,
        "routes": [route],
        "request": request,
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


@pytest.mark.parametrize("watched", [True, False], ids=["reattach-running", "finished-unwatched"])
async def test_sigkill_mid_flight_then_resume_finishes_every_job_exactly_once(
    emulators: Emulators, tmp_path: Path, watched: bool
) -> None:
    require_emulator("runway")
    state = emulators.states["runway"]
    state.set_scenario(Scenario.fast().with_times(0.05, 1.0))
    run_dir = tmp_path / "run"
    jobs = 4  # one prompt repeated: the emulator renders its video once
    child = _start_child(
        run_dir, ["a kite"], ROUTE_OF["runway"], concurrency={"runway": jobs}, repeats=jobs
    )
    _kill_when(child, lambda: sum(1 for r in db_rows(run_dir) if r["job_id"]) == jobs)
    before = {(r["repeat"], r["job_id"], r["state"]) for r in db_rows(run_dir)}
    assert {s for _, _, s in before} <= {"queued", "running"}  # killed while all were in flight
    if not watched:  # let every job finish while nobody is watching
        await asyncio.sleep(max(t["finished"] for t in state.truth()) - time.time() + 0.05)
    result = await resume(run_dir, policy=FAST)
    assert [r.state for r in result.rows] == ["succeeded"] * jobs
    assert {(r.repeat, r.job_id) for r in result.rows} == {(i, j) for i, j, _ in before}
    assert state.count("create") == jobs and len(state.jobs) == jobs
    for row in result.rows:
        assert (run_dir / (row.output_path or "missing")).is_file()
        assert row.download_s is not None and row.total_s is not None
    if not watched:
        assert all(r.polls >= 1 for r in result.rows)


@pytest.mark.parametrize("provider", ["runway", "replicate"])
async def test_a_create_cut_off_by_sigkill_is_never_resubmitted(
    emulators: Emulators, tmp_path: Path, provider: str
) -> None:
    require_emulator(provider)
    state = emulators.states[provider]
    state.set_scenario(Scenario.fast(hang_create=1))
    run_dir = tmp_path / "run"
    child = _start_child(run_dir, ["a kite"], ROUTE_OF[provider])
    _kill_when(child, lambda: state.count("create") == 1)
    assert [r["state"] for r in db_rows(run_dir)] == ["submitting"]
    result = await resume(run_dir, policy=FAST)
    (row,) = result.rows
    if hasattr(provider_class(provider), "reconcile"):  # found the job it made: followed it
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
    require_emulator("runway")
    state = emulators.states["runway"]
    state.set_scenario(Scenario.fast(drop_create=1))
    result = await compare(["a kite"], [ROUTE_OF["runway"]], REMOTE, run_dir=tmp_path, policy=FAST)
    (row,) = result.rows
    assert row.state in ("ambiguous", "succeeded")
    assert row.state == "succeeded" or "AmbiguousSubmitError" in (row.error or "")
    assert state.count("create") == 1


async def test_sigkill_on_local_resumes_planned_and_in_flight_rows(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    prompts = [f"scene {i} of a long night" for i in range(4)]
    request = {"duration_s": 4, "resolution": "360p"}
    child = _start_child(run_dir, prompts, LOCAL, request=request, concurrency={"local": 1})

    def some_started_some_planned() -> bool:
        states = [r["state"] for r in db_rows(run_dir)]
        return "planned" in states and any(s in ("queued", "running", "succeeded") for s in states)

    _kill_when(child, some_started_some_planned)
    ids_before = {r["prompt_index"]: r["job_id"] for r in db_rows(run_dir) if r["job_id"]}
    result = await resume(run_dir, policy=FAST)
    assert [r.state for r in result.rows] == ["succeeded"] * len(prompts)
    for row in result.rows:
        assert (run_dir / (row.output_path or "missing")).is_file()
        if row.prompt_index in ids_before:  # re-attached, not resubmitted
            assert row.job_id == ids_before[row.prompt_index]


async def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    first = await compare("a kite", [LOCAL], SMALL, run_dir=tmp_path, policy=FAST)
    again = await resume(tmp_path)
    assert again.rows == first.rows == load_run(tmp_path).rows
