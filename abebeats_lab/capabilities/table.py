"""What each route accepts and costs, loaded from the TOML files beside this module.

Capabilities are data, not code branches: one ``[[route]]`` table per route (or per model
family, with a ``*`` pattern, for open catalogues such as Replicate). `validate` checks a
`VideoRequest` against them before anything is sent, so bad input never costs money.
Each route also names its own default duration, ratio and resolution (``defaults``):
`with_defaults` fills in whatever a request leaves ``None``, so an unchosen setting never
makes a route refuse.

Prices are a catalogue keyed by route, resolution, duration and audio on/off: each row's
``price`` has a rate per second (with shorthands for an audio rate, per-resolution rates and
a flat per-video price) and, where the provider prices finer, ``tiers``: entries naming some
of ``resolution``, ``duration_s`` and ``audio`` with their own price (``usd_per_s`` or a flat
``usd`` per video) or an explicit unknown, and their own source and date. `price_of` answers
one (route, resolution, duration, audio) with a `Quote`: a price, or unknown with the reason.

Prices can be supplied or overridden per route by the user: ``prices.toml`` in the user's
config folder (`config.user_config_dir`) and, winning over it, ``prices=`` / ``--price``.
A user price is one USD rate per second of video, recorded with the source ``user``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from abebeats_lab import config, fmt
from abebeats_lab._types import ROUTE_DEFAULT_FIELDS, Route, VideoRequest
from abebeats_lab.errors import ConfigError, UnknownRouteError, ValidationError

__all__ = [
    "USER_PRICES_FILE",
    "USER_SOURCE",
    "Capabilities",
    "Price",
    "PriceTier",
    "Quote",
    "all_routes",
    "capabilities_for",
    "catalogue_text",
    "concrete",
    "model_of",
    "models",
    "parse_price",
    "price_of",
    "price_overrides",
    "priced",
    "priced_routes",
    "routes_for_model",
    "user_prices",
    "user_prices_path",
    "validate",
    "with_defaults",
]

USER_PRICES_FILE = "prices.toml"
USER_SOURCE = "user"
"""The ``source`` of every price a user supplied (file or option)."""
UNKNOWN_PREFIX = "unknown:"
"""How the ``source`` of a price nobody knows begins; the rest is the reason."""

HOUSE_DEFAULTS: dict[str, Any] = {"duration_s": 5, "aspect_ratio": "16:9", "resolution": "720p"}
"""What every request asked for before routes had defaults; a route whose data names no
default for a field takes its allowed value closest to this."""
_ALLOWED_FIELD = {
    "duration_s": "durations",
    "aspect_ratio": "aspect_ratios",
    "resolution": "resolutions",
}


@dataclass(frozen=True, slots=True)
class Quote:
    """The price of one video of given settings on one route: known, or unknown with why."""

    usd: float | None
    """The whole video's price; ``None`` when unknown."""
    usd_per_s: float | None
    source: str
    """Where the price comes from; for an unknown price, ``unknown: <the reason>``."""
    date: str
    per_video: bool = False
    """A flat price per video (``usd_per_s`` is then derived from it)."""

    @property
    def known(self) -> bool:
        """True when a price was found."""
        return self.usd is not None


@dataclass(frozen=True, slots=True)
class PriceTier:
    """One catalogue entry: the settings it covers (``None``: any) and its price there.

    Either ``usd_per_s``, a flat ``usd`` per video, or neither: an explicit unknown, whose
    ``source`` says why (``unknown: ...``). An empty source or date is the row's.
    """

    resolution: str | None = None
    duration_s: int | None = None
    audio: bool | None = None
    usd_per_s: float | None = None
    usd: float | None = None
    source: str = ""
    date: str = ""

    def __post_init__(self) -> None:
        # Shipped data is checked once at load: an entry must price or say why it cannot.
        if self.usd_per_s is not None and self.usd is not None:
            raise ValueError(f"price tier {self}: usd_per_s or usd, not both")
        unpriced = self.usd_per_s is None and self.usd is None
        if unpriced and not self.source.startswith(UNKNOWN_PREFIX):
            raise ValueError(f"price tier {self}: no price and no 'unknown: reason' source")

    def matches(self, duration_s: float, resolution: str, audio: bool) -> bool:
        """True when this entry covers these settings."""
        return (
            (self.resolution is None or self.resolution == resolution)
            and (self.duration_s is None or self.duration_s == duration_s)
            and (self.audio is None or self.audio == audio)
        )


@dataclass(frozen=True, slots=True)
class Price:
    """A route's price catalogue: a rate per second, its shorthands, and finer ``tiers``."""

    usd_per_s: float | None
    """``None`` when no trustworthy price was found; estimates then say "unknown"."""
    source: str
    date: str
    audio_usd_per_s: float | None = None
    """Replaces ``usd_per_s`` when audio is generated, where the provider prices it apart."""
    by_resolution: dict[str, float] = field(default_factory=dict)
    """Replaces ``usd_per_s`` for these resolutions."""
    per_video_usd: float | None = None
    """A flat price per video, for routes priced that way (wins over per-second)."""
    tiers: tuple[PriceTier, ...] = ()
    """Finer entries, first match wins over everything above (see `PriceTier`)."""

    def quote(self, duration_s: float, resolution: str, audio: bool) -> Quote:
        """The price of one video with these settings, or unknown with the reason."""
        tier = next((t for t in self.tiers if t.matches(duration_s, resolution, audio)), None)
        if tier is not None:
            source, date = tier.source or self.source, tier.date or self.date
            return _quote(tier.usd, tier.usd_per_s, duration_s, source, date)
        rate = self.by_resolution.get(resolution, self.usd_per_s)
        if audio and self.audio_usd_per_s is not None:
            rate = self.audio_usd_per_s
        return _quote(self.per_video_usd, rate, duration_s, self.source, self.date)

    def estimate(self, duration_s: float, resolution: str, audio: bool) -> float | None:
        """Estimated USD for one video, or ``None`` when unknown."""
        return self.quote(duration_s, resolution, audio).usd


def _quote(
    per_video: float | None, rate: float | None, duration_s: float, source: str, date: str
) -> Quote:
    if per_video is not None:
        per_s = round(per_video / duration_s, 4) if duration_s else None
        return Quote(per_video, per_s, source, date, per_video=True)
    if rate is None:
        return Quote(None, None, source, date)
    return Quote(round(rate * duration_s, 4), rate, source, date)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one route accepts; loaded from data, see the module docstring."""

    pattern: str
    durations: tuple[int, ...]
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    prompt_max: int
    price: Price
    prompt_units: str = "chars"
    """``chars`` or ``utf16`` (Runway counts UTF-16 code units)."""
    seed_min: int = 0
    seed_max: int = 4_294_967_295
    image: bool = False
    image_required: bool = False
    audio: bool = False
    negative_prompt: bool = True
    cancel: bool = True
    runs_locally: bool = False
    """Runs on this machine: no key, no emulator, no charge (the ``local`` renderer)."""
    concurrency: int = 4
    """Default cap on jobs in flight at once for this route."""
    rate_per_min: int | None = None
    """Default cap on create calls per minute, where the provider documents one."""
    typical_run_s: float = 60.0
    """A prior for the wait schedule until the store has seen this route run."""
    input_map: dict[str, str] = field(default_factory=dict)
    """Request field -> provider input name, for routes whose payload varies by model."""
    input_formats: dict[str, str] = field(default_factory=dict)
    """Request field -> format string, for inputs sent as text (fal's Kling takes its
    duration as ``"5"``: ``"{}"``; its Veo as ``"8s"``: ``"{}s"``)."""
    fixed_inputs: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    """The model this route sells (``veo-3.1-fast``), shared by every reseller's route of it,
    so a comparison can put one model's routes side by side; empty for open catch-alls."""
    checked: bool = True
    """False for a catch-all row: the route's settings and price were not checked."""
    notes: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    """The provider's own default per field (``duration_s``, ``aspect_ratio``, ``resolution``)."""

    def __post_init__(self) -> None:
        # Shipped data is checked once at load: a default the route refuses is a data bug.
        for name, value in self.defaults.items():
            if name not in _ALLOWED_FIELD:
                raise ValueError(f"{self.pattern}: no default exists for {name!r}")
            if value not in getattr(self, _ALLOWED_FIELD[name]):
                raise ValueError(f"{self.pattern}: default {name}={value!r} is not allowed")
        for tier in self.price.tiers:
            for name in ("duration_s", "resolution"):
                value = getattr(tier, name)
                if value is not None and value not in getattr(self, _ALLOWED_FIELD[name]):
                    raise ValueError(f"{self.pattern}: price tier {name}={value!r} not allowed")

    def default(self, name: str) -> Any:
        """This route's default for one of ``ROUTE_DEFAULT_FIELDS``."""
        if name in self.defaults:
            return self.defaults[name]
        return _closest(name, getattr(self, _ALLOWED_FIELD[name]), HOUSE_DEFAULTS[name])

    def fill(self, request: VideoRequest) -> tuple[VideoRequest, dict[str, list[Any]]]:
        """The request with this route's defaults where it left a field ``None``, and
        ``{field: [None, default]}`` for each one filled (a change nobody asked for)."""
        filled = {n: self.default(n) for n in ROUTE_DEFAULT_FIELDS if getattr(request, n) is None}
        return request.replace(**filled), {n: [None, v] for n, v in filled.items()}

    def inputs(self, request: VideoRequest) -> dict[str, Any]:
        """The provider inputs for ``request``: fixed inputs, then each mapped request field
        that is set (formatted where the data says so), then the request's extras."""
        values: dict[str, Any] = {
            "prompt": request.prompt,
            "duration_s": request.duration_s,
            "aspect_ratio": request.aspect_ratio,
            "resolution": request.resolution,
            "seed": request.seed,
            "negative_prompt": request.negative_prompt,
            "image": request.image,
            "generate_audio": request.generate_audio,
        }
        payload = dict(self.fixed_inputs)
        for field_name, input_name in self.input_map.items():
            value = values.get(field_name)
            if value is None:
                continue
            form = self.input_formats.get(field_name)
            payload[input_name] = value if form is None else form.format(value)
        payload.update(request.extras)
        return payload

    def quote(self, request: VideoRequest) -> Quote:
        """The price of one job of this request (route defaults where it sets none)."""
        shape = self.fill(request)[0].shape()
        return self.price.quote(shape.duration_s, shape.resolution, request.generate_audio)

    def estimate_usd(self, request: VideoRequest) -> float | None:
        """Estimated cost of one job for this request (route defaults where it sets none)."""
        return self.quote(request).usd


def _load_file(text: str) -> list[Capabilities]:
    data = tomllib.loads(text)
    out = []
    for entry in data.get("route", []):
        entry = dict(entry)
        price_data = dict(entry.pop("price"))
        # TOML has no null: a price row without usd_per_s means "no trustworthy price found".
        price_data.setdefault("usd_per_s", None)
        tiers = tuple(PriceTier(**tier) for tier in price_data.pop("tiers", ()))
        price = Price(**price_data, tiers=tiers)
        for key in ("durations", "aspect_ratios", "resolutions"):
            entry[key] = tuple(entry[key])
        out.append(Capabilities(price=price, **entry))
    return out


@functools.cache
def _table() -> tuple[Capabilities, ...]:
    folder = resources.files(__package__)
    entries: list[Capabilities] = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".toml"):
            entries.extend(_load_file(item.read_text(encoding="utf-8")))
    return tuple(entries)


def all_routes() -> list[Capabilities]:
    """Every route and route family with data, in file order."""
    return list(_table())


def capabilities_for(route: Route | str) -> Capabilities:
    """The capabilities of one route: an exact entry first, then the first matching pattern."""
    name = str(Route.parse(route))
    table = _table()
    for caps in table:
        if caps.pattern == name:
            return caps
    for caps in table:
        if "*" in caps.pattern and fnmatch.fnmatchcase(name, caps.pattern):
            return caps
    raise UnknownRouteError(name, known=[c.pattern for c in table])


def concrete(caps: Capabilities) -> bool:
    """True for a row naming one route (no ``*`` pattern): one that can be sent to."""
    return "*" not in caps.pattern


def models() -> list[str]:
    """Every model identity named in the data, sorted."""
    return sorted({c.model for c in _table() if c.model})


def routes_for_model(model: str) -> list[Capabilities]:
    """The concrete routes selling ``model``, in file order; `ValidationError` if none."""
    found = [c for c in _table() if c.model == model and concrete(c)]
    if not found:
        raise ValidationError("model", model, ", ".join(models()))
    return found


def model_of(route: Route | str) -> str:
    """The model ``route`` sells, or "" when no row names one (or no row matches)."""
    try:
        return capabilities_for(route).model
    except UnknownRouteError:
        return ""


def _prompt_length(prompt: str, units: str) -> int:
    if units == "utf16":
        return len(prompt.encode("utf-16-le")) // 2
    return len(prompt)


def _one_of(values: tuple[Any, ...]) -> str:
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
            raise ValidationError(field_name, value, _one_of(allowed), route=name)
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
        used = _closest(name, getattr(caps, _ALLOWED_FIELD[name]), asked)
        snapped[name] = used
        if used != asked:
            changes[name] = (asked, used)
    return request.replace(**snapped), changes


def _closest(name: str, allowed: tuple[Any, ...], wanted: Any) -> Any:
    """The allowed value of field ``name`` nearest ``wanted`` (itself when allowed)."""
    if wanted in allowed:
        return wanted
    if name == "duration_s":
        return min(allowed, key=lambda d: (abs(d - wanted), d))
    if name == "aspect_ratio":
        return min(allowed, key=lambda r: abs(_ratio(r) - _ratio(wanted)))
    return min(allowed, key=lambda r: abs(_lines(r) - _lines(wanted)))


def _ratio(text: str) -> float:
    width, _, height = text.partition(":")
    try:
        return float(width) / float(height)
    except (ValueError, ZeroDivisionError):
        return 1.0


def _lines(text: str) -> int:
    digits = "".join(ch for ch in text if ch in string.digits)  # not isdigit(): "²" is one
    return 2160 if text.lower() == "4k" else int(digits or 0)


def user_prices_path() -> Path:
    """Where a user keeps their own prices: ``prices.toml`` in the user's config folder."""
    return config.user_config_dir() / USER_PRICES_FILE


def _checked_price(route: str, raw: Any, where: str) -> tuple[str, float]:
    """A (route, USD per second) pair, or a `ConfigError` saying what is wrong and where."""
    key = route.strip() if "*" in route else str(Route.parse(route))
    rate = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if rate is None or not math.isfinite(rate) or rate < 0:
        raise ConfigError(f"{where}: the price of {route} must be USD per second >= 0, got {raw!r}")
    return key, float(rate)


def user_prices() -> dict[str, float]:
    """The prices in the user's ``prices.toml`` (``"route" = USD per second``); {} without one."""
    path = user_prices_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the prices ({exc})") from exc
    return dict(_checked_price(route, raw, str(path)) for route, raw in data.items())


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
        allowed = getattr(caps, _ALLOWED_FIELD[field_name])
        if value is not None and value not in allowed:
            raise ValidationError(field_name, value, _one_of(allowed), route=name)
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
        for c in _table()
    ]
    patterns = {name for name, _ in listed}
    for route in overrides:
        if route not in patterns and "*" not in route:
            listed.append((route, priced(capabilities_for(route), route, overrides)))
    return listed
