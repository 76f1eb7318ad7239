"""What the control panel offers: routes with their key status, and the settings they allow.

Pure functions over capability data and configuration, kept apart from the widgets so the
rules (which routes can run, which values every chosen route accepts) read and test alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abebeats_lab import capabilities, config
from abebeats_lab._types import ROUTE_DEFAULT_FIELDS, Route

__all__ = [
    "Allowed",
    "RouteChoice",
    "allowed_settings",
    "default_routes",
    "route_choice",
]

_FALLBACK_ROUTE = "local:procedural"


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """One route in the picker: can it run, and what the reader should know about it."""

    route: str
    status: str
    """``no key needed``, ``emulated``, ``key set``, ``uses Google ADC`` or ``no key (VAR)``."""
    enabled: bool

    @property
    def label(self) -> str:
        """The checkbox text."""
        return f"{self.route} · {self.status}"


@dataclass(frozen=True, slots=True)
class Allowed:
    """Values every chosen route accepts; ``adapt`` when they share none for some field."""

    durations: tuple[int, ...]
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    audio: bool
    negative_prompt: bool
    adapt: tuple[str, ...] = ()
    """Fields where the routes share no value: each route then takes its nearest value."""
    defaults: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    """Request field (``duration_s``, ...) -> the chosen routes' own defaults, each once."""


def default_routes() -> list[str]:
    """Text-to-video routes with exact capability data.

    Families (``*``) need a concrete model name, and image-to-video routes an image, which
    the panel does not take; both stay reachable through the ``routes`` argument.
    """
    return [
        c.pattern
        for c in capabilities.all_routes()
        if "*" not in c.pattern and not c.image_required
    ]


def route_choice(route: str, *, emulate: bool) -> RouteChoice:
    """Whether ``route`` can run now, and why (never showing a key)."""
    provider = Route.parse(route).provider
    if capabilities.capabilities_for(route).runs_locally:
        return RouteChoice(route, "no key needed", True)
    if emulate:
        return RouteChoice(route, "emulated", True)
    env = config.PROVIDER_ENV.get(provider)
    if env is None:
        return RouteChoice(route, "unknown provider", False)
    if config.key_for(provider, required=False) is not None:
        return RouteChoice(route, "key set", True)
    if env.ambient:
        return RouteChoice(route, f"uses {env.ambient}", True)
    return RouteChoice(route, f"no key ({env.keys[0]})", False)


def _common(values: Iterable[Sequence[object]]) -> list[object]:
    lists = list(values)
    if not lists:
        return []
    shared = [v for v in lists[0] if all(v in other for other in lists[1:])]
    return shared


def allowed_settings(routes: Sequence[str]) -> Allowed:
    """The settings every route in ``routes`` accepts (all of local's when none is chosen)."""
    caps = [capabilities.capabilities_for(r) for r in (routes or [_FALLBACK_ROUTE])]
    adapt: list[str] = []
    fields: dict[str, list[object]] = {}
    for name in ("durations", "aspect_ratios", "resolutions"):
        shared = _common(getattr(c, name) for c in caps)
        if not shared:
            adapt.append(name)
            shared = list(getattr(caps[0], name))
        fields[name] = shared
    return Allowed(
        durations=tuple(int(str(d)) for d in fields["durations"]),
        aspect_ratios=tuple(str(r) for r in fields["aspect_ratios"]),
        resolutions=tuple(str(r) for r in fields["resolutions"]),
        audio=all(c.audio for c in caps),
        negative_prompt=all(c.negative_prompt for c in caps),
        adapt=tuple(adapt),
        defaults={
            n: tuple(dict.fromkeys(c.default(n) for c in caps)) for n in ROUTE_DEFAULT_FIELDS
        },
    )
