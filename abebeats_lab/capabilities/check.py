"""A request checked against a route before anything is sent, so bad input never costs money.

`validate` refuses what the route does not accept, naming the allowed values; `with_defaults`
fills in what a request leaves ``None`` with the route's defaults, so an unchosen setting never
makes a route refuse; `nearest` snaps a comparison's common settings to what each route allows.
"""

from __future__ import annotations

from typing import Any

from abebeats_lab._types import ROUTE_DEFAULT_FIELDS, Route, VideoRequest
from abebeats_lab.capabilities.table import (
    ALLOWED_FIELD,
    Capabilities,
    capabilities_for,
    closest,
)
from abebeats_lab.errors import ValidationError

__all__ = ["nearest", "one_of", "validate", "with_defaults"]


def _prompt_length(prompt: str, units: str) -> int:
    if units == "utf16":
        return len(prompt.encode("utf-16-le")) // 2
    return len(prompt)


def one_of(values: tuple[Any, ...]) -> str:
    """The allowed values as an error message lists them."""
    return ", ".join(str(v) for v in values)


def with_defaults(
    request: VideoRequest, route: Route | str
) -> tuple[VideoRequest, dict[str, list[Any]]]:
    """``request`` with ``route``'s defaults where it leaves a field ``None``, and what was
    filled in as ``{field: [None, default]}`` (the shape of a row's ``adjusted``)."""
    return capabilities_for(route).fill(request)


def validate(request: VideoRequest, route: Route | str) -> Capabilities:
    """Raise `ValidationError` naming the field, value and allowed values; else return caps.

    A duration, ratio or resolution left ``None`` passes: the route's default fills it in.
    """
    caps = capabilities_for(route)
    request = caps.fill(request)[0]
    name = str(Route.parse(route))
    length = _prompt_length(request.prompt, caps.prompt_units)
    if not request.prompt.strip():
        raise ValidationError("prompt", request.prompt, "a non-empty prompt", route=name)
    if length > caps.prompt_max:
        limit = f"at most {caps.prompt_max} {caps.prompt_units} (got {length})"
        raise ValidationError("prompt", request.prompt[:40] + "…", limit, route=name)
    checks: list[tuple[str, Any, tuple[Any, ...]]] = [
        ("duration_s", request.duration_s, caps.durations),
        ("aspect_ratio", request.aspect_ratio, caps.aspect_ratios),
        ("resolution", request.resolution, caps.resolutions),
    ]
    for field_name, value, allowed in checks:
        if value not in allowed:
            raise ValidationError(field_name, value, one_of(allowed), route=name)
    if request.seed is not None and not caps.seed_min <= request.seed <= caps.seed_max:
        raise ValidationError("seed", request.seed, f"{caps.seed_min}..{caps.seed_max}", route=name)
    if request.image and not caps.image:
        raise ValidationError("image", "<image>", "none: this route is text-to-video", route=name)
    if caps.image_required and not request.image:
        raise ValidationError("image", None, "an image: this route is image-to-video", route=name)
    if request.generate_audio and not caps.audio:
        raise ValidationError("generate_audio", True, "False: no audio on this route", route=name)
    if request.negative_prompt and not caps.negative_prompt:
        raise ValidationError("negative_prompt", request.negative_prompt, "none", route=name)
    return caps


def nearest(request: VideoRequest, route: Route | str) -> tuple[VideoRequest, dict[str, Any]]:
    """Snap duration, ratio and resolution to the nearest values the route allows.

    Returns the adjusted request and ``{field: (asked, used)}`` for each change, so a
    comparison can record honestly where a route could not take the common settings.
    A field left ``None`` takes the route's default and is not reported here.
    """
    caps = capabilities_for(route)
    request = caps.fill(request)[0]
    changes: dict[str, Any] = {}
    snapped: dict[str, Any] = {}
    for name in ROUTE_DEFAULT_FIELDS:
        asked = getattr(request, name)
        used = closest(name, getattr(caps, ALLOWED_FIELD[name]), asked)
        snapped[name] = used
        if used != asked:
            changes[name] = (asked, used)
    return request.replace(**snapped), changes
