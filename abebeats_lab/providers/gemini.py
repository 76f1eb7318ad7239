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
a failure with the reason. genai's HTTP client is used as shipped; only a response hook is
added, to notice the emulator. Keys: ``GEMINI_API_KEY`` (alias ``GOOGLE_API_KEY``); base URL:
``GOOGLE_GEMINI_BASE_URL``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import httpx
from google import genai
from google.genai import _interactions as genai_interactions
from google.genai import errors as genai_errors
from google.genai import types
from google.genai.interactions import Interaction

from abebeats_lab import config
from abebeats_lab._types import Job, JobState, JobStatus, OutputRef, Route, VideoRequest
from abebeats_lab.errors import ProtocolError, ProviderHTTPError, ValidationError
from abebeats_lab.http import (
    DEFAULT_RETRY,
    RetryPolicy,
    from_emulator,
    is_http_error,
    never_sent,
    retry_errors,
    retry_hint,
)
from abebeats_lab.providers.base import Provider, transport_failure, unreadable_answer, utcnow

__all__ = ["GeminiProvider", "build_body", "parse_interaction"]

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 60.0
_MS = 1000
_ONE_ATTEMPT = 1
"""genai's own retries off: `retry_errors` applies the project's one policy instead."""
_EXTRAS = frozenset({"delivery", "task"})
"""Route-specific settings: ``delivery`` (``inline``/``uri``) and ``video_config.task``."""
_RUNNING = frozenset({"in_progress", "requires_continuation"})
"""Still working; with ``background`` the server continues a long decode by itself."""
_STOPPED = frozenset({"incomplete", "budget_exceeded", "requires_action", "idle"})
"""Terminal for a video job: it stopped without producing the video."""
_ENDED = frozenset({"completed", "failed", "cancelled"}) | _STOPPED
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


class GeminiProvider(Provider):
    """Google's video models on the Gemini Developer API; see the module docstring."""

    name: ClassVar[str] = "gemini"

    def __init__(
        self,
        *,
        api_key: str | config.Secret | None = None,
        base_url: str | None = None,
        emulated: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        key = config.key_for("gemini", api_key)
        assert key is not None  # required=True raises MissingKeyError instead
        self._key = key
        self._base_url = config.base_url_for("gemini", base_url)
        self.emulated = emulated
        self._timeout_s = timeout_s
        self._retry = retry
        self._genai: genai.Client | None = None
        self._genai_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"GeminiProvider(base_url={self._base_url!r}, emulated={self.emulated})"

    def _client(self) -> genai.Client:
        # One genai client per event loop: pooled connections belong to the loop that opened them.
        loop = asyncio.get_running_loop()
        if self._genai is None or self._genai_loop is not loop:
            self._genai_loop = loop
            options = types.HttpOptions(
                base_url=self._base_url,
                timeout=int(self._timeout_s * _MS),
                retry_options=types.HttpRetryOptions(attempts=_ONE_ATTEMPT),
                async_client_args={"event_hooks": {"response": [self._observe]}},
            )
            self._genai = genai.Client(
                vertexai=False, api_key=self._key.reveal(), http_options=options
            )
        return self._genai

    async def _observe(self, response: Any) -> None:
        """genai's response hook: an emulator's answer makes this client emulated."""
        if from_emulator(response.headers):
            self.emulated = True

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

    async def cancel(self, job: Job) -> None:
        """``POST /{v}/interactions/{id}/cancel``; a finished interaction has nothing to stop."""
        interactions = self._client().aio.interactions
        try:
            await self._call(lambda: interactions.cancel(id=job.id))
        except ProviderHTTPError as exc:
            if exc.status_code not in _CANCEL_REFUSED:
                raise

    async def outputs(self, job: Job, status: JobStatus) -> list[OutputRef]:
        """Inline bytes as they are; a Files API ``uri`` is fetched by genai, with the key."""
        return [await self._fetch_file(ref) if _is_file(ref) else ref for ref in status.outputs]

    async def _fetch_file(self, ref: OutputRef) -> OutputRef:
        match = _FILE_URI.search(ref.url or "")
        assert match is not None  # _is_file checked it
        files = self._client().aio.files
        data = await self._call(lambda: files.download(file=f"files/{match['name']}"))
        return OutputRef(data=data, content_type=ref.content_type)

    async def _call(self, make: Callable[[], Awaitable[T]], *, creating: bool = False) -> T:
        """Run one genai call and translate whatever it raises into our error types."""
        try:
            return await make()
        except genai_interactions.APIStatusError as exc:
            raise _http_error(exc.response.status_code, exc.body, exc.response) from exc
        except genai_interactions.APIConnectionError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            sent = creating and not never_sent(cause)
            raise transport_failure(cause, provider=self.name, sent=sent) from exc
        except genai_interactions.APIError as exc:  # a 200 whose body the SDK cannot read
            raise unreadable_answer(exc, provider=self.name) from exc
        except genai_errors.APIError as exc:  # the files service (classic genai errors)
            raise _http_error(exc.code, exc.details, exc.response) from exc
        except (ValueError, TypeError, RecursionError) as exc:
            # bad JSON (nested past the parser's depth too); a body genai's models reject
            raise unreadable_answer(exc, provider=self.name) from exc
        except Exception as exc:  # genai's httpx2 errors, recognised without importing httpx2
            if not is_http_error(exc):
                raise
            sent = creating and not never_sent(exc)
            raise transport_failure(exc, provider=self.name, sent=sent) from exc

    async def aclose(self) -> None:
        if self._genai is not None:
            client, self._genai = self._genai, None
            await client.aio.aclose()


def _http_error(status_code: int, body: Any, response: Any) -> ProviderHTTPError:
    """A ProviderHTTPError with the status, Google's code and message, and any retry hint."""
    hint = None
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        # genai's response is an httpx2 one: read its hint with the one shared parser, through
        # a plain httpx copy.
        mirror = httpx.Response(
            response.status_code, headers=list(response.headers.items()), content=response.content
        )
        hint = retry_hint(mirror)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        text = f"{error.get('code') or error.get('status') or ''} {error.get('message') or ''}"
    else:
        text = str(body or "")
    return ProviderHTTPError(
        provider="gemini", status_code=status_code, body=text.strip(), retry_after_s=hint
    )


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
    if word == "cancelled":
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
