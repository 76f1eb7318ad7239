"""fal.ai's queue API on loopback, for any app id: submit, status, SSE stream, result, cancel.

Wire format as fal_client 1.0.3 reads it (provider-apis.md §4, §5.4). Submits go to the full
app id (``/fal-ai/pika/v2.2/text-to-video``); status, result and cancel live under the app
root, its first two path segments (``/fal-ai/pika/requests/{id}``), and the submit answer
carries those URLs. Apps in `fal_apps.MODELS` are checked against their declared schema (a
wrong name, value or type is 422, as fal answers); any other app id is served with every input
accepted. This module is the queue protocol; what each app accepts is `fal_apps`.
A failed run is ``COMPLETED`` with ``error``/``error_type``; its result answers 422.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from abebeats_lab.emulator.core import EmulatedJob, EmulatorState, drop_connection, hang
from abebeats_lab.emulator.fal_apps import ANY_APP, MODELS, BadInput, render_shape, validated

__all__ = ["create_app"]

_STREAM_TICK_S = 0.05
"""How often the SSE stream looks at the job clock."""
_KEEPALIVE_S = 15.0
"""fal sends a comment line this often on a quiet stream."""
_CANCELED_TYPE = "client_cancelled"
_DEFAULT_ERROR_TYPE = "runner_server_error"
_UNKNOWN_STATUS = "IN_LIMBO"  # a word fal_client answers with ValueError("Unknown status")
_CLIENT_CLOSED = 499


def _detail(
    status: int, message: str, error_type: str | None = None, **headers: str
) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if error_type:
        body["error_type"] = error_type
    return JSONResponse(body, status_code=status, headers=headers or None)


def _unauthorized(request: Request) -> Response | None:
    header = request.headers.get("authorization", "")
    if header.startswith("Key ") and header[len("Key ") :].strip():
        return None
    return _detail(401, "No key: send Authorization: Key <FAL_KEY>")


def _app_root(model_id: str) -> str:
    parts = model_id.split("/")
    return "/".join(parts[:3] if parts[0] in ("workflows", "comfy") else parts[:2])


class _Fal:
    """Route handlers over one `EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def _base(self, request: Request) -> str:
        return self.state.base_url or str(request.base_url).rstrip("/")

    def _too_many(self) -> JSONResponse:
        retry = f"{self.state.scenario.retry_after_s:g}"
        return _detail(
            429, "Too many concurrent requests", "rate_limited", **{"Retry-After": retry}
        )

    async def submit(self, request: Request) -> Response:
        model_id = request.path_params["model_id"].strip("/")
        self.state.record(request, "create")
        if (problem := _unauthorized(request)) is not None:
            return problem
        if self.state.take_fault("create_429", self.state.scenario.create_429):
            return self._too_many()
        spec = MODELS.get(model_id, ANY_APP)
        try:
            payload = validated(spec, await request.json())
        except ValueError:
            return BadInput("body", "not valid JSON", "json_invalid").response()
        except BadInput as exc:
            return exc.response()
        job = self.state.new_job(model_id, payload)
        job.extra["shape"] = render_shape(spec, payload)
        self.state.start_render(job, lambda: self._video(job))
        return await self._answer_submit(request, job)

    async def _answer_submit(self, request: Request, job: EmulatedJob) -> Response:
        scenario = self.state.scenario
        if self.state.take_fault("drop_create", scenario.drop_create):
            return await drop_connection()
        if self.state.take_fault("hang_create", scenario.hang_create):
            return await hang()
        return JSONResponse({**self._urls(request, job), "queue_position": self._position(job)})

    def _urls(self, request: Request, job: EmulatedJob) -> dict[str, str]:
        url = f"{self._base(request)}/{_app_root(job.model)}/requests/{job.id}"
        return {
            "request_id": job.id,
            "response_url": url,
            "status_url": f"{url}/status",
            "cancel_url": f"{url}/cancel",
        }

    def _position(self, job: EmulatedJob) -> int:
        now = time.time()
        return sum(
            1
            for j in self.state.jobs.values()
            if j.created < job.created and j.phase(now) == "queued"
        )

    def _job(self, request: Request) -> EmulatedJob | None:
        job = self.state.get(request.path_params["request_id"])
        root = f"{request.path_params['owner']}/{request.path_params['alias']}"
        return job if job is not None and _app_root(job.model) == root else None

    def _status_fault(self) -> Response | None:
        scenario = self.state.scenario
        if self.state.take_fault("status_429", scenario.status_429):
            return self._too_many()
        if self.state.take_fault("status_5xx", scenario.status_5xx):
            # With x-fal-request-id the answer came from fal, not its ingress: not retried.
            headers = {
                "x-fal-request-id": "emulated-503",
                "X-Fal-Error-Type": "runner_connection_error",
            }
            return _detail(503, "Runner connection error", "runner_connection_error", **headers)
        if self.state.take_fault("malformed_status", scenario.malformed_status):
            return Response("<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        return None

    def _stream_fault(self) -> Response | None:
        if self.state.take_fault("stream_429", self.state.scenario.stream_429):
            return self._too_many()
        return self._status_fault()

    def _status(self, request: Request, job: EmulatedJob, logs: bool) -> dict[str, Any]:
        now = time.time()
        phase = job.phase(now)
        body: dict[str, Any] = {**self._urls(request, job)}
        if self.state.scenario.unknown_status:
            return {**body, "status": _UNKNOWN_STATUS}
        if phase == "queued":
            return {**body, "status": "IN_QUEUE", "queue_position": self._position(job)}
        lines = _logs(job, now) if logs else None
        if phase == "running":
            return {**body, "status": "IN_PROGRESS", "logs": lines}
        body.update(status="COMPLETED", logs=lines, metrics={"inference_time": round(job.run_s, 3)})
        if phase == "canceled":
            body.update(error="Request was cancelled by the user", error_type=_CANCELED_TYPE)
        elif phase == "failed":
            body.update(error=self.state.scenario.failure_message, error_type=self._error_type())
        return body

    def _error_type(self) -> str:
        return self.state.scenario.failure_code or _DEFAULT_ERROR_TYPE

    async def status(self, request: Request) -> Response:
        self.state.record(request, "status", request.path_params["request_id"])
        if (problem := _unauthorized(request) or self._status_fault()) is not None:
            return problem
        job = self._job(request)
        if job is None:
            return _detail(404, "Request not found")
        return JSONResponse(self._status(request, job, _wants_logs(request)))

    async def stream(self, request: Request) -> Response:
        self.state.record(request, "stream", request.path_params["request_id"])
        if (problem := _unauthorized(request) or self._stream_fault()) is not None:
            return problem
        job = self._job(request)
        if job is None:
            return _detail(404, "Request not found")
        events = self._events(request, job, _wants_logs(request))
        return StreamingResponse(
            events, media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def _events(self, request: Request, job: EmulatedJob, logs: bool) -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        quiet_since = time.monotonic()
        while True:
            body = self._status(request, job, logs)
            if body != last:
                yield f"data: {json.dumps(body)}\n\n"
                last, quiet_since = body, time.monotonic()
            elif time.monotonic() - quiet_since > _KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            if body["status"] not in ("IN_QUEUE", "IN_PROGRESS"):
                return
            await asyncio.sleep(_STREAM_TICK_S)

    async def result(self, request: Request) -> Response:
        self.state.record(request, "result", request.path_params["request_id"])
        if (problem := _unauthorized(request)) is not None:
            return problem
        if self.state.take_fault("result_429", self.state.scenario.result_429):
            return self._too_many()
        job = self._job(request)
        if job is None:
            return _detail(404, "Request not found")
        phase = job.phase()
        if phase in ("queued", "running"):
            return _detail(400, "Request is still in progress")
        if phase == "canceled":
            return _detail(_CLIENT_CLOSED, "Request was cancelled", _CANCELED_TYPE)
        if phase == "failed":
            error_type = self._error_type()
            return _detail(
                422,
                self.state.scenario.failure_message,
                error_type,
                **{"X-Fal-Error-Type": error_type},
            )
        return JSONResponse({"video": self._video(job)})

    def _video(self, job: EmulatedJob) -> dict[str, Any]:
        duration_s, aspect_ratio, resolution = job.extra["shape"]
        seed = job.payload.get("seed")
        url = self.state.output_for(
            job,
            prompt=job.payload["prompt"],
            seed=seed if isinstance(seed, int) else None,
            duration_s=duration_s,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            audio=job.payload.get("generate_audio") is True,
        )
        size = len(self.state.output_data(job) or b"")
        return {
            "url": url,
            "content_type": "video/mp4",
            "file_name": "output.mp4",
            "file_size": size,
        }

    async def cancel(self, request: Request) -> Response:
        self.state.record(request, "cancel", request.path_params["request_id"])
        if (problem := _unauthorized(request)) is not None:
            return problem
        job = self._job(request)
        if job is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        if job.phase() in ("queued", "running"):
            job.canceled_at = time.time()
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)


def _wants_logs(request: Request) -> bool:
    return request.query_params.get("logs", "0").lower() in ("1", "true")


def _logs(job: EmulatedJob, now: float) -> list[dict[str, str]]:
    done = int(job.progress(now) * 100)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return [
        {"message": f"generating: {done}%", "level": "INFO", "source": "user", "timestamp": stamp}
    ]


def create_app(state: EmulatorState) -> Starlette:
    """The fal queue emulator: the apps in `MODELS` by their schema, any other app id too."""
    api = _Fal(state)
    prefix = "/{owner}/{alias}/requests/{request_id}"
    routes = [
        state.file_route(),
        Route(prefix + "/status/stream", api.stream, methods=["GET"]),
        Route(prefix + "/status", api.status, methods=["GET"]),
        Route(prefix + "/cancel", api.cancel, methods=["PUT"]),
        Route(prefix, api.result, methods=["GET"]),
        Route("/{model_id:path}", api.submit, methods=["POST"]),
    ]
    return Starlette(routes=routes)
