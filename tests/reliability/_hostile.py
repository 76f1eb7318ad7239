"""A hostile provider: one loopback server that speaks just enough of all four providers'
create calls to hand out a job, then answers everything else the way the test asks.

Modes (`Hostile.mode`):

- ``ok``: statuses say done, with an output URL on this server (``/video.mp4``), which
  trickles one byte at a time while `Hostile.trickle` is set, and answers 503 (with
  ``Retry-After: 0``) while `Hostile.busy` is set.
- ``bomb``: every status is 1 GiB of zeros, gzip-encoded on the fly (about 1 MB on the wire),
  SSE included; nothing is stored, the zeros are compressed as they are sent.
- ``big``: every status is 300 MB of plain spaces, chunked (no declared length).
- ``nested``: every status is 200,000 nested brackets.
- ``echo``: every request (creates included) is refused with a 403 whose body echoes the
  ``Authorization`` header, plain and base64-encoded.
- ``bad-id``: creates answer with an id that climbs out of the path (``../../../out/html``).

Every request is recorded (method, path, headers) so a test can say what the provider got.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from abebeats_lab.media.render import render_video

MIB = 1024**2
BOMB_BYTES = 1024 * MIB
BIG_BYTES = 300 * MIB
NESTING = 200_000
GZIP_WBITS = 31
"""zlib's window bits for a gzip wrapper."""
TRICKLE_EVERY_S = 0.5
BAD_ID = "../../../out/html"
BAD_OPERATION = "projects/p/../../../out/html/operations/1"
"""A Vertex operation name that climbs out of genai's fetch path."""
PROJECT = "hostile-project"
VIDEO = render_video(prompt="hostile", seed=3, duration_s=1, width=320, height=180)
CREATE_PATHS = {
    "runway": "/v1/text_to_video",
    "pika": "/fal-ai/pika/v2.2/text-to-video",
    "replicate": "/v1/models/google/veo-3-fast/predictions",
}
VEO_CREATE = ":predictLongRunning"


@dataclass(frozen=True)
class Seen:
    """One request as the server got it."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Hostile:
    """The server's script and what it saw; see the module docstring."""

    mode: str = "ok"
    trickle: bool = False
    busy: bool = False
    url: str = ""
    outputs_at: str = ""
    """Where output URLs point (default: this server)."""
    seen: list[Seen] = field(default_factory=list)

    def creates(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and _create_of(s.path)]

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            path = request.url.path
            self.seen.append(Seen(request.method, path, dict(request.headers)))
            if self.mode == "echo":
                return _echo(request)
            if path == "/video.mp4" and self.busy:
                return Response("busy", status_code=503, headers={"retry-after": "0"})
            if path == "/video.mp4":
                return _video(self.trickle)
            provider = _create_of(path) if request.method == "POST" else None
            if provider is not None:
                return self._created(provider)
            return self._status(path)

        methods = ["GET", "POST", "PUT", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", handle, methods=methods)])

    def _created(self, provider: str) -> Response:
        job_id = BAD_ID if self.mode == "bad-id" else _id_for(provider)
        if provider == "runway":
            return JSONResponse({"id": job_id})
        if provider == "pika":
            return JSONResponse({"request_id": job_id})
        if provider == "replicate":
            return JSONResponse(_prediction(job_id, "starting"))
        return JSONResponse({"name": BAD_OPERATION if self.mode == "bad-id" else job_id})

    def _status(self, path: str) -> Response:
        stream = path.endswith("/status/stream")
        if self.mode == "bomb":
            return _bomb(stream)
        if self.mode == "big":
            return StreamingResponse(_spaces(BIG_BYTES), media_type="application/json")
        if self.mode == "nested":
            text = "[" * NESTING + "]" * NESTING
            if stream:
                return Response(f"data: {text}\n\n", media_type="text/event-stream")
            return Response(text, media_type="application/json")
        return self._done(path, stream)

    def _done(self, path: str, stream: bool) -> Response:
        video = f"{self.outputs_at or self.url}/video.mp4"
        if path.startswith("/v1/tasks/"):
            task = {"id": path.rsplit("/", 1)[1], "status": "SUCCEEDED", "output": [video]}
            return JSONResponse({**task, "createdAt": _now()})
        if path.startswith("/v1/predictions/"):
            prediction = _prediction(path.rsplit("/", 1)[1], "succeeded")
            return JSONResponse({**prediction, "output": video})
        if "/requests/" in path and (stream or path.endswith("/status")):
            body = json.dumps({"status": "COMPLETED"})
            if stream:
                return Response(f"data: {body}\n\n", media_type="text/event-stream")
            return Response(body, media_type="application/json")
        if "/requests/" in path:
            return JSONResponse({"video": {"url": video, "content_type": "video/mp4"}})
        return JSONResponse({"error": {"code": 404, "message": "no such thing"}}, 404)


def _create_of(path: str) -> str | None:
    for provider, create in CREATE_PATHS.items():
        if path == create:
            return provider
    return "veo" if path.endswith(VEO_CREATE) else None


def _id_for(provider: str) -> str:
    if provider == "replicate":
        return uuid.uuid4().hex[:26]
    if provider == "veo":
        return (
            f"projects/{PROJECT}/locations/us-central1/publishers/google/models/"
            f"veo-3.1-fast-generate-001/operations/{uuid.uuid4()}"
        )
    return str(uuid.uuid4())


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _prediction(prediction_id: str, status: str) -> dict[str, object]:
    return {
        "id": prediction_id,
        "model": "google/veo-3-fast",
        "version": "hidden",
        "status": status,
        "input": {},
        "output": None,
        "logs": "",
        "error": None,
        "created_at": _now(),
        "urls": {},
    }


def _echo(request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    key = auth.partition(" ")[2]
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    echoed = f"you sent Authorization: {auth} (basic {basic})"
    body = {
        "title": "Forbidden",
        "detail": echoed,
        "error": {"code": 403, "message": echoed, "status": "PERMISSION_DENIED"},
        "failure": echoed,
    }
    return JSONResponse(body, status_code=403)


async def _gzipped(prefix: bytes, fill: bytes, total: int) -> AsyncIterator[bytes]:
    """``prefix`` then ``total`` bytes of ``fill``, gzip-compressed as they are sent."""
    packer = zlib.compressobj(9, zlib.DEFLATED, GZIP_WBITS)
    block = fill * MIB
    yield packer.compress(prefix)
    for _ in range(total // MIB):
        packed = packer.compress(block)
        if packed:
            yield packed
        await asyncio.sleep(0)
    yield packer.flush()


def _bomb(stream: bool) -> Response:
    """1 GiB of zeros (a status) or of ``0`` characters in one unending SSE data line."""
    headers = {"content-encoding": "gzip"}
    if stream:
        body = _gzipped(b"data: ", b"0", BOMB_BYTES)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)
    body = _gzipped(b"", b"\0", BOMB_BYTES)
    return StreamingResponse(body, media_type="application/json", headers=headers)


async def _spaces(total: int) -> AsyncIterator[bytes]:
    chunk = b" " * MIB
    for _ in range(total // MIB):
        yield chunk
        await asyncio.sleep(0)


def _video(trickle: bool) -> Response:
    headers = {"content-length": str(len(VIDEO))}
    if not trickle:
        return Response(VIDEO, media_type="video/mp4")
    return StreamingResponse(_trickled(VIDEO), media_type="video/mp4", headers=headers)


async def _trickled(data: bytes) -> AsyncIterator[bytes]:
    for index in range(len(data)):
        yield data[index : index + 1]
        await asyncio.sleep(TRICKLE_EVERY_S)
