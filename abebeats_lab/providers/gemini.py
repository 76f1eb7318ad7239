"""Google's video models on the Gemini Developer API (``gemini:<model>``), with an API key.

In google-genai 3.6 an API key reaches Google's video models only through the Interactions
API: ``models.generate_videos`` raises ``ValueError`` outside Vertex mode, and generateContent's
``VideoResponseFormat`` is marked "not supported in Gemini API". So this route drives
``client.aio.interactions``: ``create(model, input, background=True, response_format={"type":
"video", ...})`` (``POST /{v}/interactions``), ``get(id)`` until the status is terminal and
``cancel(id)``. The video arrives as the interaction's ``output_video``: base64 ``data``, or a
Files API ``uri`` fetched through genai's ``files.download`` (which carries the key).

This module adds what genai lacks: no blind retry of a create that may have arrived (genai's
interactions client retries 5xx and timeouts by default, so its retries are switched off and
our policy decides), our error types, and "completed without a video" (a safety block) read as
a failure with the reason. The genai client, its hook (to notice the emulator) and the
translation of genai's classic errors are shared with Veo (`providers._genai`); this module maps
the Interactions API's own errors (``genai_interactions``) first. It leaves
`GenaiProvider.answer_cap` unset: genai reads this route's answers without a size cap.
Keys: ``GEMINI_API_KEY`` (alias ``GOOGLE_API_KEY``); base URL: ``GOOGLE_GEMINI_BASE_URL``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

from google import genai
from google.genai import _interactions as genai_interactions
from google.genai import errors as genai_errors
from google.genai import types
from google.genai.interactions import Interaction

from abebeats_lab import config
from abebeats_lab._types import Job, JobState, JobStatus, OutputRef, Route, VideoRequest
from abebeats_lab.errors import LabError, ProtocolError, ProviderHTTPError, ValidationError
from abebeats_lab.http import DEFAULT_RETRY, RetryPolicy, never_sent, retry_errors
from abebeats_lab.providers._genai import GenaiProvider, http_error
from abebeats_lab.providers.base import transport_failure, unreadable_answer, utcnow
from abebeats_lab.secret import Secret

__all__ = ["GeminiProvider", "build_body", "parse_interaction"]

DEFAULT_TIMEOUT_S = 60.0
INLINE_ANSWER_CAP = 512 * 1024**2
"""Bytes an answer may hold. An inline video rides in the answer as base64 (4/3 of the clip
plus JSON), so the status cap of the other routes is far too small here; 512 MiB holds a 380 MB
clip, well past a 10 s 4K one, and still bounds a server that sends a gzip bomb or no end."""
_EXTRAS = frozenset({"delivery", "task"})
"""Route-specific settings: ``delivery`` (``inline``/``uri``) and ``video_config.task``."""
_RUNNING = frozenset({"in_progress", "requires_continuation"})
"""Still working; with ``background`` the server continues a long decode by itself."""
_STOPPED = frozenset({"incomplete", "budget_exceeded", "requires_action", "idle"})
"""Terminal for a video job: it stopped without producing the video."""
_CANCELLED = "cancelled"
_ENDED = frozenset({"completed", "failed", _CANCELLED}) | _STOPPED
_CANCEL_REFUSED = frozenset({400, 404, 409})
"""Answers to a cancel of a finished (or forgotten) interaction: nothing left to stop."""
_FILE_NAME = re.compile(r"files/(?P<name>[a-z0-9]+)")
_FILE_URI = re.compile(r"/files/(?P<name>[a-z0-9]+):download")
"""A Files API download URI, ``https://…/v1beta/files/{name}:download?alt=media``."""
_NO_VIDEO = "NO_VIDEO"


def build_body(request: VideoRequest, route: Route) -> dict[str, Any]:
    """The ``interactions.create`` arguments for one request (one video, in the background)."""
    unknown = sorted(set(request.extras) - _EXTRAS)
    if unknown:
        raise ValidationError("extras", unknown, ", ".join(sorted(_EXTRAS)), route=str(route))
    video: dict[str, Any] = {
        "type": "video",
        "aspect_ratio": request.aspect_ratio,
        "duration": f"{request.duration_s}s",  # a google.protobuf.Duration in JSON form
        "resolution": request.resolution,
    }
    if "delivery" in request.extras:
        video["delivery"] = request.extras["delivery"]
    generation: dict[str, Any] = {}
    if request.seed is not None:
        generation["seed"] = request.seed
    if "task" in request.extras:
        generation["video_config"] = {"task": request.extras["task"]}
    body: dict[str, Any] = {
        "model": route.model,
        "input": _input(request, route),
        "background": True,
        "response_format": video,
    }
    if generation:
        body["generation_config"] = generation
    return body


def _input(request: VideoRequest, route: Route) -> str | list[dict[str, Any]]:
    if not request.image:
        return request.prompt
    return [{"type": "text", "text": request.prompt}, _image(request.image, route)]


def _image(text: str, route: Route) -> dict[str, Any]:
    """An image content block: inline bytes from a ``data:`` URI, or a Files API URI."""
    header, sep, payload = text.partition(",")
    if text.startswith("data:") and sep and header.endswith(";base64"):
        try:
            base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise ValidationError("image", "<data: URI>", "valid base64", route=str(route)) from exc
        return {
            "type": "image",
            "data": payload,
            "mime_type": header[len("data:") : -len(";base64")],
        }
    if _FILE_NAME.search(text) and text.startswith(("https://generativelanguage.", "files/")):
        return {"type": "image", "uri": text}
    allowed = "a base64 data: URI or a Gemini Files API URI"
    raise ValidationError("image", text[:40], allowed, route=str(route))


class GeminiProvider(GenaiProvider):
    """Google's video models on the Gemini Developer API; see the module docstring."""

    name: ClassVar[str] = "gemini"
    answer_cap: ClassVar[int | None] = INLINE_ANSWER_CAP

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        emulated: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        key = config.key_for("gemini", api_key)
        assert key is not None  # required=True raises MissingKeyError instead
        self._key = key
        super().__init__(
            base_url=config.base_url_for("gemini", base_url),
            emulated=emulated,
            timeout_s=timeout_s,
            retry=retry,
        )

    def __repr__(self) -> str:
        return f"GeminiProvider(base_url={self._base_url!r}, emulated={self.emulated})"

    def _new_client(self, options: types.HttpOptions) -> genai.Client:
        return genai.Client(vertexai=False, api_key=self._key.reveal(), http_options=options)

    async def submit(self, request: VideoRequest, route: Route) -> Job:
        body = build_body(request, route)
        submitted_at = utcnow()
        interactions = self._client().aio.interactions
        created: Interaction = await retry_errors(
            lambda: self._call(lambda: interactions.create(**body), creating=True),
            policy=self._retry,
        )
        if not created.id:
            raise ProtocolError("the create answer carried no interaction id", provider=self.name)
        return Job(
            route=route,
            id=created.id,
            request=request,
            submitted_at=submitted_at,
            handles={"interaction": created.id},
        )

    async def status(self, job: Job) -> JobStatus:
        interactions = self._client().aio.interactions
        interaction: Interaction = await self._call(lambda: interactions.get(id=job.id))
        return parse_interaction(interaction)

    async def cancel(self, job: Job) -> bool:
        """``POST /{v}/interactions/{id}/cancel``: confirmed when the interaction it answers
        with is ``cancelled``; a finished interaction has nothing to stop."""
        interactions = self._client().aio.interactions
        try:
            interaction: Interaction = await self._call(lambda: interactions.cancel(id=job.id))
        except ProviderHTTPError as exc:
            if exc.status_code not in _CANCEL_REFUSED:
                raise
            return False
        return str(interaction.status) == _CANCELLED

    async def outputs(self, job: Job, status: JobStatus) -> list[OutputRef]:
        """Inline bytes as they are; a Files API ``uri`` is fetched by genai, with the key."""
        return [await self._fetch_file(ref) if _is_file(ref) else ref for ref in status.outputs]

    async def _fetch_file(self, ref: OutputRef) -> OutputRef:
        match = _FILE_URI.search(ref.url or "")
        assert match is not None  # _is_file checked it
        files = self._client().aio.files
        data = await self._call(lambda: files.download(file=f"files/{match['name']}"))
        return OutputRef(data=data, content_type=ref.content_type)

    def _translate(self, exc: Exception, *, creating: bool) -> LabError | None:
        """The Interactions API's errors first, then the files service's (classic genai
        errors, whose Google body is read as the Interactions API's is), then the shared ones."""
        if isinstance(exc, genai_interactions.APIStatusError):
            return http_error(self.name, exc.response.status_code, _google_text(exc.body), exc)
        if isinstance(exc, genai_interactions.APIConnectionError):
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            sent = creating and not never_sent(cause)
            return transport_failure(cause, provider=self.name, sent=sent)
        if isinstance(exc, genai_interactions.APIError):  # a 200 whose body the SDK cannot read
            return unreadable_answer(exc, provider=self.name)
        if isinstance(exc, genai_errors.APIError):
            return http_error(self.name, exc.code, _google_text(exc.details), exc)
        return super()._translate(exc, creating=creating)


def _google_text(body: Any) -> str:
    """Google's error code (or status) and message from an error body, else the body as text."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code') or error.get('status') or ''} {error.get('message') or ''}"
    return str(body or "")


def parse_interaction(interaction: Interaction) -> JobStatus:
    """An interaction as a `JobStatus`; a completed one without a video is a failure."""
    word = str(interaction.status)
    raw = _raw(interaction)
    created_at = _when(interaction.created)
    if word == "queued":
        return JobStatus(JobState.QUEUED, word, created_at=created_at, raw=raw)
    if word in _RUNNING:
        return JobStatus(JobState.RUNNING, word, created_at=created_at, raw=raw)
    if word not in _ENDED:
        raise ProtocolError(f"unknown interaction status {word!r}", provider="gemini")
    ended = JobStatus(
        JobState.FAILED,
        word,
        created_at=created_at,
        completed_at=_when(interaction.updated),
        raw=raw,
    )
    if word == _CANCELLED:
        return replace(ended, state=JobState.CANCELED)
    code, message = _fault(interaction)
    if word != "completed":
        reason = message or f"the interaction ended {word!r} without a video"
        return replace(ended, error=reason, error_code=code or word)
    ref = _ref(interaction)
    if ref is None:
        said = (interaction.output_text or "").strip()
        reason = message or said or "the interaction completed without a video"
        return replace(
            ended, error=f"completed without a video: {reason}", error_code=code or _NO_VIDEO
        )
    return replace(ended, state=JobState.SUCCEEDED, progress=1.0, outputs=(ref,))


def _fault(interaction: Interaction) -> tuple[str | None, str | None]:
    """The first error the interaction or one of its model steps records: (code, message)."""
    for error in interaction.errors or []:
        if error.message or error.code:
            return error.code, error.message
    for step in interaction.steps or []:
        status = getattr(step, "error", None)
        if status is not None and (status.message or status.code is not None):
            return (None if status.code is None else str(status.code)), status.message
    return None, None


def _ref(interaction: Interaction) -> OutputRef | None:
    video = interaction.output_video
    if video is None:
        return None
    mime = str(video.mime_type or "video/mp4")
    if video.data:
        try:
            return OutputRef(data=base64.b64decode(video.data), content_type=mime)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(f"video data is not base64: {exc}", provider="gemini") from exc
    if video.uri:
        return OutputRef(url=video.uri, content_type=mime)
    return None


def _when(text: str | None) -> datetime | None:
    """An ISO 8601 timestamp as an aware datetime; None when absent or unreadable."""
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text)
    return None


def _raw(interaction: Interaction) -> dict[str, Any]:
    """The interaction without video bytes (they go to disk, not to the store)."""
    video = interaction.output_video
    return {
        "id": interaction.id,
        "status": str(interaction.status),
        "model": None if interaction.model is None else str(interaction.model),
        "created": interaction.created,
        "updated": interaction.updated,
        "errors": [e.model_dump() for e in interaction.errors or []],
        "usage": interaction.usage.model_dump() if interaction.usage else None,
        "text": interaction.output_text or None,
        "video": None
        if video is None
        else {"mime_type": video.mime_type, "uri": video.uri, "data_chars": len(video.data or "")},
    }


def _is_file(ref: OutputRef) -> bool:
    return ref.data is None and bool(_FILE_URI.search(ref.url or ""))
