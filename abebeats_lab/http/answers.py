"""Reading a provider's answer: a cap on its decoded size, the encodings allowed, its JSON.

Every answer body is read with a cap on its decoded size (`MAX_ANSWER_BYTES`, `read_answer`):
a hostile or broken server cannot make this process hold a gigabyte because it sent a
megabyte of gzip. Past the cap the request fails as that provider's `ProtocolError`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from abebeats_lab.errors import ProtocolError

__all__ = [
    "BOUNDED_ENCODINGS",
    "MAX_ANSWER_BYTES",
    "check_encoding",
    "json_body",
    "read_answer",
    "too_large",
]

MAX_ANSWER_BYTES = 8 * 1024**2
"""Cap on a provider's JSON answer once decoded: statuses and errors are a few KB, and no
provider we speak to puts video bytes in them (Veo does; it has its own cap)."""
BOUNDED_ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
"""Content encodings whose expansion per network chunk is bounded (about 1000:1); others
(``br``, ``zstd``, if their decoders are installed) can inflate one chunk without limit."""
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def too_large(limit: int, provider: str) -> ProtocolError:
    """The error for an answer over the cap (the message names the cap)."""
    return ProtocolError(
        f"answer larger than the {limit}-byte cap on provider answers (decoded); "
        "stopped reading it",
        provider=provider,
    )


def check_encoding(headers: Any, provider: str) -> None:
    """Refuse an answer whose content encoding could inflate without bound."""
    encodings = str(headers.get("content-encoding", "")).lower().split(",")
    unbounded = [e.strip() for e in encodings if e.strip() not in BOUNDED_ENCODINGS]
    if unbounded:
        raise ProtocolError(
            f"answer in content encoding {', '.join(unbounded)!r}, which is not read "
            "(only identity, gzip and deflate)",
            provider=provider,
        )


async def read_answer(
    response: httpx.Response, *, provider: str, limit: int = MAX_ANSWER_BYTES
) -> httpx.Response:
    """Read a streamed answer's body, decoded, up to ``limit`` bytes; return a response that
    holds it (headers kept, minus those of the encoding now undone). The stream is closed.

    Past ``limit`` it raises `ProtocolError` without reading further.
    """
    try:
        check_encoding(response.headers, provider)
        declared = response.headers.get("content-length", "")
        plain = not response.headers.get("content-encoding")
        if plain and declared.isdigit() and int(declared) > limit:
            raise too_large(limit, provider)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise too_large(limit, provider)
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _BODY_HEADERS]
    return httpx.Response(
        response.status_code, headers=headers, content=bytes(body), request=response.request
    )


def json_body(response: httpx.Response, provider: str) -> dict[str, Any]:
    """The response's JSON object, or a ProtocolError that says what was wrong."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        snippet = response.text[:80]
        raise ProtocolError(f"expected JSON, got {snippet!r}", provider=provider) from exc
    except RecursionError as exc:  # json's C parser recurses once per bracket
        raise ProtocolError("answer nested too deeply to read", provider=provider) from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}", provider=provider)
    return data
