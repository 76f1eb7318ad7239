"""Runway's developer API on loopback: text/image-to-video creates, task polling, delete.

Wire format as runwayml 5.24.0 reads it (provider-apis.md §1, §5.1): camelCase JSON, a task
union discriminated on ``status`` carrying ``createdAt``, ``estimatedCost`` while in flight and
``cost`` once terminal. What each model accepts is `runway_models.MODELS`, a table, not code
branches; this module is the task protocol.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from abebeats_lab.emulator.core import EmulatedJob, EmulatorState, drop_connection, hang
from abebeats_lab.emulator.runway_models import (
    DEFAULT_SHAPE,
    RATIO_SHAPES,
    BadInput,
    ModelSpec,
    validated,
)

__all__ = ["API_VERSION", "create_app"]

API_VERSION = "2024-11-06"
_KEY = re.compile(r"^Bearer key_[0-9a-f]{128}$")
_DEFAULT_FAILURE_CODE = "INTERNAL"
_UNKNOWN_STATUS = "ARCHIVED"  # a word the task union does not have


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _auth_problem(request: Request) -> Response | None:
    if not _KEY.match(request.headers.get("authorization", "")):
        return _error(401, "Invalid API key: send Authorization: Bearer key_...")
    version = request.headers.get("x-runway-version")
    if version != API_VERSION:
        return _error(400, f"X-Runway-Version: expected {API_VERSION!r}, got {version!r}")
    return None


def _credits(job: EmulatedJob) -> int:
    spec: ModelSpec = job.extra["spec"]
    rate = (
        spec.audio_credits_per_s
        if job.payload.get("audio") and spec.audio_credits_per_s
        else spec.credits_per_s
    )
    return rate * int(job.extra["duration"])


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class _Runway:
    """Route handlers over one `EmulatorState`."""

    def __init__(self, state: EmulatorState, *, canceled_tasks_404: bool) -> None:
        self.state = state
        self.canceled_tasks_404 = canceled_tasks_404

    def _too_many(self) -> JSONResponse:
        retry = f"{self.state.scenario.retry_after_s:g}"
        return _error(
            429, "Too many requests: daily generation limit reached", **{"Retry-After": retry}
        )

    async def create(self, request: Request) -> Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        self.state.record(request, "create")
        if (problem := _auth_problem(request)) is not None:
            return problem
        if self.state.take_fault("create_429", self.state.scenario.create_429):
            return self._too_many()
        try:
            body = await request.json()
            spec, duration = validated(endpoint, body)
        except ValueError:
            return _error(400, "body: not valid JSON")
        except BadInput as exc:
            return _error(400, str(exc))
        job = self.state.new_job(body["model"], body)
        job.extra.update(spec=spec, duration=duration)
        self.state.start_render(job, lambda: self._output_url(job))
        return await self._answer_create(job)

    async def _answer_create(self, job: EmulatedJob) -> Response:
        scenario = self.state.scenario
        if self.state.take_fault("drop_create", scenario.drop_create):
            return await drop_connection()
        if self.state.take_fault("hang_create", scenario.hang_create):
            return await hang()
        return JSONResponse({"id": job.id, "estimatedCost": {"credits": _credits(job)}})

    def _status_fault(self) -> Response | None:
        scenario = self.state.scenario
        if self.state.take_fault("status_429", scenario.status_429):
            return self._too_many()
        if self.state.take_fault("status_5xx", scenario.status_5xx):
            # Retry-After on shedding is UNCONFIRMED for Runway; it keeps SDK retries quick.
            retry = f"{scenario.retry_after_s:g}"
            return _error(503, "Service unavailable: load shedding", **{"Retry-After": retry})
        if self.state.take_fault("malformed_status", scenario.malformed_status):
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        return None

    async def retrieve(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        self.state.record(request, "status", task_id)
        if (problem := _auth_problem(request) or self._status_fault()) is not None:
            return problem
        job = self.state.get(task_id)
        if job is None:
            return _error(404, f"Task {task_id} not found")
        return JSONResponse(self._task(job))

    def _task(self, job: EmulatedJob) -> dict[str, Any]:
        now = time.time()
        base: dict[str, Any] = {"id": job.id, "createdAt": _iso(job.created)}
        phase = job.phase(now)
        if self.state.scenario.unknown_status:
            return {**base, "status": _UNKNOWN_STATUS}
        if phase == "queued":
            throttled = job.hold_until is not None and now < job.hold_until
            return {
                **base,
                "status": "THROTTLED" if throttled else "PENDING",
                "estimatedCost": self._estimate(job),
            }
        if phase == "running":
            progress = round(job.progress(now), 4) if self.state.scenario.progress else 0.0
            return {
                **base,
                "status": "RUNNING",
                "progress": progress,
                "estimatedCost": self._estimate(job),
            }
        return {**base, **self._terminal(job, phase)}

    @staticmethod
    def _estimate(job: EmulatedJob) -> dict[str, float]:
        return {"credits": float(_credits(job))}

    def _terminal(self, job: EmulatedJob, phase: str) -> dict[str, Any]:
        scenario = self.state.scenario
        if phase == "canceled":
            return {"status": "CANCELLED", "cost": {"credits": 0}}
        if phase == "failed":
            code = scenario.failure_code or _DEFAULT_FAILURE_CODE
            return {
                "status": "FAILED",
                "failure": scenario.failure_message,
                "failureCode": code,
                "cost": {"credits": 0},
            }
        return {
            "status": "SUCCEEDED",
            "output": [self._output_url(job)],
            "cost": {"credits": _credits(job)},
        }

    def _output_url(self, job: EmulatedJob) -> str:
        # Every GET signs a fresh URL, as Runway does ("fetch the task again to get fresh URLs").
        self.state.refresh_output(job)
        aspect, resolution = RATIO_SHAPES.get(job.payload.get("ratio", ""), DEFAULT_SHAPE)
        return self.state.output_for(
            job,
            prompt=str(job.payload.get("promptText", "")),
            seed=job.payload.get("seed"),
            duration_s=float(job.extra["duration"]),
            aspect_ratio=aspect,
            resolution=resolution,
            audio=bool(job.payload.get("audio", False)),
        )

    async def delete(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        self.state.record(request, "cancel", task_id)
        if (problem := _auth_problem(request)) is not None:
            return problem
        job = self.state.get(task_id)
        if job is None:
            return _error(404, f"Task {task_id} not found")
        if job.phase() in ("queued", "running"):
            job.canceled_at = time.time()
            job.deleted = self.canceled_tasks_404
        else:
            job.deleted = True
        return Response(status_code=204)


def create_app(state: EmulatorState, *, canceled_tasks_404: bool = False) -> Starlette:
    """The Runway emulator. ``canceled_tasks_404`` makes tasks vanish on cancel too.

    Whether Runway still shows a cancelled task (as ``CANCELLED``) or answers 404 is
    UNCONFIRMED; the default keeps it visible, the switch lets clients be tested on both.
    """
    api = _Runway(state, canceled_tasks_404=canceled_tasks_404)
    routes = [
        Route("/v1/text_to_video", api.create, methods=["POST"]),
        Route("/v1/image_to_video", api.create, methods=["POST"]),
        Route("/v1/tasks/{task_id}", api.retrieve, methods=["GET"]),
        Route("/v1/tasks/{task_id}", api.delete, methods=["DELETE"]),
        state.file_route(),
    ]
    return Starlette(routes=routes)
