"""Veo on Vertex AI on loopback, enough for the official ``google-genai`` SDK unchanged.

``:predictLongRunning`` answers 200 with an operation name; ``:fetchPredictOperation`` answers
``done: false`` until the job ends, then the response (inline base64 videos, or ``gcsUri``
when ``storageUri`` was given) or a ``google.rpc.Status`` error. Both ``/v1`` and ``/v1beta1``
are served (genai defaults to v1beta1). Errors use Google's ``{"error": {...}}`` body, and no
success status other than 200 is ever sent (genai treats anything else as an error).
See provider-apis.md §3 and the checklist in §5.3.

A prompt containing `RAI_TRIGGER` ends with every video removed by the safety filter, which
is how Vertex reports filtered output (``raiMediaFilteredCount``), so clients can be tested.
One containing `NO_VIDEO_TRIGGER` ends done with reasons but neither a count nor a video, as
Vertex may also answer (provider-apis.md, Update December 2026).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from abebeats_lab.emulator import _google
from abebeats_lab.emulator.core import EmulatedJob, EmulatorState

__all__ = ["KNOWN_MODELS", "NO_VIDEO_TRIGGER", "RAI_TRIGGER", "create_app"]

RAI_TRIGGER = "#emulate-rai-filter"
NO_VIDEO_TRIGGER = "#emulate-no-video"
KNOWN_MODELS = frozenset(
    {
        "veo-2.0-generate-001",
        "veo-3.0-generate-001",
        "veo-3.0-fast-generate-001",
        "veo-3.0-generate-preview",
        "veo-3.0-fast-generate-preview",
        "veo-3.1-generate-preview",
        "veo-3.1-fast-generate-preview",
        "veo-3.1-generate-001",
        "veo-3.1-fast-generate-001",
        "veo-3.1-lite-generate-001",
    }
)
_PATH = re.compile(
    r"^(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"publishers/google/models/(?P<model>[^/:]+):(?P<verb>predictLongRunning|fetchPredictOperation)$"
)
_RESPONSE_TYPE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
_DURATIONS = range(4, 9)
_RATIOS = ("16:9", "9:16")
_RESOLUTIONS = ("720p", "1080p", "4k")
_MAX_SAMPLES = 4
_SEED_MAX = 4_294_967_295
_PERSON = ("allow_adult", "dont_allow", "allow_all")
_DEFAULT_DURATION = 8
_CODE_CANCELLED = 1
_CODE_INTERNAL = 13
_UNDOCUMENTED_DONE = "PAUSED"
_NO_VIDEO_REASON = "Video blocked: the prompt may violate the emulated usage policy."


def _google_error(
    code: int, message: str, details: list[dict[str, Any]] | None = None
) -> JSONResponse:
    """Vertex's ``google.rpc.Status`` body: the numeric ``code`` and its word as ``status``."""
    error: dict[str, Any] = {"code": code, "message": message, "status": _google.status_word(code)}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=code)


def _exhausted(retry_after_s: float) -> JSONResponse:
    info = {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": f"{retry_after_s:g}s",
    }
    message = (
        "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model."
    )
    return _google_error(429, message, [info])


def _authorized(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    bearer = scheme.lower() == "bearer" and bool(token.strip())
    return bearer or bool(request.headers.get("x-goog-api-key"))


def _check_params(params: dict[str, Any]) -> str | None:
    """The first problem with ``parameters``, as Vertex words it, or None."""
    checks: list[tuple[str, Any, bool]] = [
        (
            "durationSeconds",
            params.get("durationSeconds", _DEFAULT_DURATION),
            params.get("durationSeconds", _DEFAULT_DURATION) in _DURATIONS,
        ),
        ("aspectRatio", params.get("aspectRatio"), params.get("aspectRatio", "16:9") in _RATIOS),
        ("resolution", params.get("resolution"), params.get("resolution", "720p") in _RESOLUTIONS),
        (
            "sampleCount",
            params.get("sampleCount"),
            params.get("sampleCount", 1) in range(1, _MAX_SAMPLES + 1),
        ),
        ("seed", params.get("seed"), params.get("seed", 0) in range(_SEED_MAX + 1)),
        (
            "personGeneration",
            params.get("personGeneration"),
            params.get("personGeneration", _PERSON[0]) in _PERSON,
        ),
        (
            "storageUri",
            params.get("storageUri"),
            str(params.get("storageUri", "gs://")).startswith("gs://"),
        ),
        (
            "generateAudio",
            params.get("generateAudio"),
            isinstance(params.get("generateAudio", True), bool),
        ),
    ]
    for name, value, ok in checks:
        if not ok:
            return f"Unsupported value for parameters.{name}: {value!r}."
    return None


def _check_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        return "instances must hold exactly one instance."
    instance = instances[0]
    prompt = instance.get("prompt")
    if not (isinstance(prompt, str) and prompt.strip()) and "image" not in instance:
        return "instances[0].prompt is required for text-to-video."
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        return "parameters must be an object."
    return _check_params(params)


class _Veo:
    """Route handlers over one `EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def dispatch(self, request: Request) -> Response:
        """POST /{v1|v1beta1}/...models/{model}:{verb}."""
        match = _PATH.match(request.path_params["rest"])
        if match is None:
            self.state.record(request, "other")
            return _google_error(404, f"Unknown resource {request.url.path}.")
        if match["verb"] == "predictLongRunning":
            return await self.create(request, match)
        return await self.fetch(request, match)

    async def create(self, request: Request, match: re.Match[str]) -> Response:
        """``:predictLongRunning``: validate, then 200 ``{"name": .../operations/{uuid}}``."""
        rejection = await self._reject(request, match["model"])
        if rejection is not None:
            self.state.record(request, "create")
            return rejection
        model = match["model"]
        job = self.state.new_job(model, await request.json())
        scope = f"projects/{match['project']}/locations/{match['location']}/"
        resource = f"{scope if match['project'] else ''}publishers/google/models/{model}"
        job.extra["name"] = f"{resource}/operations/{job.id}"
        self.state.record(request, "create", job.id)
        # Render while the job "runs", off the server's loop, so answers never stall on it.
        job.extra["render"] = self.state.start_render(job, lambda: self._response(job))
        return await _google.create_fault(self.state) or JSONResponse({"name": job.extra["name"]})

    async def _reject(self, request: Request, model: str) -> Response | None:
        if not _authorized(request):
            return _google_error(401, "Request is missing required authentication credential.")
        sc = self.state.scenario
        if self.state.take_fault("create_429", sc.create_429):
            return _exhausted(sc.retry_after_s)
        if model not in KNOWN_MODELS:
            return _google_error(404, f"Publisher Model `{model}` was not found.")
        problem = _check_body(await _google.json_or_none(request))
        return None if problem is None else _google_error(400, problem)

    async def fetch(self, request: Request, match: re.Match[str]) -> Response:
        """``:fetchPredictOperation``: the operation, with the scenario's status faults."""
        body = await _google.json_or_none(request)
        name = body.get("operationName") if isinstance(body, dict) else None
        job_id = name.rpartition("/operations/")[2] if isinstance(name, str) else None
        self.state.record(request, "status", job_id)
        if not _authorized(request):
            return _google_error(401, "Request is missing required authentication credential.")
        refused = _google.status_fault(self.state, error=_google_error, exhausted=_exhausted)
        if refused is not None:
            return refused
        job = self.state.get(job_id) if job_id else None
        if job is None or job.model != match["model"]:
            return _google_error(404, f"Operation {name!r} was not found.")
        return _google.malformed_status(self.state) or JSONResponse(self.operation(job))

    def operation(self, job: EmulatedJob) -> dict[str, Any]:
        """The operation as ``fetchPredictOperation`` returns it now."""
        phase = job.phase()  # stays "running" until the video is written out
        name = job.extra["name"]
        if self.state.scenario.unknown_status:
            return {"name": name, "done": _UNDOCUMENTED_DONE}
        if phase in ("queued", "running"):
            return {"name": name, "done": False}
        if phase == "canceled":
            return {
                "name": name,
                "done": True,
                "error": {"code": _CODE_CANCELLED, "message": "CANCELLED"},
            }
        if phase == "failed":
            sc = self.state.scenario
            code = (
                int(sc.failure_code)
                if sc.failure_code and sc.failure_code.isdigit()
                else _CODE_INTERNAL
            )
            return {
                "name": name,
                "done": True,
                "error": {"code": code, "message": sc.failure_message},
            }
        return {"name": name, "done": True, "response": self._response(job)}

    def _response(self, job: EmulatedJob) -> dict[str, Any]:
        instance, params = job.payload["instances"][0], job.payload.get("parameters", {})
        count = int(params.get("sampleCount", 1))
        prompt = str(instance.get("prompt", ""))
        if RAI_TRIGGER in prompt:
            reasons = ["Video generation was blocked by the emulated safety filter."]
            return {
                "@type": _RESPONSE_TYPE,
                "raiMediaFilteredCount": count,
                "raiMediaFilteredReasons": reasons,
                "videos": [],
            }
        if NO_VIDEO_TRIGGER in prompt:
            return {"@type": _RESPONSE_TYPE, "raiMediaFilteredReasons": [_NO_VIDEO_REASON]}
        url = self.state.output_for(
            job,
            prompt=prompt,
            seed=params.get("seed"),
            duration_s=float(params.get("durationSeconds", _DEFAULT_DURATION)),
            aspect_ratio=str(params.get("aspectRatio", "16:9")),
            resolution=str(params.get("resolution", "720p")),
            audio=bool(params.get("generateAudio", False)),
        )
        storage = params.get("storageUri")
        videos = [self._video(job, url, storage, i) for i in range(count)]
        return {"@type": _RESPONSE_TYPE, "raiMediaFilteredCount": 0, "videos": videos}

    def _video(self, job: EmulatedJob, url: str, storage: Any, index: int) -> dict[str, str]:
        if isinstance(storage, str):
            return {
                "gcsUri": f"{storage.rstrip('/')}/{job.id}/sample_{index}.mp4",
                "mimeType": "video/mp4",
            }
        data = self.state.output_data(job) or b""
        return {
            "bytesBase64Encoded": base64.b64encode(data).decode("ascii"),
            "mimeType": "video/mp4",
        }


def create_app(state: EmulatorState) -> Starlette:
    """The Veo (Vertex AI) emulator as an ASGI app."""
    api = _Veo(state)
    routes = [
        Route("/v1/{rest:path}", api.dispatch, methods=["POST"]),
        Route("/v1beta1/{rest:path}", api.dispatch, methods=["POST"]),
        state.file_route(),
    ]
    return Starlette(routes=routes)
