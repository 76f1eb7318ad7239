"""LocalProvider: an in-process render pushes its own end, so nobody polls it on a schedule."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from abebeats_lab import JobState, Route, VideoRequest
from abebeats_lab.providers.local import LocalProvider
from abebeats_lab.waiting import wait

LOCAL = Route.parse("local:procedural")
SMALL = VideoRequest(
    "a kite over dunes", duration_s=1, aspect_ratio="16:9", resolution="240p", seed=3
)


def test_a_cli_comparison_of_local_learns_each_end_at_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "abebeats_lab.cli", "compare", "a kite", "a boat"]
    # Renders of about a second: a polled wait would spend several requests on each.
    options = ["--route", "local:procedural", "--duration", "4", "--resolution", "480p"]
    done = subprocess.run(
        [*command, *options, "--json", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 2
    for row in rows:
        assert row["state"] == "succeeded", row["error"]
        assert row["polls"] == 1  # the pushed stream; not one poll
        assert row["detect_lag_s_source"] == "provider"


async def test_the_stream_pushes_queued_running_and_the_end_in_order() -> None:
    provider = LocalProvider(max_parallel=1)  # the second job queues behind the first
    first = await provider.submit(SMALL, LOCAL)
    second = await provider.submit(SMALL.replace(prompt="a boat"), LOCAL)
    results = await asyncio.gather(*(wait(provider, job) for job in (first, second)))
    for result in results:
        assert result.status.state is JobState.SUCCEEDED
        assert result.pushed and result.polls == 1  # one stream, no poll
    states = [status.state for _, status in results[1].transitions]
    assert states == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    assert results[1].status.outputs[0].data
    await provider.aclose()


async def test_a_job_unknown_to_this_process_is_rendered_again_through_the_stream() -> None:
    """Resume after a crash: a new process's provider never saw the job, and renders it anew."""
    original = LocalProvider()
    job = await original.submit(SMALL, LOCAL)
    before = await wait(original, job)
    fresh = LocalProvider()
    after = await wait(fresh, job)
    assert after.status.state is JobState.SUCCEEDED and after.pushed
    assert after.status.outputs[0].data == before.status.outputs[0].data
    await original.aclose()
    await fresh.aclose()


async def test_cancelling_a_streamed_wait_cancels_the_render() -> None:
    provider = LocalProvider()
    job = await provider.submit(
        VideoRequest("a long one", duration_s=10, aspect_ratio="16:9", resolution="1080p"),
        LOCAL,
    )
    stream = provider.stream(job)
    first = await anext(stream)
    assert first.state in (JobState.QUEUED, JobState.RUNNING)
    await provider.cancel(job)
    ends = [status.state async for status in stream]
    assert ends[-1] is JobState.CANCELED
    await provider.aclose()
