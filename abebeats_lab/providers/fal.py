"""fal.ai's queue, for any fal video app: ``fal:<app-id>``, and ``pika:`` for Pika's apps.

Submit with ``POST {queue}/{app_id}``; status, result and cancel live under the app root
(``{queue}/fal-ai/pika/requests/{id}``), whose URLs the submit answer carries and the job
keeps, so a resumed run re-attaches without rebuilding them. fal pushes status over SSE
(``…/status/stream``); `waiting.wait` follows it and falls back to polling if it breaks.
fal reports no timestamps. What each app takes (its input names and value formats) is
capability data (``capabilities/fal.toml``, ``pika.toml``); an app with no row gets the
prompt and the request's extras only. Wire facts: provider-apis.md §4.

The stream is read with caps (`MAX_EVENT_BYTES` per event, `MAX_STREAM_BYTES` in all), as
every answer is (`http.read_answer`), and request ids are checked before they go into a path.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
from httpx_sse import SSEError, aconnect_sse

from abebeats_lab import capabilities
from abebeats_lab._types import (
    Job,
    JobState,
    JobStatus,
    OutputRef,
    Route,
    VideoRequest,
    reported_usage,
)
from abebeats_lab.errors import (
    ProtocolError,
    ProviderHTTPError,
    ProviderTransportError,
    ValidationError,
)
from abebeats_lab.http import SEND_ONCE, check_encoding, error_from, json_body, read_answer
from abebeats_lab.providers._httpx import HttpxProvider
from abebeats_lab.providers.base import utcnow

__all__ = [
    "USAGE_FIELDS",
    "FalProvider",
    "PikaProvider",
    "app_root",
    "build_input",
    "parse_status",
]

_NAME = "fal"
USAGE_FIELDS = ("inference_time",)
"""What a COMPLETED status's ``metrics`` documents a job used (seconds, provider-apis.md §4.3);
fal's result carries no usage we found documented."""
_NAMESPACES = ("workflows", "comfy")
_CANCELED_TYPES = frozenset({"client_cancelled"})
"""``error_type`` values that mean the request was cancelled rather than failed."""
_CANCEL_HARMLESS = frozenset({400, 404})
"""Cancel answers for a finished (ALREADY_COMPLETED) or unknown request: nothing to stop."""
_CANCEL_CONFIRMED = "OK"
"""The cancel answer that means the request will not run; CANCELLATION_REQUESTED does not."""
"""fal answers ALREADY_COMPLETED / NOT_FOUND with these on a finished or unknown request."""
_HANDLES = ("status_url", "response_url", "cancel_url")
_QUIET_LOGS = {"logs": "0"}
MAX_EVENT_BYTES = 1024**2
"""One status event is a few hundred bytes (logs are off)."""
MAX_STREAM_BYTES = 32 * 1024**2
"""All events of one stream: hours of one event a second still fit."""
_EVENT_STREAM = "text/event-stream"
_APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)+")
"""``owner/app[/path...]``: every segment a plain name, so the app id stays in its URL path."""
_APP_FORM = "<owner>/<app>[/<path>], a fal app id such as fal-ai/pika/v2.2/text-to-video"
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
"""fal's request ids are UUIDs; anything that could leave a path segment is refused."""


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
    usage = reported_usage(data.get("metrics"), USAGE_FIELDS)
    if error_type in _CANCELED_TYPES:
        return JobStatus(
            JobState.CANCELED,
            "COMPLETED",
            error=error,
            error_code=error_type,
            usage=usage,
            raw=data,
        )
    if error or error_type:
        message = str(error or error_type)
        return JobStatus(
            JobState.FAILED,
            "COMPLETED",
            error=message,
            error_code=error_type,
            usage=usage,
            raw=data,
        )
    return JobStatus(JobState.SUCCEEDED, "COMPLETED", progress=1.0, usage=usage, raw=data)


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

    @classmethod
    def validate(cls, request: VideoRequest, route: Route) -> capabilities.Capabilities:
        if not _APP_ID.fullmatch(route.model):
            raise ValidationError("route", str(route), f"{route.provider}:{_APP_FORM}")
        return super().validate(request, route)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Key {self._key.reveal()}"}

    def _url(self, job: Job, handle: str) -> str:
        """A URL the submit answer gave, if it points at our queue host (it gets our key) and
        at this request (no dot segments, the request id as a whole segment)."""
        segment = urllib.parse.quote(checked_id(job.id), safe="")
        given = job.handles.get(handle, "")
        if given and _same_origin(given, self._base) and _names_request(given, segment):
            return given
        base = f"{self._base}/{app_root(job.route.model)}/requests/{segment}"
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
        checked_id(request_id)
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
        response = await self._call(
            "GET", url, idempotent=True, policy=SEND_ONCE, params=_QUIET_LOGS
        )
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
                    raise error_from(
                        await read_answer(source.response, provider=self.name), self.name
                    )
                async for data in _event_data(source.response):
                    yield parse_status(_event_json(data))
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

    async def cancel(self, job: Job) -> bool:
        """PUT …/cancel; confirmed only by ``OK`` (a queued request removed). A running one
        answers CANCELLATION_REQUESTED: fal only signals the app, which may still finish.
        ALREADY_COMPLETED and NOT_FOUND are harmless."""
        try:
            response = await self._call("PUT", self._url(job, "cancel_url"), idempotent=True)
        except ProviderHTTPError as exc:
            if exc.status_code not in _CANCEL_HARMLESS:
                raise
            return False
        try:
            return json_body(response, self.name).get("status") == _CANCEL_CONFIRMED
        except ProtocolError:  # an answer we cannot read confirms nothing
            return False


async def _event_data(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event, read with `MAX_EVENT_BYTES` per event and
    `MAX_STREAM_BYTES` in all (httpx-sse buffers a line of any length)."""
    if _EVENT_STREAM not in response.headers.get("content-type", ""):
        raise SSEError(f"expected {_EVENT_STREAM}, got {response.headers.get('content-type')!r}")
    check_encoding(response.headers, _NAME)
    pending, data, total = bytearray(), bytearray(), 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > MAX_STREAM_BYTES:
            raise _over("the stream", MAX_STREAM_BYTES)
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[:end]).rstrip(b"\r")
            del pending[: end + 1]
            if not line and data:
                yield data.decode("utf-8", "replace")
                data.clear()
            elif line.startswith(b"data:"):
                value = line[len(b"data:") :]
                data += (b"\n" if data else b"") + value.removeprefix(b" ")
        if len(pending) + len(data) > MAX_EVENT_BYTES:
            raise _over("one event", MAX_EVENT_BYTES)


def _over(what: str, limit: int) -> ProtocolError:
    return ProtocolError(
        f"status stream: {what} is larger than the {limit}-byte cap; stopped reading",
        provider=_NAME,
    )


def checked_id(request_id: str) -> str:
    """A request id of fal's shape, or a `ProtocolError` naming the one given."""
    if not _REQUEST_ID.fullmatch(request_id):
        raise ProtocolError(
            f"request id {request_id[:80]!r} is not a fal request id", provider=_NAME
        )
    return request_id


def _names_request(url: str, segment: str) -> bool:
    path = urllib.parse.urlsplit(url).path
    parts = path.split("/")
    return segment in parts and not {".", ".."} & set(parts) and "%" not in path


class PikaProvider(FalProvider):
    """The same fal client under the name ``pika`` (key alias ``PIKA_API_KEY``)."""

    name: ClassVar[str] = "pika"


def _event_json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"stream event is not JSON: {text[:80]!r}", provider=_NAME) from exc
    except RecursionError as exc:
        raise ProtocolError("stream event nested too deeply to read", provider=_NAME) from exc
    if not isinstance(data, dict):
        raise ProtocolError("stream event is not a JSON object", provider=_NAME)
    return data


def _same_origin(url: str, base: str) -> bool:
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)
