"""What the two Google emulators (Gemini's Interactions API, Veo on Vertex) answer alike.

Google APIs name an HTTP status by its ``google.rpc.Code`` word in error bodies; the two
emulators put that word in different fields (Gemini's ``code``, Vertex's ``status``), so each
builds its own body and passes its error builders to the shared fault answers here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from abebeats_lab.emulator.core import EmulatorState, drop_connection, hang

__all__ = ["create_fault", "json_or_none", "malformed_status", "status_fault", "status_word"]

_CODE_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}
_UNAVAILABLE = 503
_UNAVAILABLE_MESSAGE = "The service is currently unavailable."
_MALFORMED_BODY = "<html>upstream connect error</html>"
"""What a proxy in front of Google answers when the service behind it is gone."""


def status_word(http_status: int) -> str:
    """The ``google.rpc.Code`` name Google's error bodies give an HTTP status."""
    return _CODE_NAMES.get(http_status, "UNKNOWN")


async def json_or_none(request: Request) -> Any:
    """The request's JSON body, or None when it is not JSON."""
    try:
        return await request.json()
    except ValueError:
        return None


async def create_fault(state: EmulatorState) -> Response | None:
    """The scenario's faults after a create was accepted: a dropped or a hung connection."""
    sc = state.scenario
    if state.take_fault("drop_create", sc.drop_create):
        return await drop_connection()
    if state.take_fault("hang_create", sc.hang_create):
        return await hang()
    return None


def status_fault(
    state: EmulatorState,
    *,
    error: Callable[[int, str], Response],
    exhausted: Callable[[float], Response],
) -> Response | None:
    """The scenario's refusals of a status read (429, then 503), in this API's error body."""
    sc = state.scenario
    if state.take_fault("status_429", sc.status_429):
        return exhausted(sc.retry_after_s)
    if state.take_fault("status_5xx", sc.status_5xx):
        return error(_UNAVAILABLE, _UNAVAILABLE_MESSAGE)
    return None


def malformed_status(state: EmulatorState) -> Response | None:
    """The scenario's unreadable status answer: HTML labelled as JSON."""
    if state.take_fault("malformed_status", state.scenario.malformed_status):
        return Response(_MALFORMED_BODY, media_type="application/json")
    return None
