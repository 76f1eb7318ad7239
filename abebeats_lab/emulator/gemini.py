"""The Gemini Developer API's Interactions API on loopback, enough for ``google-genai`` unchanged.

google-genai 3.6 reaches Google's video models with an API key only through the Interactions
API (``models.generate_videos`` is Vertex-only there): ``POST /{v1|v1beta}/interactions`` with
``model``, ``input``, ``background`` and a ``{"type": "video", ...}`` response format, then
``GET /{v}/interactions/{id}`` until ``status`` is terminal, ``POST .../{id}/cancel`` and
``DELETE .../{id}``. A finished interaction carries its video as a ``model_output`` step with a
``video`` content block: base64 ``data`` by default, or with ``"delivery": "uri"`` a Files API
``uri`` served at ``GET /{v}/files/{id}:download?alt=media``. The key comes in
``x-goog-api-key`` (genai) or ``?key=`` (curl). Errors use ``{"error": {"code", "message"}}``
with a string code, as genai's ``Error`` model declares it. Both ``v1`` (genai 3.x's default)
and ``v1beta`` (the docs' curl examples) are served.

A prompt containing `SAFETY_TRIGGER` finishes ``completed`` with a text refusal and no video,
the "done without a video" case clients must treat as a failure.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from abebeats_lab.emulator import _google
from abebeats_lab.emulator.core import EmulatedJob, EmulatorState

__all__ = ["KNOWN_MODELS", "SAFETY_TRIGGER", "create_app"]

SAFETY_TRIGGER = "#emulate-safety-block"
_RATIOS = ("16:9", "9:16")
_ALL_RESOLUTIONS = ("360p", "720p", "1080p", "4k")
KNOWN_MODELS: dict[str, tuple[range, tuple[str, ...]]] = {
    "gemini-omni-flash-preview": (range(3, 11), ("720p",)),
    "gemini-omni-1.1-flash": (range(3, 11), _ALL_RESOLUTIONS),
    "gemini-omni-1.2-flash": (range(3, 16), _ALL_RESOLUTIONS),
}
"""Model -> (durations in seconds, resolutions), as capabilities/gemini.toml records them."""
_VERSIONS = ("v1", "v1beta")
_DEFAULT_DURATION_S = 8
_DEFAULT_RESOLUTION = "720p"
_DURATION = re.compile(r"^(?P<seconds>\d+)s$")
_TOKENS_PER_S = 5792
"""Video output tokens per second, as one reported 10 s interaction counted them (57,920)."""
_FOREGROUND_LIMIT_S = 600.0
_UNDOCUMENTED_STATUS = "suspended"
_REFUSAL = "I can't generate that video: the request was blocked by the safety filter (emulated)."
_STATUS_WORD = {
    "queued": "queued",
    "running": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "cancelled",
}
_PRECONDITION = 400


def _error(http_status: int, message: str, code: str | None = None) -> JSONResponse:
    """Gemini's error body: the ``google.rpc.Code`` word as a string ``code``."""
    body = {"error": {"code": code or _google.status_word(http_status), "message": message}}
    return JSONResponse(body, status_code=http_status)


def _exhausted(retry_after_s: float) -> JSONResponse:
    response = _error(429, "Resource has been exhausted (e.g. check quota).")
    response.headers["retry-after"] = f"{retry_after_s:g}"
    return response


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _authorized(request: Request) -> bool:
    return bool(request.headers.get("x-goog-api-key") or request.query_params.get("key"))


def _prompt(value: Any) -> str | None:
    """The text of ``input``: a string, or the text blocks of a content list."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        texts = [b.get("text") for b in value if isinstance(b, dict) and b.get("type") == "text"]
        images = [b for b in value if isinstance(b, dict) and b.get("type") == "image"]
        if texts or images:
            return " ".join(t for t in texts if isinstance(t, str))
    return None


def _video_format(body: dict[str, Any]) -> dict[str, Any]:
    formats = body.get("response_format")
    if isinstance(formats, dict):
        formats = [formats]
    if not isinstance(formats, list):
        return {}
    return next((f for f in formats if isinstance(f, dict) and f.get("type") == "video"), {})


def _check_format(video: dict[str, Any], model: str) -> str | None:
    """The first problem with the video response format for ``model``, or None."""
    durations, resolutions = KNOWN_MODELS[model]
    duration = str(video.get("duration", f"{_DEFAULT_DURATION_S}s"))
    match = _DURATION.match(duration)
    if match is None or int(match["seconds"]) not in durations:
        allowed = f"{durations.start}s to {durations.stop - 1}s"
        return f"response_format.duration {duration!r} is not supported for {model} ({allowed})."
    if video.get("aspect_ratio", _RATIOS[0]) not in _RATIOS:
        return f"response_format.aspect_ratio {video.get('aspect_ratio')!r} is not supported."
    if video.get("resolution", _DEFAULT_RESOLUTION) not in resolutions:
        return (
            f"response_format.resolution {video.get('resolution')!r} is not supported for {model}."
        )
    if video.get("delivery", "inline") not in ("inline", "uri"):
        return f"response_format.delivery {video.get('delivery')!r} is not supported."
    return None


def _check_body(body: Any) -> tuple[int, str] | None:
    if not isinstance(body, dict):
        return 400, "Invalid JSON payload received."
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return 400, "model is required."
    if model not in KNOWN_MODELS:
        return 404, f"models/{model} is not found, or does not support video generation."
    if body.get("stream"):
        return 400, "stream is not supported by this emulator; poll with background=true."
    if _prompt(body.get("input")) is None:
        return 400, "input is required: a string or a list of content blocks."
    problem = _check_format(_video_format(body), model)
    return None if problem is None else (400, problem)


class _Interactions:
    """Route handlers over one `EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def create(self, request: Request) -> Response:
        """``POST /{v}/interactions``: validate, then the new interaction (200)."""
        rejection = await self._reject(request)
        if rejection is not None:
            self.state.record(request, "create")
            return rejection
        body = await request.json()
        job = self.state.new_job(body["model"], body)
        job.extra["file_id"] = job.id.replace("-", "")
        self.state.record(request, "create", job.id)
        job.extra["render"] = self.state.start_render(job, lambda: self._render(job))
        fault = await _google.create_fault(self.state)
        if fault is not None:
            return fault
        if not body.get("background"):
            await self._until_terminal(job)  # a foreground create holds until the video exists
        return JSONResponse(self.interaction(job))

    async def _reject(self, request: Request) -> Response | None:
        if not _authorized(request):
            return _error(401, "Method doesn't allow unregistered callers. Please use an API key.")
        sc = self.state.scenario
        if self.state.take_fault("create_429", sc.create_429):
            return _exhausted(sc.retry_after_s)
        problem = _check_body(await _google.json_or_none(request))
        return None if problem is None else _error(*problem)

    async def _until_terminal(self, job: EmulatedJob) -> None:
        """Hold a foreground create until its video exists (or it was cancelled elsewhere)."""
        if job.render is not None:
            await asyncio.wrap_future(job.render)
        ends = min(job.finished, job.canceled_at if job.canceled_at is not None else math.inf)
        await asyncio.sleep(min(max(0.0, ends - time.time()), _FOREGROUND_LIMIT_S))

    async def get(self, request: Request) -> Response:
        """``GET /{v}/interactions/{id}``: the interaction, with the scenario's status faults."""
        job_id = request.path_params["id"]
        self.state.record(request, "status", job_id)
        if not _authorized(request):
            return _error(401, "Method doesn't allow unregistered callers. Please use an API key.")
        refused = _google.status_fault(self.state, error=_error, exhausted=_exhausted)
        if refused is not None:
            return refused
        job = self.state.get(job_id)
        if job is None:
            return _error(404, f"Interaction {job_id} was not found.")
        return _google.malformed_status(self.state) or JSONResponse(self.interaction(job))

    async def cancel(self, request: Request) -> Response:
        """``POST /{v}/interactions/{id}/cancel``: stops a running interaction."""
        job_id = request.path_params["id"]
        self.state.record(request, "cancel", job_id)
        if not _authorized(request):
            return _error(401, "Method doesn't allow unregistered callers. Please use an API key.")
        job = self.state.get(job_id)
        if job is None:
            return _error(404, f"Interaction {job_id} was not found.")
        if job.phase() not in ("queued", "running"):
            message = f"Interaction {job_id} is already {_STATUS_WORD[job.phase()]}."
            return _error(_PRECONDITION, message, "FAILED_PRECONDITION")
        job.canceled_at = time.time()
        return JSONResponse(self.interaction(job))

    async def delete(self, request: Request) -> Response:
        """``DELETE /{v}/interactions/{id}``: forgets a stored interaction."""
        job_id = request.path_params["id"]
        self.state.record(request, "other", job_id)
        job = self.state.get(job_id)
        if job is None:
            return _error(404, f"Interaction {job_id} was not found.")
        job.deleted = True
        return JSONResponse({})

    async def download(self, request: Request) -> Response:
        """``GET /{v}/files/{id}:download?alt=media``: a ``uri``-delivered video's bytes."""
        name, _, verb = request.path_params["name"].partition(":")
        job = next((j for j in self.state.jobs.values() if j.extra.get("file_id") == name), None)
        self.state.record(request, "download", job.id if job else None)
        if not _authorized(request):
            return _error(401, "Method doesn't allow unregistered callers. Please use an API key.")
        data = self.state.output_data(job) if job is not None and verb == "download" else None
        if data is None:
            return _error(404, f"File files/{name} was not found.")
        return Response(data, media_type="video/mp4")

    def interaction(self, job: EmulatedJob) -> dict[str, Any]:
        """The interaction resource as ``GET`` returns it now."""
        phase = job.phase()  # stays "running" until the video is rendered
        body = job.payload
        finished = phase in ("succeeded", "failed", "canceled")
        updated = min(time.time(), job.finished) if finished else time.time()
        answer: dict[str, Any] = {
            "id": job.id,
            "object": "interaction",
            "model": job.model,
            "status": _STATUS_WORD[phase],
            "created": _iso(job.created),
            "updated": _iso(
                job.canceled_at if phase == "canceled" and job.canceled_at else updated
            ),
        }
        if self.state.scenario.unknown_status:
            answer["status"] = _UNDOCUMENTED_STATUS
            return answer
        user = {"type": "user_input", "content": _content(body.get("input"))}
        if phase == "failed":
            sc = self.state.scenario
            answer["errors"] = [
                {"code": sc.failure_code or "INTERNAL", "message": sc.failure_message}
            ]
        elif phase == "succeeded":
            answer["steps"] = [user, {"type": "model_output", "content": [self._output(job)]}]
            answer["usage"] = _usage(job)
        return answer

    def _output(self, job: EmulatedJob) -> dict[str, Any]:
        if SAFETY_TRIGGER in (_prompt(job.payload.get("input")) or ""):
            return {"type": "text", "text": _REFUSAL}
        video = _video_format(job.payload)
        block: dict[str, Any] = {"type": "video", "mime_type": "video/mp4"}
        if video.get("delivery") == "uri":
            version = "v1beta"
            name = job.extra["file_id"]
            block["uri"] = f"{self.state.base_url}/{version}/files/{name}:download?alt=media"
        else:
            block["data"] = base64.b64encode(self.state.output_data(job) or b"").decode("ascii")
        return block

    def _render(self, job: EmulatedJob) -> None:
        video = _video_format(job.payload)
        match = _DURATION.match(str(video.get("duration", f"{_DEFAULT_DURATION_S}s")))
        seconds = int(match["seconds"]) if match else _DEFAULT_DURATION_S
        config = job.payload.get("generation_config") or {}
        self.state.output_for(
            job,
            prompt=_prompt(job.payload.get("input")) or "",
            seed=config.get("seed") if isinstance(config, dict) else None,
            duration_s=float(seconds),
            aspect_ratio=str(video.get("aspect_ratio", _RATIOS[0])),
            resolution=str(video.get("resolution", _DEFAULT_RESOLUTION)),
            audio=True,  # Omni always speaks: its videos carry native audio
        )


def _content(value: Any) -> list[dict[str, Any]]:
    """``input`` echoed as a user step's content (image bytes left out)."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    blocks = value if isinstance(value, list) else [value]
    return [
        {k: v for k, v in block.items() if k != "data"}
        for block in blocks
        if isinstance(block, dict)
    ]


def _usage(job: EmulatedJob) -> dict[str, Any]:
    match = _DURATION.match(str(_video_format(job.payload).get("duration", "")))
    seconds = int(match["seconds"]) if match else _DEFAULT_DURATION_S
    words = len((_prompt(job.payload.get("input")) or "").split())
    video_tokens = seconds * _TOKENS_PER_S
    return {
        "total_input_tokens": words,
        "total_output_tokens": video_tokens,
        "total_tokens": words + video_tokens,
        "output_tokens_by_modality": [{"modality": "video", "tokens": video_tokens}],
    }


def create_app(state: EmulatorState) -> Starlette:
    """The Gemini API (Interactions) emulator as an ASGI app."""
    api = _Interactions(state)
    routes: list[Route] = [state.file_route()]
    for version in _VERSIONS:
        base = f"/{version}/interactions"
        routes += [
            Route(base, api.create, methods=["POST"]),
            Route(base + "/{id}", api.get, methods=["GET"]),
            Route(base + "/{id}", api.delete, methods=["DELETE"]),
            Route(base + "/{id}/cancel", api.cancel, methods=["POST"]),
            Route(f"/{version}/files/{{name}}", api.download, methods=["GET"]),
        ]
    return Starlette(routes=routes)
