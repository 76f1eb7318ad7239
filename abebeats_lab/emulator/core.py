"""What every emulated provider shares: the job clock, the request log, faults and files.

Jobs advance by wall clock (``time.time()``), so the truth they record (created, started,
finished) can be compared with what a client in another process measured. Each provider
module builds its routes on top of `EmulatorState` and renders its own JSON shapes.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from abebeats_lab.emulator.scenario import Scenario
from abebeats_lab.media.render import frame_size, render_video

__all__ = ["EmulatedJob", "EmulatorState", "RequestRecord", "drop_connection", "hang"]

Handler = Callable[[Request], Awaitable[Response]]
# Two workers: this machine kind has two cores, and renders are CPU-bound.
_RENDER_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="emulator-render")


@dataclass
class EmulatedJob:
    """One job as the emulator knows it. Times are wall-clock seconds (``time.time()``)."""

    id: str
    model: str
    payload: dict[str, Any]
    created: float
    queue_s: float
    run_s: float
    fail: bool = False
    canceled_at: float | None = None
    deleted: bool = False
    hold_until: float | None = None
    """Set while over the concurrency limit; the job starts when a slot frees."""
    render: Future[Any] | None = None
    """The output being rendered in a worker thread, if the provider started one."""
    ready_at: float | None = None
    """When that render finished."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def started(self) -> float:
        """When the job starts (or started) running."""
        return self.created + self.queue_s

    @property
    def scripted_finish(self) -> float:
        """When the scenario says the job is done."""
        return self.started + self.run_s

    @property
    def finished(self) -> float:
        """When the job is (or was) really done: scripted time, but never before its video exists.

        Infinite while the render is still going, so the job keeps reading as running and
        the finish time the emulator reports (and records as truth) is never earlier than
        the moment a client could actually see the result.
        """
        if self.render is None:
            return self.scripted_finish
        if self.ready_at is None:
            return math.inf
        return max(self.scripted_finish, self.ready_at)

    def phase(self, now: float | None = None) -> str:
        """``queued``, ``running``, ``succeeded``, ``failed`` or ``canceled`` at ``now``."""
        now = time.time() if now is None else now
        if (
            self.canceled_at is not None
            and self.canceled_at <= now
            and not self._done_before_cancel()
        ):
            return "canceled"
        if now < self.started:
            return "queued"
        if now < self.finished:
            return "running"
        return "failed" if self.fail else "succeeded"

    def _done_before_cancel(self) -> bool:
        return self.canceled_at is not None and self.finished <= self.canceled_at

    def progress(self, now: float | None = None) -> float:
        """Linear 0..1 across the run."""
        now = time.time() if now is None else now
        if now <= self.started:
            return 0.0
        return min(1.0, (now - self.started) / self.run_s) if self.run_s > 0 else 1.0


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the emulator received (auth header values are never kept)."""

    at: float
    method: str
    path: str
    kind: str
    """``create``, ``status``, ``cancel``, ``result``, ``download``, ``stream`` or ``other``."""
    job_id: str | None = None


class EmulatorState:
    """Jobs, request log, fault counters and served files of one emulated provider."""

    def __init__(self, provider: str, scenario: Scenario | None = None) -> None:
        self.provider = provider
        self.scenario = scenario or Scenario()
        self.jobs: dict[str, EmulatedJob] = {}
        self.requests: list[RequestRecord] = []
        self.base_url = ""
        """Set by the server once it knows its port; output URLs point back here."""
        self._rng = random.Random(self.scenario.seed)
        self._counters: dict[str, int] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._fetches: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- bookkeeping ------------------------------------------------------------------

    def record(self, request: Request, kind: str, job_id: str | None = None) -> None:
        """Log one request (for request counts and detection-lag truth)."""
        with self._lock:
            self.requests.append(
                RequestRecord(time.time(), request.method, request.url.path, kind, job_id)
            )

    def count(self, kind: str, job_id: str | None = None) -> int:
        """How many requests of ``kind`` (optionally for one job) were received."""
        return sum(
            1 for r in self.requests if r.kind == kind and (job_id is None or r.job_id == job_id)
        )

    def take_fault(self, name: str, budget: int) -> bool:
        """True for the first ``budget`` calls with this fault name, then False."""
        with self._lock:
            used = self._counters.get(name, 0)
            if used >= budget:
                return False
            self._counters[name] = used + 1
            return True

    def set_scenario(self, scenario: Scenario) -> None:
        """Switch scenario and reset the fault counters (tests do this between cases)."""
        self.scenario = scenario
        self._rng = random.Random(scenario.seed)
        self._counters.clear()

    # -- jobs -------------------------------------------------------------------------

    def new_job(
        self, model: str, payload: dict[str, Any], job_id: str | None = None
    ) -> EmulatedJob:
        """Create a job whose queue and run times come from the scenario."""
        now = time.time()
        sc = self.scenario
        job = EmulatedJob(
            id=job_id or str(uuid.uuid4()),
            model=model,
            payload=payload,
            created=now,
            queue_s=sc.queue_s.draw(self._rng),
            run_s=sc.run_s.draw(self._rng),
            fail=sc.fail,
        )
        if sc.concurrency is not None:
            self._apply_concurrency(job)
        if sc.cancel_elsewhere_after_s is not None:
            job.canceled_at = now + sc.cancel_elsewhere_after_s
        with self._lock:
            self.jobs[job.id] = job
        return job

    def _apply_concurrency(self, job: EmulatedJob) -> None:
        # Queue behind the jobs already holding the limited slots: start when one frees.
        limit = self.scenario.concurrency or 1
        ends = sorted(
            j.scripted_finish
            for j in self.jobs.values()
            if j.phase(job.created) in ("queued", "running")
        )
        if len(ends) >= limit:
            slot_free = ends[len(ends) - limit]
            job.hold_until = slot_free
            job.queue_s = max(job.queue_s, slot_free - job.created)

    def start_render(self, job: EmulatedJob, render: Callable[[], Any]) -> Future[Any]:
        """Run ``render`` (which produces the job's output) in a worker thread, from creation on.

        Rendering inside a request handler would stall every other request; until it is
        done the job reads as running (see `EmulatedJob.finished`).
        """
        future = _RENDER_POOL.submit(render)
        job.render = future

        def mark(_: Future[Any]) -> None:
            job.ready_at = time.time()

        future.add_done_callback(mark)
        return future

    def get(self, job_id: str) -> EmulatedJob | None:
        """A live (not deleted) job, or None."""
        job = self.jobs.get(job_id)
        return None if job is None or job.deleted else job

    def truth(self) -> list[dict[str, Any]]:
        """Per job: created, started, finished, canceled (wall clock) for tests and benchmarks."""
        return [
            {
                "id": j.id,
                "created": j.created,
                "started": j.started,
                "finished": j.finished if math.isfinite(j.finished) else None,
                "canceled_at": j.canceled_at,
                "phase": j.phase(),
                "status_requests": self.count("status", j.id),
            }
            for j in self.jobs.values()
        ]

    # -- files ------------------------------------------------------------------------

    def output_for(
        self,
        job: EmulatedJob,
        *,
        prompt: str,
        seed: int | None,
        duration_s: float,
        aspect_ratio: str,
        resolution: str,
        audio: bool = False,
    ) -> str:
        """Render (once) the job's MP4 and return its URL on this server."""
        if self.scenario.bad_output:
            data = b"<html>this is not a video</html>"
        else:
            if not self.scenario.unique_outputs:
                prompt, seed = "emulated output", 0  # one cached render per shape: load tests
            width, height = frame_size(aspect_ratio, resolution)
            data = _render_cached(
                self.provider, prompt, seed or 0, float(duration_s), width, height, audio
            )
        token = job.extra.get("file_token")
        if token is None:
            token = secrets.token_urlsafe(12)
            job.extra["file_token"] = token
            self._files[token] = (data, "video/mp4")
        return f"{self.base_url}/_files/{token}/output.mp4"

    def output_data(self, job: EmulatedJob) -> bytes | None:
        """The bytes behind the job's rendered output, for APIs that return video inline (Veo)."""
        entry = self._files.get(job.extra.get("file_token", ""))
        return entry[0] if entry else None

    def refresh_output(self, job: EmulatedJob) -> None:
        """Issue a new file token (a fresh signed URL), keeping the same bytes."""
        old = job.extra.pop("file_token", None)
        if old and old in self._files:
            token = secrets.token_urlsafe(12)
            self._files[token] = self._files[old]
            job.extra["file_token"] = token
            self._fetches.pop(token, None)

    async def serve_file(self, request: Request) -> Response:
        """GET /_files/{token}/output.mp4 with expiry and truncation faults."""
        token = request.path_params["token"]
        self.record(request, "download")
        entry = self._files.get(token)
        limit = self.scenario.expire_outputs_after
        fetched = self._fetches.get(token, 0)
        if entry is None or (limit is not None and fetched >= limit):
            return Response("expired or unknown file", status_code=404, media_type="text/plain")
        self._fetches[token] = fetched + 1
        data, media_type = entry
        if self.take_fault("truncate_download", self.scenario.truncate_downloads):
            return _Truncated(data, media_type)
        return Response(data, media_type=media_type)

    def file_route(self) -> Route:
        """The Starlette route that serves rendered outputs."""
        return Route("/_files/{token}/output.mp4", self.serve_file, methods=["GET"])


@functools.lru_cache(maxsize=64)
def _render_cached(
    style: str, prompt: str, seed: int, duration_s: float, width: int, height: int, audio: bool
) -> bytes:
    return render_video(
        prompt=prompt,
        seed=seed,
        duration_s=duration_s,
        width=width,
        height=height,
        audio=audio,
        style=style,
    )


class _Truncated(Response):
    """Declares the full length, sends half, then closes: a dropped download."""

    def __init__(self, data: bytes, media_type: str) -> None:
        super().__init__(data[: len(data) // 2], media_type=media_type)
        self.headers["content-length"] = str(len(data))


async def drop_connection() -> Response:
    """A response that promises a body it never finishes: the client sees the connection drop."""
    response = Response(b'{"id": "', media_type="application/json")
    response.headers["content-length"] = "4096"
    return response


async def hang(seconds: float = 3600.0) -> Response:
    """Never answer (until ``seconds``); the client's timeout must fire."""
    await asyncio.sleep(seconds)
    return Response(status_code=504)
