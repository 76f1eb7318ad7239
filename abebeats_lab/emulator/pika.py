"""fal.ai's queue API serving Pika, on loopback: submit, status, SSE status stream, result, cancel.

Wire format as fal_client 1.0.3 reads it (provider-apis.md §4, §5.4). Submits go to the full
model id (``/fal-ai/pika/v2.2/text-to-video``); status, result and cancel live under the app
root (``/fal-ai/pika/requests/{id}``), and the submit answer carries those URLs. A failed run
is ``COMPLETED`` with ``error``/``error_type``; its result answers 422.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from abebeats_lab.emulator.core import EmulatedJob, EmulatorState, drop_connection, hang

__all__ = ["MODELS", "ModelSpec", "create_app"]

_RATIOS = ("16:9", "9:16", "1:1", "4:5", "5:4", "3:2", "2:3")
_SEED_MAX = 4_294_967_295
_STREAM_TICK_S = 0.05
"""How often the SSE stream looks at the job clock."""
_KEEPALIVE_S = 15.0
"""fal sends a comment line this often on a quiet stream."""
_CANCELED_TYPE = "client_cancelled"
_DEFAULT_ERROR_TYPE = "runner_server_error"
_UNKNOWN_STATUS = "IN_LIMBO"  # a word fal_client answers with ValueError("Unknown status")
_CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What one Pika model id accepts (fal.ai model pages)."""

    resolutions: tuple[str, ...] = ("720p", "1080p")
    durations: tuple[int, ...] = (5, 10)
    negative_default: str = "ugly, bad, terrible"
    image: bool = False


MODELS: dict[str, ModelSpec] = {
    "fal-ai/pika/v2.2/text-to-video": ModelSpec(),
    "fal-ai/pika/v2.2/image-to-video": ModelSpec(image=True),
    "fal-ai/pika/v2.1/text-to-video": ModelSpec(),
    "fal-ai/pika/v2/turbo/text-to-video": ModelSpec(negative_default=""),
    "fal-ai/pika/v2.5/text-to-video": ModelSpec(resolutions=("480p", "720p", "1080p")),
}
_INPUTS = frozenset({"prompt", "seed", "negative_prompt", "aspect_ratio", "resolution", "duration"})


class BadInput(Exception):
    """Input fal would reject with 422; ``loc`` names the field."""

    def __init__(self, loc: str, msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind

    def response(self) -> JSONResponse:
        detail = [{"loc": ["body", self.loc], "msg": self.msg, "type": self.kind}]
        return JSONResponse({"detail": detail}, status_code=422)


def _enum(body: dict[str, Any], name: str, allowed: tuple[Any, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value not in allowed or type(value) is not type(allowed[0]):
        raise BadInput(name, f"must be one of {', '.join(map(str, allowed))}", "enum")
    return value


def _validated(spec: ModelSpec, body: Any) -> dict[str, Any]:
    """The full input with defaults filled in, or `BadInput`."""
    if not isinstance(body, dict):
        raise BadInput("body", "expected a JSON object", "type_error")
    allowed = _INPUTS | ({"image_url"} if spec.image else set())
    for name in body:
        if name not in allowed:
            raise BadInput(name, "extra inputs are not permitted", "extra_forbidden")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput("prompt", "field required: a non-empty string", "missing")
    if spec.image and not isinstance(body.get("image_url"), str):
        raise BadInput("image_url", "field required", "missing")
    seed = body.get("seed", 0)
    if type(seed) is not int or not 0 <= seed <= _SEED_MAX:
        raise BadInput("seed", f"must be an integer in 0..{_SEED_MAX}")
    return {
        **body,
        "negative_prompt": body.get("negative_prompt", spec.negative_default),
        "aspect_ratio": _enum(body, "aspect_ratio", _RATIOS, "16:9"),
        "resolution": _enum(body, "resolution", spec.resolutions, "720p"),
        "duration": _enum(body, "duration", spec.durations, 5),
    }


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
        spec = MODELS.get(model_id)
        if spec is None:
            return _detail(404, f"Application {model_id!r} not found")
        try:
            payload = _validated(spec, await request.json())
        except ValueError:
            return BadInput("body", "not valid JSON", "json_invalid").response()
        except BadInput as exc:
            return exc.response()
        job = self.state.new_job(model_id, payload)
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
        url = self.state.output_for(
            job,
            prompt=job.payload["prompt"],
            seed=job.payload.get("seed"),
            duration_s=float(job.payload["duration"]),
            aspect_ratio=job.payload["aspect_ratio"],
            resolution=job.payload["resolution"],
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
    """The fal queue emulator serving the Pika models in `MODELS`."""
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
