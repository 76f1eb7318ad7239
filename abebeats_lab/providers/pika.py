"""fal.ai's queue, for any fal video app: ``fal:<app-id>``, and ``pika:`` for Pika's apps.

Submit with ``POST {queue}/{app_id}``; status, result and cancel live under the app root
(``{queue}/fal-ai/pika/requests/{id}``), whose URLs the submit answer carries and the job
keeps, so a resumed run re-attaches without rebuilding them. fal pushes status over SSE
(``…/status/stream``); `waiting.wait` follows it and falls back to polling if it breaks.
fal reports no timestamps. What each app takes (its input names and value formats) is
capability data (``capabilities/fal.toml``, ``pika.toml``); an app with no row gets the
prompt and the request's extras only. Wire facts: provider-apis.md §4.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
from httpx_sse import SSEError, aconnect_sse

from abebeats_lab import capabilities
from abebeats_lab._http import error_from, json_body
from abebeats_lab._types import Job, JobState, JobStatus, OutputRef, Route, VideoRequest
from abebeats_lab.errors import ProtocolError, ProviderHTTPError, ProviderTransportError
from abebeats_lab.providers._httpx import HttpxProvider
from abebeats_lab.providers.base import utcnow

__all__ = ["FalProvider", "PikaProvider", "app_root", "build_input", "parse_status"]

_NAME = "fal"
_NAMESPACES = ("workflows", "comfy")
_CANCELED_TYPES = frozenset({"client_cancelled"})
"""``error_type`` values that mean the request was cancelled rather than failed."""
_CANCEL_HARMLESS = frozenset({400, 404})
"""fal answers ALREADY_COMPLETED / NOT_FOUND with these on a finished or unknown request."""
_HANDLES = ("status_url", "response_url", "cancel_url")
_QUIET_LOGS = {"logs": "0"}


def app_root(model_id: str) -> str:
    """``fal-ai/pika/v2.2/text-to-video`` -> ``fal-ai/pika`` (where status and results live)."""
    parts = model_id.strip("/").split("/")
    return "/".join(parts[:3] if parts[0] in _NAMESPACES else parts[:2])


_PIKA_INPUTS = {
    "prompt": "prompt",
    "aspect_ratio": "aspect_ratio",
    "resolution": "resolution",
    "duration_s": "duration",
    "seed": "seed",
    "negative_prompt": "negative_prompt",
    "image": "image_url",
}
"""Pika's input names on fal, for a caller with no capability row at hand."""


def build_input(
    request: VideoRequest, caps: capabilities.Capabilities | None = None
) -> dict[str, Any]:
    """The app input: the route's mapped fields (formatted as its data says), then extras.

    The prompt is always sent, even by a row that maps nothing else; without ``caps``, a
    Pika app's input names are used.
    """
    if caps is None:
        caps = capabilities.Capabilities(
            "fal:*", (), (), (), 0, capabilities.Price(None, "", ""), input_map=_PIKA_INPUTS
        )
    body = {"prompt": request.prompt, **caps.inputs(request)}
    if not request.negative_prompt:
        body.pop(caps.input_map.get("negative_prompt", ""), None)
    return body


def parse_status(data: dict[str, Any]) -> JobStatus:
    """A fal queue status object as a `JobStatus`; unknown words raise `ProtocolError`."""
    word = data.get("status")
    if word == "IN_QUEUE":
        position = data.get("queue_position")
        return JobStatus(
            JobState.QUEUED,
            word,
            queue_position=position if isinstance(position, int) else None,
            raw=data,
        )
    if word == "IN_PROGRESS":
        return JobStatus(JobState.RUNNING, word, raw=data)
    if word == "COMPLETED":
        return _completed(data)
    raise ProtocolError(f"unknown queue status {word!r}", provider=_NAME)


def _completed(data: dict[str, Any]) -> JobStatus:
    error, error_type = _text(data.get("error")), _text(data.get("error_type"))
    if error_type in _CANCELED_TYPES:
        return JobStatus(
            JobState.CANCELED, "COMPLETED", error=error, error_code=error_type, raw=data
        )
    if error or error_type:
        message = str(error or error_type)
        return JobStatus(
            JobState.FAILED, "COMPLETED", error=message, error_code=error_type, raw=data
        )
    return JobStatus(JobState.SUCCEEDED, "COMPLETED", progress=1.0, raw=data)


def _text(value: Any) -> str | None:
    """A field that should be a string, as one (fal's error fields are free-form JSON)."""
    return None if value is None or value == "" else str(value)


def _video_ref(data: dict[str, Any]) -> OutputRef:
    video = data.get("video")
    url = video.get("url") if isinstance(video, dict) else None
    if not isinstance(url, str) or not url:
        raise ProtocolError(f"result without video.url: {str(data)[:200]}", provider=_NAME)
    content_type = video.get("content_type") if isinstance(video, dict) else None
    return OutputRef(
        url=url, content_type=content_type if isinstance(content_type, str) else "video/mp4"
    )


class FalProvider(HttpxProvider):
    """fal.ai's queue API over httpx, for any app id; see the module docstring."""

    name: ClassVar[str] = _NAME

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._key.reveal()}"}

    def _url(self, job: Job, handle: str) -> str:
        """A URL the submit answer gave, if it points at our queue host (it gets our key)."""
        given = job.handles.get(handle, "")
        if given and _same_origin(given, self._base):
            return given
        base = f"{self._base}/{app_root(job.route.model)}/requests/{job.id}"
        return {
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }[handle]

    async def submit(self, request: VideoRequest, route: Route) -> Job:
        """Queue the request; never retried once it may have reached fal."""
        submitted_at = utcnow()
        url = f"{self._base}/{route.model.strip('/')}"
        body = build_input(request, capabilities.capabilities_for(route))
        response = await self._call("POST", url, idempotent=False, json=body)
        data = json_body(response, self.name)
        request_id = data.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise ProtocolError(
                f"submit answer without request_id: {str(data)[:200]}", provider=self.name
            )
        handles = {name: data[name] for name in _HANDLES if isinstance(data.get(name), str)}
        return Job(
            route=route,
            id=request_id,
            request=request,
            submitted_at=submitted_at,
            handles={"request_id": request_id, **handles},
        )

    async def status(self, job: Job) -> JobStatus:
        url = self._url(job, "status_url")
        response = await self._call("GET", url, idempotent=True, params=_QUIET_LOGS)
        return parse_status(json_body(response, self.name))

    def stream(self, job: Job) -> AsyncIterator[JobStatus]:
        """fal's SSE status stream, one `JobStatus` per event; ends after COMPLETED."""
        return self._stream(job)

    async def _stream(self, job: Job) -> AsyncIterator[JobStatus]:
        url = self._url(job, "status_url") + "/stream"
        try:
            async with aconnect_sse(
                self._client(),
                "GET",
                url,
                params=_QUIET_LOGS,
                headers=self._headers(),
                timeout=self._timeout,
            ) as source:
                self._observe(source.response)
                if source.response.status_code >= httpx.codes.BAD_REQUEST:
                    await source.response.aread()
                    raise error_from(source.response, self.name)
                async for event in source.aiter_sse():
                    if event.data:
                        yield parse_status(_event_json(event.data))
        except (httpx.HTTPError, SSEError) as exc:
            raise ProviderTransportError(
                f"status stream broke: {type(exc).__name__}: {exc}", provider=self.name
            ) from exc

    async def outputs(self, job: Job, status: JobStatus) -> list[OutputRef]:
        """GET the result (``response_url``) and read ``video.url``."""
        response = await self._call("GET", self._url(job, "response_url"), idempotent=True)
        return [_video_ref(json_body(response, self.name))]

    async def refresh_outputs(self, job: Job) -> list[OutputRef]:
        """The result fetched again (fal's media URLs are stable, so this rarely differs)."""
        return await self.outputs(job, JobStatus(JobState.SUCCEEDED, "COMPLETED"))

    async def cancel(self, job: Job) -> None:
        """PUT …/cancel; ALREADY_COMPLETED and NOT_FOUND are harmless."""
        try:
            await self._call("PUT", self._url(job, "cancel_url"), idempotent=True)
        except ProviderHTTPError as exc:
            if exc.status_code not in _CANCEL_HARMLESS:
                raise


class PikaProvider(FalProvider):
    """The same fal client under the name ``pika`` (key alias ``PIKA_API_KEY``)."""

    name: ClassVar[str] = "pika"


def _event_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"stream event is not JSON: {text[:80]!r}", provider=_NAME) from exc
    if not isinstance(data, dict):
        raise ProtocolError("stream event is not a JSON object", provider=_NAME)
    return data


def _same_origin(url: str, base: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
