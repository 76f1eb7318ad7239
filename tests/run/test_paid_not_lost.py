"""A paid video is never lost to a deadline or a passing fault (review 4, findings 2 and 3).

A job past the wait deadline that the provider did not cancel (it cannot, or the cancel
failed) keeps its id and stays in flight, so `resume` re-attaches and collects it. A job that
succeeded but whose video could not be fetched for a passing reason (its output host refused
the connection, its result listing stayed throttled) stays ``downloading`` for `resume`.
Everything runs against the emulators on loopback, through the public API or the CLI.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _runner_support import FAST, PIKA, REMOTE, RUNWAY, VEO, run_cli
from starlette.responses import JSONResponse

from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, EmulatorState, Scenario, create_app
from abebeats_lab.emulator.server import LOOPBACK, serve
from abebeats_lab.http import DEFAULT_RETRY
from abebeats_lab.media.download import DownloadUnreachable, download
from abebeats_lab.run.api import compare, load_run, resume, was_interrupted
from abebeats_lab.run.job import DOWNLOAD_LATER, LEFT_RUNNING
from abebeats_lab.store import JobRow
from abebeats_lab.waiting import WaitPolicy

JOB_S = 3.0
"""How long the emulated jobs past the deadline run: well past `DEADLINE`."""
LONG_JOB_S = 60.0
"""A job that is still running whenever the test interrupts or resumes it."""
DEADLINE = WaitPolicy(deadline_s=0.5, min_interval_s=0.05, max_interval_s=0.2)
IN_FLIGHT = ("queued", "running")
REFUSED_CANCEL = "cancel refused by this test's server"
RUN = "run"
EXIT_UNFINISHED = 1


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    """Runway, Veo and Pika emulators on loopback, found through the real env vars."""
    with Emulators(["runway", "veo", "pika"], Scenario.fast()) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        yield emus


def _kept_in_flight(row: JobRow, reason: str) -> None:
    """The row a deadline left running: its id, a non-final state, one line saying why."""
    assert row.state in IN_FLIGHT, (row.state, row.error)
    assert row.job_id, row
    error = row.error or ""
    assert "JobTimeout" in error and reason in error and LEFT_RUNNING in error, error
    assert "\n" not in error


async def test_a_job_veo_cannot_cancel_is_kept_past_the_deadline_and_resume_collects_it(
    emulated: Emulators, tmp_path: Path
) -> None:
    veo = emulated.states["veo"]
    veo.set_scenario(Scenario.fast().with_times(0.05, JOB_S))
    run = compare("a kite", [VEO], REMOTE, run_dir=tmp_path, policy=DEADLINE, adapt=True)
    [row] = (await run).rows
    _kept_in_flight(row, "the provider cannot cancel it, so it may still finish")

    [done] = (await resume(tmp_path, policy=FAST)).rows
    assert done.state == "succeeded", done.error
    assert (done.job_id, veo.count("create")) == (row.job_id, 1)  # its own job, paid once
    assert (tmp_path / (done.output_path or "missing")).is_file()


def _refusing_cancels(app: Any, refused: list[str], refusing: list[bool] | None = None) -> Any:
    """ASGI: the emulator, except that every cancel (Runway's DELETE) is refused (while
    ``refusing[0]`` holds, when given)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        on = refusing is None or refusing[0]
        if on and scope["type"] == "http" and scope["method"] == "DELETE":
            refused.append(scope["path"])
            answer = JSONResponse({"error": REFUSED_CANCEL}, status_code=400)
            await answer(scope, receive, send)
            return
        await app(scope, receive, send)

    return wrapped


async def test_a_job_whose_cancel_fails_is_kept_past_the_deadline_and_resume_collects_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = EmulatorState("runway", Scenario.fast().with_times(0.05, JOB_S))
    refused: list[str] = []
    with serve(_refusing_cancels(create_app("runway", state), refused)) as server:
        state.base_url = server.url
        monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
        monkeypatch.setenv("RUNWAYML_API_SECRET", EMULATOR_KEYS["runway"])
        [row] = (await compare("a kite", [RUNWAY], REMOTE, run_dir=tmp_path, policy=DEADLINE)).rows
        _kept_in_flight(row, "the cancel request failed (ProviderHTTPError: runway: HTTP 400")
        assert REFUSED_CANCEL in (row.error or "") and refused  # it was asked, and said no

        [done] = (await resume(tmp_path, policy=FAST)).rows
    assert done.state == "succeeded", done.error
    assert (done.job_id, state.count("create")) == (row.job_id, 1)
    assert (tmp_path / (done.output_path or "missing")).is_file()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        yield int(sock.getsockname()[1])


def _only_row(run_dir: Path) -> JobRow:
    [row] = load_run(run_dir).rows
    return row


def test_an_output_host_that_refuses_the_connection_leaves_the_row_for_resume(
    emulated: Emulators, refusing_port: int, tmp_path: Path
) -> None:
    runway = emulated.states["runway"]
    serving = runway.base_url
    runway.base_url = f"http://{LOOPBACK}:{refusing_port}"  # the output URLs it hands out now
    done = run_cli("compare", "a kite", "--route", RUNWAY, "--run-dir", RUN, cwd=tmp_path)
    assert done.returncode == EXIT_UNFINISHED, done.stderr
    assert f"abebeats-lab resume {RUN}" in done.stdout + done.stderr
    row = _only_row(tmp_path / RUN)
    assert row.state == "downloading" and row.job_id, (row.state, row.error)
    assert "DownloadUnreachable" in (row.error or "") and DOWNLOAD_LATER in (row.error or "")

    runway.base_url = serving
    done = run_cli("resume", RUN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    after = _only_row(tmp_path / RUN)
    assert after.state == "succeeded" and after.job_id == row.job_id, after.error
    assert runway.count("create") == 1
    assert (tmp_path / RUN / (after.output_path or "missing")).is_file()


def test_a_result_fetch_throttled_past_the_retry_policy_leaves_the_row_for_resume(
    emulated: Emulators, tmp_path: Path
) -> None:
    """fal's result GET answers 429 (with Retry-After) once more than the one retry policy
    asks: kept ``downloading``, retried by that policy alone, then fetched by `resume`."""
    pika = emulated.states["pika"]
    throttled = DEFAULT_RETRY.max_attempts + 1
    pika.set_scenario(Scenario.fast(result_429=throttled, retry_after_s=0.05))
    done = run_cli("compare", "a kite", "--route", PIKA, "--run-dir", RUN, cwd=tmp_path)
    assert done.returncode == EXIT_UNFINISHED, done.stderr
    row = _only_row(tmp_path / RUN)
    assert row.state == "downloading" and row.job_id, (row.state, row.error)
    assert "HTTP 429" in (row.error or "") and DOWNLOAD_LATER in (row.error or "")
    assert pika.count("result") == DEFAULT_RETRY.max_attempts  # no retries stacked on it

    done = run_cli("resume", RUN, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    after = _only_row(tmp_path / RUN)
    assert after.state == "succeeded" and after.job_id == row.job_id, after.error
    assert pika.count("create") == 1
    assert (tmp_path / RUN / (after.output_path or "missing")).is_file()


async def test_a_host_that_hangs_up_before_answering_is_asked_again_under_the_retry_policy(
    tmp_path: Path,
) -> None:
    """Each connection is accepted and closed with no answer: asked again under the one retry
    policy (as a busy host is), then `DownloadUnreachable`, which `resume` may fetch later."""
    accepted: list[int] = []

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(hang_up, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(DownloadUnreachable, match="download failed"):
            await download(f"http://{LOOPBACK}:{port}/video.mp4", tmp_path / "out.mp4")
    assert len(accepted) == DEFAULT_RETRY.max_attempts
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


async def test_a_rechecked_job_that_resumes_own_deadline_cancels_is_not_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``resume --rerun-cancelled`` re-attaches a job whose interrupt-time cancel was refused.
    If that resume's own deadline then cancels it, the user's deadline ended it: the row stays
    cancelled and no second job is paid for (only a cancel the provider reports is re-sent)."""
    state = EmulatorState("runway", Scenario.fast().with_times(0.05, LONG_JOB_S))
    refused: list[str] = []
    refusing = [True]
    with serve(_refusing_cancels(create_app("runway", state), refused, refusing)) as server:
        state.base_url = server.url
        monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
        monkeypatch.setenv("RUNWAYML_API_SECRET", EMULATOR_KEYS["runway"])
        task = asyncio.ensure_future(compare("a kite", [RUNWAY], REMOTE, run_dir=tmp_path))
        while not any(r.state == "running" for r in _rows_if_any(tmp_path)):
            assert not task.done(), task
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [interrupted] = load_run(tmp_path).rows
        assert was_interrupted(interrupted) and interrupted.job_id, interrupted.error
        assert refused  # the interrupt's cancel was asked for, and refused

        refusing[0] = False
        [row] = (await resume(tmp_path, rerun_cancelled=True, policy=DEADLINE)).rows
    assert row.state == "canceled" and "JobTimeout" in (row.error or ""), row.error
    assert (row.job_id, state.count("create")) == (interrupted.job_id, 1)  # paid once


def _rows_if_any(run_dir: Path) -> list[JobRow]:
    return load_run(run_dir).rows if (run_dir / "run.sqlite").exists() else []
