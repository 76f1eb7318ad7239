"""The ``local:procedural`` route: renders on this machine, no key, no network, no cost.

It walks the same lifecycle as a remote job (queued, running, succeeded), so callers treat
it exactly like any other route. An in-process job knows the instant it ends, so it pushes its
states through `stream` (the hook fal's SSE uses) and `waiting.wait` learns of the end at once
instead of polling on a schedule. Rendering is deterministic, so a job id lost with a crashed
process can be re-rendered on `status` and give the very same video.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import ClassVar

from abebeats_lab._types import Job, JobState, JobStatus, OutputRef, Route, VideoRequest
from abebeats_lab.media.render import frame_size, render_video
from abebeats_lab.providers.base import Provider, utcnow

__all__ = ["LocalProvider"]


class _Render:
    """One render in flight or done; times are provider-side facts for the timing record."""

    def __init__(self) -> None:
        self.task: asyncio.Task[bytes] | None = None
        self.state = JobState.QUEUED
        self.started_at: datetime | None = None
        self.completed_at: datetime | None = None
        self.stop = threading.Event()
        self.started = asyncio.Event()
        """Set when the render leaves the queue (takes a slot)."""


class LocalProvider(Provider):
    """Renders procedural MP4s in a worker thread."""

    name: ClassVar[str] = "local"

    def __init__(self, *, max_parallel: int = 2) -> None:
        self._renders: dict[str, _Render] = {}
        self._slots = asyncio.Semaphore(max_parallel)

    async def submit(self, request: VideoRequest, route: Route) -> Job:
        job = Job(
            route=route, id=f"local-{uuid.uuid4().hex[:16]}", request=request, submitted_at=utcnow()
        )
        self._start(job)
        return job

    def _start(self, job: Job) -> _Render:
        record = _Render()
        self._renders[job.id] = record
        record.task = asyncio.get_running_loop().create_task(self._render(job, record))
        return record

    async def _render(self, job: Job, record: _Render) -> bytes:
        request = job.request
        shape = request.shape()
        width, height = frame_size(shape.aspect_ratio, shape.resolution)
        async with self._slots:
            record.state, record.started_at = JobState.RUNNING, utcnow()
            record.started.set()
            data = await asyncio.to_thread(
                render_video,
                prompt=request.prompt,
                seed=request.seed if request.seed is not None else _seed_from(request.prompt),
                duration_s=shape.duration_s,
                width=width,
                height=height,
                audio=request.generate_audio,
                style=job.route.model,
                stop=record.stop,
            )
        record.state, record.completed_at = JobState.SUCCEEDED, utcnow()
        return data

    async def status(self, job: Job) -> JobStatus:
        # Yield once so a caller polling in a tight loop lets the render progress.
        await asyncio.sleep(0)
        return self._status_of(self._renders.get(job.id) or self._start(job))

    def stream(self, job: Job) -> AsyncIterator[JobStatus]:
        """Each state the moment it is reached: queued, running, then the end."""
        return self._stream(self._renders.get(job.id) or self._start(job))

    async def _stream(self, record: _Render) -> AsyncIterator[JobStatus]:
        task = record.task
        assert task is not None
        yield self._status_of(record)
        if not record.started.is_set() and not task.done():
            started = asyncio.ensure_future(record.started.wait())
            try:
                await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                started.cancel()
            if not task.done():
                yield self._status_of(record)
        # asyncio.wait, not await: the render's own outcome (even cancelled) is a status here.
        await asyncio.wait({task})
        yield self._status_of(record)

    def _status_of(self, record: _Render) -> JobStatus:
        task = record.task
        if task is not None and task.done():
            if task.cancelled():
                return JobStatus(JobState.CANCELED, "canceled", completed_at=record.completed_at)
            if (exc := task.exception()) is not None:
                return JobStatus(JobState.FAILED, "failed", error=str(exc))
            return JobStatus(
                JobState.SUCCEEDED,
                "succeeded",
                progress=1.0,
                started_at=record.started_at,
                completed_at=record.completed_at,
                outputs=(OutputRef(data=task.result(), content_type="video/mp4"),),
            )
        return JobStatus(record.state, record.state.value, started_at=record.started_at)

    async def cancel(self, job: Job) -> bool:
        """Stop the render if it still runs (confirmed: it runs in this process)."""
        record = self._renders.get(job.id)
        if record is None or record.task is None or record.task.done():
            return False
        record.stop.set()
        record.task.cancel()
        record.completed_at = utcnow()
        return True

    async def aclose(self) -> None:
        for record in self._renders.values():
            if record.task is not None and not record.task.done():
                record.stop.set()
                record.task.cancel()


def _seed_from(prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
