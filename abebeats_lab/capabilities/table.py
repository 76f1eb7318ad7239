"""The route table: what each route accepts and costs, loaded from the TOML files beside it.

Capabilities are data, not code branches: one ``[[route]]`` table per route (or per model
family, with a ``*`` pattern, for open catalogues such as Replicate), read into `Capabilities`.
Each route also names its own default duration, ratio and resolution (``defaults``); a field
it names none for takes its allowed value closest to `HOUSE_DEFAULTS`.

Prices are a catalogue keyed by route, resolution, duration and audio on/off: each row's
``price`` (`Price`) has a rate per second (with shorthands for an audio rate, per-resolution
rates and a flat per-video price) and, where the provider prices finer, ``tiers``
(`PriceTier`): entries naming some of ``resolution``, ``duration_s`` and ``audio`` with their
own price (``usd_per_s`` or a flat ``usd`` per video) or an explicit unknown, and their own
source and date. `Price.quote` answers one setting with a `Quote`: a price, or unknown with the
reason.
"""

from __future__ import annotations

import fnmatch
import functools
import string
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from abebeats_lab._types import ROUTE_DEFAULT_FIELDS, Route, VideoRequest
from abebeats_lab.errors import UnknownRouteError, ValidationError

__all__ = [
    "ALLOWED_FIELD",
    "HOUSE_DEFAULTS",
    "UNKNOWN_PREFIX",
    "Capabilities",
    "Price",
    "PriceTier",
    "Quote",
    "all_routes",
    "capabilities_for",
    "closest",
    "concrete",
    "model_of",
    "models",
    "routes_for_model",
]

UNKNOWN_PREFIX = "unknown:"
"""How the ``source`` of a price nobody knows begins; the rest is the reason."""

HOUSE_DEFAULTS: dict[str, Any] = {"duration_s": 5, "aspect_ratio": "16:9", "resolution": "720p"}
"""What every request asked for before routes had defaults; a route whose data names no
default for a field takes its allowed value closest to this."""
ALLOWED_FIELD = {
    "duration_s": "durations",
    "aspect_ratio": "aspect_ratios",
    "resolution": "resolutions",
}
"""Request field -> the `Capabilities` field listing the values a route allows for it."""


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
            if name not in ALLOWED_FIELD:
                raise ValueError(f"{self.pattern}: no default exists for {name!r}")
            if value not in getattr(self, ALLOWED_FIELD[name]):
                raise ValueError(f"{self.pattern}: default {name}={value!r} is not allowed")
        for tier in self.price.tiers:
            for name in ("duration_s", "resolution"):
                value = getattr(tier, name)
                if value is not None and value not in getattr(self, ALLOWED_FIELD[name]):
                    raise ValueError(f"{self.pattern}: price tier {name}={value!r} not allowed")

    def default(self, name: str) -> Any:
        """This route's default for one of ``ROUTE_DEFAULT_FIELDS``."""
        if name in self.defaults:
            return self.defaults[name]
        return closest(name, getattr(self, ALLOWED_FIELD[name]), HOUSE_DEFAULTS[name])

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
    parsed = Route.parse(route)
    name = str(parsed)
    table = _table()
    for caps in table:
        if caps.pattern == name:
            return caps
    for caps in table:
        if "*" in caps.pattern and fnmatch.fnmatchcase(name, caps.pattern):
            return caps
    # The provider's own routes: the whole table would bury the one line that matters.
    own = [c.pattern for c in table if c.pattern.startswith(f"{parsed.provider}:")]
    if not own:  # not a provider at all: name the providers
        own = sorted({f"{c.pattern.partition(':')[0]}:<model>" for c in table})
    raise UnknownRouteError(name, known=own, hint="every route: `abebeats-lab routes`")


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


def closest(name: str, allowed: tuple[Any, ...], wanted: Any) -> Any:
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
