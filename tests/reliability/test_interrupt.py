"""A Jupyter kernel interrupt during a comparison: remote jobs are cancelled where the provider
can cancel, rows say what happened, nothing is created twice, and the kernel lives on.

A real kernel (jupyter_client, the venv's ``python3`` kernelspec) runs ``await
runner.compare(...)`` against the emulators served by this process; the test interrupts it
the way the notebook's stop button does (SIGINT to the kernel).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from _reliability import ROUTES, canary_env, leaks, reset
from _runner_support import db_rows
from jupyter_client.manager import KernelManager

from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.run.submit import CANCEL_ASKED, CANCELLED, NOT_CANCELLABLE
from abebeats_lab.store import RunStore

PROVIDERS = ("pika", "replicate", "runway", "veo")
LONG_JOB = Scenario.fast().with_times(0.05, 120.0)
START_TIMEOUT_S = 90.0
POLL_S = 0.05
ANSWERED = ("pika", "runway", "veo")
"""The providers whose create answers at once (Replicate's is held: ``Prefer: wait``)."""
CELL = """
from abebeats_lab import Settings
from abebeats_lab.run import api as runner
from abebeats_lab.waiting import WaitPolicy

await runner.compare(
    ["a paper boat on a neon river"], {routes!r}, Settings(duration_s=5),
    run_dir={run_dir!r}, adapt=True, policy=WaitPolicy(deadline_s=600),
)
"""


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    with Emulators(PROVIDERS, LONG_JOB) as emus:
        yield emus


@pytest.fixture
def kernel(emulators: Emulators) -> Iterator[tuple[KernelManager, Any]]:
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, **canary_env(emulators)})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=START_TIMEOUT_S)
        yield manager, client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _ids_stored(run_dir: Path, providers: Sequence[str]) -> bool:
    """True once the rows of ``providers`` have their job ids in the run's database."""
    stored = {r["provider"] for r in db_rows(run_dir) if r["job_id"]}
    return stored >= set(providers)


def _reply(client: Any, msg_id: str) -> dict[str, Any]:
    while True:
        message = client.get_shell_msg(timeout=START_TIMEOUT_S)
        if message["parent_header"].get("msg_id") == msg_id:
            content: dict[str, Any] = message["content"]
            return content


def _outputs(client: Any, msg_id: str) -> str:
    """Everything the kernel published for one cell (streams, errors, results), up to the
    kernel going idle after it: the text the leak scan reads."""
    texts = []
    while True:
        message = client.get_iopub_msg(timeout=START_TIMEOUT_S)
        content = message["content"]
        texts.extend(str(content.get(key, "")) for key in ("text", "traceback", "data"))
        mine = message["parent_header"].get("msg_id") == msg_id
        if mine and message["msg_type"] == "status" and content["execution_state"] == "idle":
            return "\n".join(texts)


def test_kernel_interrupt_cancels_remote_jobs(
    emulators: Emulators, kernel: tuple[KernelManager, Any], tmp_path: Path
) -> None:
    manager, client = kernel
    states = {p: reset(emulators, p, LONG_JOB) for p in PROVIDERS}
    run_dir = tmp_path / "run"
    routes = [ROUTES[p] for p in PROVIDERS]
    msg_id = client.execute(CELL.format(routes=routes, run_dir=str(run_dir)))

    give_up = time.monotonic() + START_TIMEOUT_S
    while not _ids_stored(run_dir, ANSWERED) or states["replicate"].count("create") < 1:
        assert time.monotonic() < give_up, "the creates were never all sent and answered"
        time.sleep(POLL_S)
    manager.interrupt_kernel()  # Replicate's create is still held at this point

    reply = _reply(client, msg_id)
    assert reply["status"] == "error"
    assert reply["ename"] in ("CancelledError", "KeyboardInterrupt")
    published = _outputs(client, msg_id)
    assert reply["ename"] in published  # the traceback was read, and holds no key
    assert leaks(published) == []

    for provider, state in states.items():
        [job] = state.jobs.values()
        assert state.count("create") == 1
        assert job.phase() == ("running" if provider == "veo" else "canceled"), provider
    with RunStore(run_dir) as store:
        rows = {row.provider: row for row in store.rows()}
    assert {p: rows[p].state for p in PROVIDERS} == dict.fromkeys(PROVIDERS, "canceled")
    assert rows["veo"].error == NOT_CANCELLABLE
    # Waited on, or (the interrupt landing just as the id was stored) still in the submit
    # step: either way the job was cancelled at the provider, as the phases above show.
    assert rows["runway"].error in (CANCEL_ASKED, CANCELLED), rows
    # fal only passes a running request's cancel on (CANCELLATION_REQUESTED): never confirmed.
    assert rows["pika"].error == CANCEL_ASKED, rows
    assert rows["replicate"].error == CANCELLED
    # The held Replicate create was looked up through the predictions list, not lost.
    assert rows["replicate"].job_id in states["replicate"].jobs

    assert _reply(client, client.execute("1 + 1"))["status"] == "ok"  # the kernel lives on
