"""Prices as a run uses them: the user's own over the shipped catalogue, and in words.

Prices can be supplied or overridden per route by the user: ``prices.toml`` in the user's
config folder (`config.user_config_dir`) and, winning over it, ``prices=`` / ``--price``.
A user price is one USD rate per second of video, recorded with the source ``user``.
`price_of` answers one (route, resolution, duration, audio) with a `Quote`; `catalogue_text`
says a route's whole catalogue in a line; `priced_routes` lists every route's effective price.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import math
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from abebeats_lab import config, fmt
from abebeats_lab._types import Route, VideoRequest
from abebeats_lab.capabilities.check import one_of
from abebeats_lab.capabilities.table import (
    ALLOWED_FIELD,
    Capabilities,
    Price,
    Quote,
    all_routes,
    capabilities_for,
)
from abebeats_lab.errors import ConfigError, UnknownRouteError, ValidationError

__all__ = [
    "USER_PRICES_FILE",
    "USER_SOURCE",
    "catalogue_text",
    "parse_price",
    "price_of",
    "price_overrides",
    "priced",
    "priced_routes",
    "user_prices",
    "user_prices_path",
]

log = logging.getLogger(__name__)

USER_PRICES_FILE = "prices.toml"
USER_SOURCE = "user"
"""The ``source`` of every price a user supplied (file or option)."""


def user_prices_path() -> Path:
    """Where a user keeps their own prices: ``prices.toml`` in the user's config folder."""
    return config.user_config_dir() / USER_PRICES_FILE


def _checked_price(route: str, raw: Any, where: str) -> tuple[str, float]:
    """A (route, USD per second) pair, or a `ConfigError` saying what is wrong and where."""
    key = _known_route(route, where)
    rate = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if rate is None or not math.isfinite(rate) or rate < 0:
        raise ConfigError(f"{where}: the price of {route} must be USD per second >= 0, got {raw!r}")
    return key, float(rate)


def _known_route(route: str, where: str) -> str:
    """``route`` as prices are keyed, or a `ConfigError` naming ``where`` it came from when no
    such route can exist: an unknown provider, or a model outside a fixed route table
    (Replicate and fal sell any model they host, so there only the provider is checked)."""
    try:
        if "*" not in route:
            key = str(Route.parse(route))
            capabilities_for(key)  # an unknown route names its provider's routes
            return key
        key = route.strip()
        provider = Route.parse(key).provider
        own = [c.pattern for c in all_routes() if c.pattern.startswith(f"{provider}:")]
        if not any("*" in p or fnmatch.fnmatchcase(p, key) for p in own):
            raise UnknownRouteError(key, known=own, hint="every route: `abebeats-lab routes`")
    except UnknownRouteError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return key


def user_prices() -> dict[str, float]:
    """The prices in the user's ``prices.toml`` (``"route" = USD per second``); {} without one."""
    path = user_prices_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the prices ({exc})") from exc
    prices: dict[str, float] = {}
    for route, raw in data.items():
        try:
            _known_route(route, str(path))
        except ConfigError as exc:
            # A catalogue may outlive a route (or hold a typo): said, and the rest still priced,
            # so one stale line does not stop every run.
            log.warning("%s (this price is ignored)", exc)
            continue
        key, rate = _checked_price(route, raw, str(path))
        prices[key] = rate
    return prices


def parse_price(text: str) -> tuple[str, float]:
    """``ROUTE=USD_PER_S`` (the ``--price`` option) as a (route, rate) pair."""
    route, sep, raw = text.rpartition("=")
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0  # refused just below, with the same message as any other bad price
    if not sep or not route.strip() or not math.isfinite(rate) or rate < 0:
        allowed = "ROUTE=USD_PER_S with a price >= 0, e.g. runway:gen4.5=0.12"
        raise ValidationError("--price", text, allowed)
    return _checked_price(route, rate, f"--price {text}")


def price_overrides(prices: Mapping[str, float] | None = None) -> dict[str, Price]:
    """Every user price as a `Price`: the user's file, then ``prices`` (which wins)."""
    today = datetime.now(UTC).date().isoformat()
    merged = user_prices()
    for route, raw in (prices or {}).items():
        key, rate = _checked_price(route, raw, "prices=")
        merged[key] = rate
    return {route: Price(rate, USER_SOURCE, today) for route, rate in merged.items()}


def _user_price(name: str, overrides: Mapping[str, Price]) -> Price | None:
    if name in overrides:
        return overrides[name]
    return next((p for k, p in overrides.items() if fnmatch.fnmatchcase(name, k)), None)


def priced(caps: Capabilities, route: Route | str, overrides: Mapping[str, Price]) -> Capabilities:
    """``caps`` with the user's price for ``route`` where one was given (exact name first)."""
    price = _user_price(str(Route.parse(route)), overrides)
    return caps if price is None else dataclasses.replace(caps, price=price)


def catalogue_text(caps: Capabilities) -> str:
    """A route's price catalogue in words: per resolution, its price without and (where the
    route makes audio) with audio, per duration where that changes the rate, then the sources
    (``unknown: <reason>`` alone when nothing is known)."""
    cells: list[tuple[str, str]] = []
    cited: dict[str, None] = {}
    for resolution in caps.resolutions:
        texts = []
        for audio in (False, True) if caps.audio else (False,):
            quotes = [(d, caps.price.quote(d, resolution, audio)) for d in caps.durations]
            cited.update(dict.fromkeys(_cite(q) for _, q in quotes))
            texts.append(("with audio " if audio else "") + _by_duration(quotes))
        cells.append((resolution, ", ".join(texts)))
    if all(not q.known for q in _all_quotes(caps)) and len(cited) == 1:
        return caps.price.source
    merged: list[tuple[list[str], str]] = []
    for resolution, text in cells:
        if merged and merged[-1][1] == text:
            merged[-1][0].append(resolution)
        else:
            merged.append(([resolution], text))
    listed = "; ".join(f"{','.join(names)} {text}" for names, text in merged)
    return f"{listed} (source: {'; '.join(cited)})"


def _all_quotes(caps: Capabilities) -> list[Quote]:
    audios = (False, True) if caps.audio else (False,)
    return [
        caps.price.quote(d, r, a) for r in caps.resolutions for d in caps.durations for a in audios
    ]


def _cite(quote: Quote) -> str:
    return f"{quote.source}, {quote.date}" if quote.date else quote.source


def _by_duration(quotes: list[tuple[int, Quote]]) -> str:
    """``$0.100/s`` when every duration has that rate (or all are unknown), else each one
    (always for flat per-video prices)."""
    rates = {q.usd_per_s for _, q in quotes}
    if len(rates) == 1 and not any(q.per_video for _, q in quotes):
        return fmt.rate(rates.pop())
    return ", ".join(f"{d} s {fmt.money(q.usd)}" for d, q in quotes)


def price_of(
    route: Route | str,
    *,
    resolution: str | None = None,
    duration_s: int | None = None,
    audio: bool = False,
    prices: Mapping[str, float] | None = None,
) -> Quote:
    """The price of one video on ``route`` with these settings (the route's defaults where
    ``None``), the user's price winning: a `Quote`, unknown with the reason where none is
    known. A setting the route does not offer is a `ValidationError` naming the allowed ones.
    """
    caps = priced(capabilities_for(route), route, price_overrides(prices))
    name = str(Route.parse(route))
    settings = {"duration_s": duration_s, "resolution": resolution}
    for field_name, value in settings.items():
        allowed = getattr(caps, ALLOWED_FIELD[field_name])
        if value is not None and value not in allowed:
            raise ValidationError(field_name, value, one_of(allowed), route=name)
    if audio and not caps.audio:
        raise ValidationError("generate_audio", True, "False: no audio on this route", route=name)
    request = VideoRequest("-", duration_s=duration_s, resolution=resolution, generate_audio=audio)
    return caps.quote(request)


def priced_routes(prices: Mapping[str, float] | None = None) -> list[tuple[str, Capabilities]]:
    """Every route family with its effective price, then each user-priced route not listed."""
    overrides = price_overrides(prices)
    listed = [
        (
            c.pattern,
            dataclasses.replace(c, price=overrides[c.pattern]) if c.pattern in overrides else c,
        )
        for c in all_routes()
    ]
    patterns = {name for name, _ in listed}
    for route in overrides:
        if route not in patterns and "*" not in route:
            listed.append((route, priced(capabilities_for(route), route, overrides)))
    return listed
