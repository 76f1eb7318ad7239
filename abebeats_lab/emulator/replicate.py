"""Replicate's HTTP API on loopback, enough for the official ``replicate`` SDK unchanged.

Predictions are created on the three create endpoints (201), held open under
``Prefer: wait[=N]``, read, listed newest first, and cancelled (idempotently). Every prediction
carries the fields the v1 SDK's pydantic model requires. Errors are RFC 7807 problem details.
See provider-apis.md §2 and the checklist in §5.2.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from abebeats_lab.emulator.core import EmulatedJob, EmulatorState, drop_connection, hang

__all__ = ["create_app"]

_PROBLEM = "application/problem+json"
_MAX_WAIT_S = 60
_HOLD_STEP_S = 0.02
_PAGE_SIZE = 100
_PROGRESS_STEPS = 50
_VERSION_RE = re.compile(r"^[0-9a-f]{64}$")
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_STATUS_WORD = {
    "queued": "starting",
    "running": "processing",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}
# Output length each family renders when the input names no duration (model defaults).
_DEFAULT_DURATION = {"minimax/video-01": 6, "google/veo-3": 8, "kwaivgi/kling": 5}
_FALLBACK_DURATION = 5
_UNDOCUMENTED_STATUS = "waiting_for_gpu"


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"title": title, "detail": detail, "status": status, **extra}
    return JSONResponse(body, status_code=status, media_type=_PROBLEM)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _authorized(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


class _Replicate:
    """Route handlers over one `EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    # -- rendering ----------------------------------------------------------------------

    def prediction(self, job: EmulatedJob, *, status_word: str | None = None) -> dict[str, Any]:
        """The prediction object at this moment, as GET /v1/predictions/{id} returns it."""
        now = time.time()
        phase = self.phase(job, now)
        base = self.state.base_url
        ended = self._ended_at(job, phase)
        started = (
            job.started if now >= job.started and (ended is None or ended >= job.started) else None
        )
        return {
            "id": job.id,
            "model": job.model,
            "version": job.extra.get("version", "hidden"),
            "status": status_word or _STATUS_WORD[phase],
            "input": job.payload,
            "output": self._output(job) if phase == "succeeded" else None,
            "logs": self._logs(job, phase, now),
            "error": self.state.scenario.failure_message if phase == "failed" else None,
            "metrics": self._metrics(job, started, ended),
            "created_at": _iso(job.created),
            "started_at": _iso(started),
            "completed_at": _iso(ended),
            "urls": {
                "get": f"{base}/v1/predictions/{job.id}",
                "cancel": f"{base}/v1/predictions/{job.id}/cancel",
                "web": f"{base}/p/{job.id}",
            },
            "data_removed": False,
        }

    @staticmethod
    def _ended_at(job: EmulatedJob, phase: str) -> float | None:
        if phase == "canceled":
            return job.canceled_at
        return job.finished if phase in ("succeeded", "failed") else None

    @staticmethod
    def _metrics(job: EmulatedJob, started: float | None, ended: float | None) -> dict[str, Any]:
        if ended is None:
            return {}
        predict = max(0.0, ended - started) if started is not None else 0.0
        return {"predict_time": round(predict, 3), "total_time": round(ended - job.created, 3)}

    def _logs(self, job: EmulatedJob, phase: str, now: float) -> str:
        if phase == "queued" or not self.state.scenario.progress:
            return ""
        # tqdm's count is the steps completed, so it never shows 100% before the end.
        done = int(job.progress(now) * _PROGRESS_STEPS) if phase == "running" else _PROGRESS_STEPS
        done = min(done, _PROGRESS_STEPS - 1) if phase == "running" else done
        percent = done * 100 // _PROGRESS_STEPS
        bar = "#" * (done // 5)
        return f"Generating video\n{percent:3d}%|{bar:<10}| {done}/{_PROGRESS_STEPS} [00:01<00:01]"

    def start_render(self, job: EmulatedJob) -> None:
        """Render the video in a worker thread while the job "runs", as a real provider would;
        rendering inside a handler would stall every other request (and a held create)."""
        self.state.start_render(job, lambda: self._output(job))

    def phase(self, job: EmulatedJob, now: float) -> str:
        """The job's phase; core keeps it ``running`` until its video is rendered."""
        return job.phase(now)

    def _output(self, job: EmulatedJob) -> str | list[str]:
        data = job.payload
        url = self.state.output_for(
            job,
            prompt=str(data.get("prompt", "")),
            seed=data.get("seed") if isinstance(data.get("seed"), int) else None,
            duration_s=float(data.get("duration") or _default_duration(job.model)),
            aspect_ratio=str(data.get("aspect_ratio") or "16:9"),
            resolution=str(data.get("resolution") or "720p"),
            audio=bool(data.get("generate_audio", False)),
        )
        # Models with several outputs answer with a list; one-video models with a string.
        return [url] if "num_outputs" in data else url

    # -- create ---------------------------------------------------------------------------

    async def create_model(self, request: Request) -> Response:
        """POST /v1/models/{owner}/{name}/predictions and the deployments twin."""
        owner, name = request.path_params["owner"], request.path_params["name"]
        return await self._create(request, f"{owner}/{name}", version=None)

    async def create_version(self, request: Request) -> Response:
        """POST /v1/predictions with ``version``: a 64-hex id, ``owner/name`` or both."""
        body = await _json_or_none(request)
        ref = body.get("version") if isinstance(body, dict) else None
        if not isinstance(ref, str):
            self.state.record(request, "create")
            return _invalid("version", "version is required")
        model_part, _, version = ref.partition(":") if "/" in ref else ("", "", ref)
        if (version and not _VERSION_RE.match(version)) or (
            model_part and not _MODEL_RE.match(model_part)
        ):
            self.state.record(request, "create")
            return _problem(
                422,
                "Invalid version or not permitted",
                "The specified version does not exist "
                "(or perhaps you don't have permission to use it?)",
            )
        model = model_part or f"emulated/model-{version[:8]}"
        return await self._create(request, model, version=version or None)

    async def _create(self, request: Request, model: str, *, version: str | None) -> Response:
        if not _authorized(request):
            self.state.record(request, "create")
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        sc = self.state.scenario
        if self.state.take_fault("create_429", sc.create_429):
            self.state.record(request, "create")
            return _throttled(sc.retry_after_s)
        body = await _json_or_none(request)
        problem = _check_input(body)
        if problem is not None:
            self.state.record(request, "create")
            return problem
        assert isinstance(body, dict)
        job = self.state.new_job(model, dict(body["input"]), job_id=_prediction_id())
        job.extra["version"] = version or "hidden"
        self.state.record(request, "create", job.id)
        self.start_render(job)
        if self.state.take_fault("drop_create", sc.drop_create):
            return await drop_connection()
        if self.state.take_fault("hang_create", sc.hang_create):
            return await hang()
        return await self._answer_create(request, job)

    async def _answer_create(self, request: Request, job: EmulatedJob) -> Response:
        wait_s = _prefer_wait(request.headers.get("prefer", ""))
        headers = {"Location": f"{self.state.base_url}/v1/predictions/{job.id}"}
        status_word = None
        if wait_s is not None:
            headers["Preference-Applied"] = f"wait={wait_s}"
            # Hold until a deadline, not for a count of sleeps: under load sleeps overrun.
            deadline = time.monotonic() + wait_s
            while self.phase(job, time.time()) in ("queued", "running"):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await asyncio.sleep(min(_HOLD_STEP_S, left))
            # The SDKs' run() keeps polling only on "starting": a held request that is not
            # done answers "starting" even if the model is already running (§2.6).
            if self.phase(job, time.time()) in ("queued", "running"):
                status_word = "starting"
        body = self.prediction(job, status_word=status_word)
        return JSONResponse(body, status_code=201, headers=headers)

    # -- read, list, cancel ---------------------------------------------------------------

    async def get(self, request: Request) -> Response:
        """GET /v1/predictions/{id} with the scenario's status faults."""
        job_id = request.path_params["id"]
        self.state.record(request, "status", job_id)
        if not _authorized(request):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        sc = self.state.scenario
        if self.state.take_fault("status_429", sc.status_429):
            return _throttled(sc.retry_after_s)
        if self.state.take_fault("status_5xx", sc.status_5xx):
            return _problem(503, "Service Unavailable", "Upstream is overloaded (emulated)")
        job = self.state.get(job_id)
        if job is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        if self.state.take_fault("malformed_status", sc.malformed_status):
            return Response("<html>502 Bad Gateway</html>", media_type="application/json")
        word = _UNDOCUMENTED_STATUS if sc.unknown_status else None
        return JSONResponse(self.prediction(job, status_word=word))

    async def list(self, request: Request) -> Response:
        """GET /v1/predictions: newest first, paginated with absolute cursor URLs."""
        self.state.record(request, "other")
        if not _authorized(request):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        try:
            offset = max(0, int(request.query_params.get("cursor", "0")))
        except ValueError:
            return _problem(400, "Bad request", "cursor must be an integer")
        jobs = sorted(
            (j for j in self.state.jobs.values() if not j.deleted), key=lambda j: -j.created
        )
        page = jobs[offset : offset + _PAGE_SIZE]
        url = f"{self.state.base_url}/v1/predictions?cursor="
        more = offset + _PAGE_SIZE < len(jobs)
        return JSONResponse(
            {
                "next": f"{url}{offset + _PAGE_SIZE}" if more else None,
                "previous": f"{url}{max(0, offset - _PAGE_SIZE)}" if offset else None,
                "results": [self.prediction(j) for j in page],
            }
        )

    async def cancel(self, request: Request) -> Response:
        """POST /v1/predictions/{id}/cancel: 200 with the object; finished ones are unchanged."""
        job_id = request.path_params["id"]
        self.state.record(request, "cancel", job_id)
        if not _authorized(request):
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        job = self.state.get(job_id)
        if job is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        if job.phase() in ("queued", "running"):
            job.canceled_at = time.time()
        return JSONResponse(self.prediction(job))

    async def version(self, request: Request) -> Response:
        """GET /v1/models/{owner}/{name}/versions/{id} (``run("o/n:v")`` reads it)."""
        self.state.record(request, "other")
        version_id = request.path_params["version"]
        if not _VERSION_RE.match(version_id):
            return _problem(404, "Not found", "The requested resource could not be found.")
        return JSONResponse(
            {
                "id": version_id,
                "created_at": "2025-01-01T00:00:00.000Z",
                "cog_version": "0.9.0",
                "openapi_schema": {
                    "components": {"schemas": {"Output": {"type": "string", "format": "uri"}}}
                },
            }
        )

    async def model(self, request: Request) -> Response:
        """GET /v1/models/{owner}/{name}: a minimal model card."""
        self.state.record(request, "other")
        owner, name = request.path_params["owner"], request.path_params["name"]
        return JSONResponse(
            {
                "url": f"{self.state.base_url}/{owner}/{name}",
                "owner": owner,
                "name": name,
                "description": "emulated model",
                "visibility": "public",
                "run_count": 0,
                "latest_version": None,
            }
        )


def _default_duration(model: str) -> int:
    for prefix, seconds in _DEFAULT_DURATION.items():
        if model.startswith(prefix):
            return seconds
    return _FALLBACK_DURATION


def _prediction_id() -> str:
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(26))


def _prefer_wait(header: str) -> int | None:
    """Seconds to hold for ``Prefer: wait`` / ``wait=N`` (1..60), else None."""
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() != "wait":
            continue
        if not value:
            return _MAX_WAIT_S
        try:
            return max(1, min(_MAX_WAIT_S, int(value.strip())))
        except ValueError:
            return _MAX_WAIT_S
    return None


async def _json_or_none(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _check_input(body: Any) -> Response | None:
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        return _invalid("input", "input is required and must be an object")
    prompt = body["input"].get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return _invalid("input.prompt", "prompt is required")
    return None


def _invalid(field: str, description: str) -> JSONResponse:
    fields = [{"type": "required", "field": field, "description": description}]
    return _problem(422, "Input validation failed", description, invalid_fields=fields)


def _throttled(retry_after_s: float) -> JSONResponse:
    detail = f"Request was throttled. Your rate limit resets in ~{retry_after_s:g}s."
    response = _problem(429, "Too Many Requests", detail, retry_after=retry_after_s)
    response.headers["Retry-After"] = f"{retry_after_s:g}"
    return response


def create_app(state: EmulatorState) -> Starlette:
    """The Replicate emulator as an ASGI app."""
    api = _Replicate(state)
    routes = [
        Route("/v1/predictions", api.create_version, methods=["POST"]),
        Route("/v1/predictions", api.list, methods=["GET"]),
        Route("/v1/predictions/{id}", api.get, methods=["GET"]),
        Route("/v1/predictions/{id}/cancel", api.cancel, methods=["POST"]),
        Route("/v1/models/{owner}/{name}/predictions", api.create_model, methods=["POST"]),
        Route("/v1/deployments/{owner}/{name}/predictions", api.create_model, methods=["POST"]),
        Route("/v1/models/{owner}/{name}/versions/{version}", api.version, methods=["GET"]),
        Route("/v1/models/{owner}/{name}", api.model, methods=["GET"]),
        state.file_route(),
    ]
    return Starlette(routes=routes)
