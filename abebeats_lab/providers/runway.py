"""The Runway developer API: ``runway:gen4.5``, ``runway:veo3.1_fast`` and friends.

Create with ``POST /v1/text_to_video`` (or ``image_to_video`` when the request has an
image), poll ``GET /v1/tasks/{id}``, cancel with ``DELETE /v1/tasks/{id}`` (only in flight:
on a finished task it deletes the output). Output URLs are signed and expire;
`RunwayProvider.refresh_outputs` fetches the task again for fresh ones.
Wire facts: provider-apis.md §1.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from datetime import datetime
from typing import Any, ClassVar

from abebeats_lab import capabilities
from abebeats_lab._types import Job, JobState, JobStatus, OutputRef, Route, VideoRequest
from abebeats_lab.errors import ProtocolError, ProviderHTTPError, ValidationError
from abebeats_lab.http import SEND_ONCE, RetryPolicy, json_body
from abebeats_lab.providers._httpx import HttpxProvider
from abebeats_lab.providers.base import utcnow

__all__ = [
    "API_VERSION",
    "RATIOS",
    "RunwayProvider",
    "runway_ratio",
]

API_VERSION = "2024-11-06"
_NAME = "runway"
_NOT_FOUND = 404
_TASK_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
"""Runway's task ids are UUIDs; an id from an answer or the store must be one before it goes
into a request path (``../../other`` would send our key to another path)."""

RATIOS: dict[tuple[str, str], str] = {
    ("16:9", "720p"): "1280:720",
    ("9:16", "720p"): "720:1280",
    ("16:9", "1080p"): "1920:1080",
    ("9:16", "1080p"): "1080:1920",
    ("1:1", "720p"): "960:960",
    ("1:1", "1080p"): "1440:1440",
    ("4:3", "720p"): "1104:832",
    ("3:4", "720p"): "832:1104",
    ("21:9", "720p"): "1584:672",
}
"""(aspect ratio, resolution) -> Runway's pixel ``ratio`` field."""

_STATES = {
    "PENDING": JobState.QUEUED,
    "THROTTLED": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELED,
}


def runway_ratio(request: VideoRequest) -> str:
    """Runway's ``ratio`` (``1280:720``) for a request's aspect ratio and resolution."""
    shape = request.shape()
    try:
        return RATIOS[(shape.aspect_ratio, shape.resolution)]
    except KeyError:
        allowed = ", ".join(f"{a} at {r}" for a, r in RATIOS)
        raise ValidationError(
            "aspect_ratio", f"{request.aspect_ratio} at {request.resolution}", allowed
        ) from None


_FIELDS = {
    "prompt": "promptText",
    "duration_s": "duration",
    "seed": "seed",
    "negative_prompt": "negativePrompt",
    "image": "promptImage",
    "generate_audio": "audio",
}
"""Request field -> Runway's camelCase name, for a row that names no ``input_map``."""


def build_payload(request: VideoRequest, route: Route) -> dict[str, Any]:
    """The camelCase create body; optional fields only where the route's model takes them.

    A row's ``input_map`` lists the fields its model accepts (Kling and Wan take no seed);
    without one, `_FIELDS`, less what the row's flags rule out.
    """
    caps = capabilities.capabilities_for(route)
    names = dict(caps.input_map or _FIELDS)
    if not caps.negative_prompt or not request.negative_prompt:
        names.pop("negative_prompt", None)
    if not caps.audio:
        names.pop("generate_audio", None)
    mapped = dataclasses.replace(caps, input_map=names).inputs(request)
    return {"model": route.model, "ratio": runway_ratio(request), **mapped}


def task_path(task_id: str) -> str:
    """``/v1/tasks/{id}`` for a task id of Runway's shape, or a `ProtocolError` naming it."""
    if not _TASK_ID.fullmatch(task_id):
        raise ProtocolError(f"task id {task_id[:80]!r} is not a Runway task id", provider=_NAME)
    return f"/v1/tasks/{urllib.parse.quote(task_id, safe='')}"


def parse_task(data: dict[str, Any]) -> JobStatus:
    """A ``GET /v1/tasks/{id}`` body as a `JobStatus`; unknown words raise `ProtocolError`."""
    word = data.get("status")
    state = _STATES.get(word) if isinstance(word, str) else None
    if state is None:
        raise ProtocolError(f"unknown task status {word!r}", provider=_NAME)
    return JobStatus(
        state,
        str(word),
        progress=_progress(data, state),
        error=_failure(data) if state is JobState.FAILED else None,
        error_code=data.get("failureCode") if state is JobState.FAILED else None,
        created_at=_timestamp(data.get("createdAt")),
        outputs=_outputs(data) if state is JobState.SUCCEEDED else (),
        raw=data,
    )


def _progress(data: dict[str, Any], state: JobState) -> float | None:
    if state is JobState.SUCCEEDED:
        return 1.0
    value = data.get("progress")
    if state is not JobState.RUNNING or not isinstance(value, int | float):
        return None
    return min(1.0, max(0.0, float(value)))


def _failure(data: dict[str, Any]) -> str:
    failure = data.get("failure")
    return failure if isinstance(failure, str) and failure else "failed (no reason given)"


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise ProtocolError(f"createdAt {value!r} is not ISO-8601", provider=_NAME) from exc


def _outputs(data: dict[str, Any]) -> tuple[OutputRef, ...]:
    urls = data.get("output")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ProtocolError(f"SUCCEEDED task without an output list: {urls!r}", provider=_NAME)
    return tuple(OutputRef(url=url, content_type="video/mp4") for url in urls)


class RunwayProvider(HttpxProvider):
    """Runway's task API over httpx; see the module docstring."""

    name: ClassVar[str] = _NAME

    def _setup(self) -> None:
        self._deleted: set[str] = set()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}", "X-Runway-Version": API_VERSION}

    async def submit(self, request: VideoRequest, route: Route) -> Job:
        """Create the task; a create is never retried once it may have reached Runway."""
        endpoint = "/v1/image_to_video" if request.image else "/v1/text_to_video"
        body = build_payload(request, route)
        submitted_at = utcnow()
        response = await self._call("POST", endpoint, idempotent=False, json=body)
        data = json_body(response, _NAME)
        task_id = data.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise ProtocolError(f"create answer without an id: {data!r}"[:200], provider=_NAME)
        return Job(
            route=route,
            id=task_id,
            request=request,
            submitted_at=submitted_at,
            handles={"task_url": f"{self._base}{task_path(task_id)}"},
        )

    async def status(self, job: Job) -> JobStatus:
        """One task read, sent once: the wait loop owns a status request's retries."""
        return await self._task(job, SEND_ONCE)

    async def _task(self, job: Job, policy: RetryPolicy) -> JobStatus:
        try:
            response = await self._call("GET", task_path(job.id), idempotent=True, policy=policy)
        except ProviderHTTPError as exc:
            # Runway may forget a task we deleted: that is our cancel, not a lost job.
            if exc.status_code == _NOT_FOUND and job.id in self._deleted:
                return JobStatus(JobState.CANCELED, "DELETED")
            raise
        return parse_task(json_body(response, _NAME))

    async def cancel(self, job: Job) -> bool:
        """DELETE the task only while it is in flight, which cancels it (confirmed by the
        answer). On a finished task DELETE deletes it and its paid output (provider-apis.md
        §1.5), so the task is read first and a finished one left alone; 404 is fine."""
        try:
            current = await self._task(job, self._retry)  # outside the wait loop: retried here
        except ProviderHTTPError as exc:
            if exc.status_code != _NOT_FOUND:
                raise
            return False
        if current.state.terminal:
            return current.state is JobState.CANCELED
        self._deleted.add(job.id)
        try:
            await self._call("DELETE", task_path(job.id), idempotent=True)
        except ProviderHTTPError as exc:
            if exc.status_code != _NOT_FOUND:
                raise
            return False
        return True

    async def outputs(self, job: Job, status: JobStatus) -> list[OutputRef]:
        """The signed output URLs; fetched again if the status at hand carried none."""
        if status.outputs:
            return list(status.outputs)
        return await self.refresh_outputs(job)

    async def refresh_outputs(self, job: Job) -> list[OutputRef]:
        """Fresh signed URLs: Runway re-signs them on every task fetch."""
        status = await self._task(job, self._retry)  # outside the wait loop: retried here
        return list(status.outputs) if status.state is JobState.SUCCEEDED else []
