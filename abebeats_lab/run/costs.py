"""Every cost figure: the guard before any submit, and the per-route figures every view shows.

Prices are estimates from the capability data (per second of video, with audio and
resolution tiers where they differ) or from the user (source ``user``), each with its source
and date. Emulated and local routes are charged nothing; their would-be price is still
computed and kept apart, so a demo shows what the same comparison would cost for real.

`route_cost` is the one function behind every per-route cost figure: the CLI summary, the
`Comparison`, the report, its cost chart and the panel all call it. Its price per second is
the price of the settings asked (what the job costs per second on the real route), so a route
shows its known price even when none of its jobs delivered a video, and a route with no
known price says so (``None``), never zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from abebeats_lab import fmt
from abebeats_lab._types import VideoRequest
from abebeats_lab.capabilities import USER_SOURCE, Capabilities
from abebeats_lab.errors import CostLimitError

__all__ = [
    "CostEstimate",
    "JobCost",
    "RouteCost",
    "bound_text",
    "check_limit",
    "emulated_limit_note",
    "job_cost",
    "route_cost",
    "total",
    "usage_text",
]

NOTE_ESTIMATE = "estimate"
NOTE_EMULATED = "emulated: not charged"
NOTE_LOCAL = "local: free"
NOTE_NO_JOB = "no job made: not charged"
ZERO_USD = "$0.00"


@dataclass(frozen=True, slots=True)
class JobCost:
    """The cost figures of one planned job."""

    charged_usd: float | None
    """What the job is expected to be charged (0 when emulated or local; None if unknown)."""
    estimate_usd: float | None
    """The price table's estimate for the real route (the would-be price when emulated)."""
    note: str
    source: str
    date: str


def job_cost(caps: Capabilities, request: VideoRequest, *, emulated: bool) -> JobCost:
    """Cost figures of one job of ``request`` on a route with ``caps`` (the source and date
    are those of the catalogue entry that priced these settings)."""
    quote = caps.quote(request)
    estimate = quote.usd
    charged: float | None
    if caps.runs_locally:
        charged, note = 0.0, NOTE_LOCAL
    elif emulated:
        charged, note = 0.0, NOTE_EMULATED
    else:
        charged, note = estimate, NOTE_ESTIMATE
    return JobCost(charged, estimate, note, quote.source, quote.date)


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """The estimated cost of a whole comparison, per route and in total."""

    charged_usd: float
    """Sum of the known charged estimates."""
    would_be_usd: float
    """Sum of the known real-route estimates (what it would cost without emulation)."""
    per_route: dict[str, float] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    """Charged routes with no trustworthy price: the total is a lower bound."""
    unknown_would_be: tuple[str, ...] = ()
    """Routes with no real-route price (emulated or not): ``would_be_usd`` is a lower bound."""

    def describe(self) -> str:
        """One line for a plan printout."""
        text = f"estimated cost {bound_text(self.charged_usd, partial=bool(self.unknown))}"
        if self.would_be_usd != self.charged_usd or self.unknown_would_be != self.unknown:
            text += f"; on the real routes {self.would_be_text()}"
        missing = tuple(dict.fromkeys((*self.unknown, *self.unknown_would_be)))
        if missing:
            text += f"; {_no_price(missing)}"
        return text

    def would_be_text(self) -> str:
        """What the same jobs would cost on the real routes: ``$0.48``, ``at least $0.48``
        or ``an unknown amount`` (`bound_text`)."""
        return bound_text(self.would_be_usd, partial=bool(self.unknown_would_be))


def bound_text(known_usd: float, *, partial: bool) -> str:
    """A total in words: ``$0.48``; where some prices are unknown (``partial``) ``at least
    $0.48``, or ``an unknown amount`` when the known part rounds to nothing (``at least
    $0.00`` says nothing)."""
    amount = f"${known_usd:.2f}"
    if not partial:
        return amount
    return f"at least {amount}" if amount != ZERO_USD else "an unknown amount"


def _no_price(routes: Iterable[str]) -> str:
    return f"no price known for {', '.join(routes)}: supply one with --price ROUTE=USD_PER_S"


def total(costs: Iterable[tuple[str, JobCost]]) -> CostEstimate:
    """Add up ``(route, cost)`` pairs."""
    charged = would_be = 0.0
    per_route: dict[str, float] = {}
    unknown: dict[str, None] = {}
    unknown_would_be: dict[str, None] = {}
    for route, cost in costs:
        if cost.charged_usd is None:
            unknown[route] = None
        else:
            charged += cost.charged_usd
            per_route[route] = round(per_route.get(route, 0.0) + cost.charged_usd, 4)
        if cost.estimate_usd is None:
            unknown_would_be[route] = None
        else:
            would_be += cost.estimate_usd
    return CostEstimate(
        round(charged, 4), round(would_be, 4), per_route, tuple(unknown), tuple(unknown_would_be)
    )


def check_limit(estimate: CostEstimate, limit_usd: float | None) -> None:
    """Raise `CostLimitError` when the estimate is over the limit or cannot be bounded."""
    if limit_usd is None:
        return
    if estimate.unknown:
        detail = _no_price(estimate.unknown)
        raise CostLimitError(None, limit_usd, detail)
    if estimate.charged_usd > limit_usd:
        raise CostLimitError(estimate.charged_usd, limit_usd)


def emulated_limit_note(estimate: CostEstimate, limit_usd: float) -> str:
    """The one line an emulated run gives instead of applying a cost limit it has no use for."""
    verdict = "over the limit" if estimate.would_be_usd > limit_usd else "within it"
    if estimate.unknown_would_be:
        verdict = _no_price(estimate.unknown_would_be)
    return (
        f"max cost ${limit_usd:.2f} not applied: emulated runs are free; on the real routes "
        f"this run would cost {estimate.would_be_text()} ({verdict})"
    )


@dataclass(frozen=True, slots=True)
class RouteCost:
    """The cost figures of one route's jobs, as every view shows them."""

    usd_per_s: float | None
    """The real route's price per second of the video asked for; None when unknown."""
    source: str
    """Where that price comes from (``user`` for a price the user supplied)."""
    charged_usd: float | None
    """What the submitted jobs are charged (0 when emulated or local); None when unknown."""
    would_be_usd: float | None
    """What the submitted jobs cost on the real route; None when unknown."""
    planned_usd: float | None
    """What every job of the plan is charged, submitted or not; None when unknown."""
    note: str
    """How to read the charge: ``estimate``, ``emulated: not charged`` or ``local: free``."""
    usage: dict[str, float] = field(default_factory=dict)
    """What the provider reported the jobs used, summed per field (see `JobRow.usage`)."""

    def price_text(self) -> str:
        """``$0.120/s``, ``$0.100/s (user price)`` or ``unknown``."""
        text = fmt.rate(self.usd_per_s)
        return f"{text} (user price)" if self.usd_per_s is not None and self.user else text

    @property
    def user(self) -> bool:
        """True when the user supplied the price."""
        return self.source == USER_SOURCE


def _field(row: Mapping[str, Any], name: str) -> Any:
    """A row field with pandas' NaN read as missing."""
    raw = row.get(name)
    return None if isinstance(raw, float) and raw != raw else raw


def _known_sum(values: list[float | None]) -> float | None:
    """The sum when every value is known, else None: an unknown price never adds up to zero."""
    known = [v for v in values if v is not None]
    return round(sum(known), 4) if len(known) == len(values) else None


def _asked_seconds(row: Mapping[str, Any]) -> float | None:
    settings = _field(row, "settings")
    return fmt.number(settings.get("duration_s")) if isinstance(settings, Mapping) else None


def _per_second(rows: list[Mapping[str, Any]]) -> float | None:
    estimates = [fmt.number(_field(r, "cost_estimate_usd")) for r in rows]
    asked = [_asked_seconds(r) for r in rows]
    amount, seconds = _known_sum(estimates), _known_sum(asked)
    return round(amount / seconds, 4) if amount is not None and seconds else None


def route_cost(rows: Iterable[Mapping[str, Any]]) -> RouteCost:
    """The cost figures of one route's job rows (`JobRow.to_dict` or report records).

    Submitted jobs are those with a provider job id; a dry run's plan has none, so its
    cost is ``planned_usd``.
    """
    mine = list(rows)
    sent = [r for r in mine if _field(r, "job_id")]
    first = mine[0] if mine else {}
    return RouteCost(
        usd_per_s=_per_second(mine),
        source=str(_field(first, "price_source") or ""),
        charged_usd=_known_sum([fmt.number(_field(r, "cost_usd")) for r in sent]),
        would_be_usd=_known_sum([fmt.number(_field(r, "cost_estimate_usd")) for r in sent]),
        planned_usd=_known_sum([fmt.number(_field(r, "cost_usd")) for r in mine]),
        note=str(_field(first, "cost_note") or ""),
        usage=_usage_sum(mine),
    )


def _usage_sum(rows: list[Mapping[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for row in rows:
        usage = _field(row, "usage")
        for name, raw in usage.items() if isinstance(usage, Mapping) else ():
            figure = fmt.number(raw)
            if figure is not None:
                total[name] = round(total.get(name, 0.0) + figure, 3)
    return total


def usage_text(usage: Mapping[str, float]) -> str:
    """What a provider reported as used, for a person: ``reported predict_time 48.20s``, or ""
    where it reported nothing (every documented usage field is in seconds)."""
    if not usage:
        return ""
    return "reported " + ", ".join(f"{name} {fmt.seconds(v)}" for name, v in usage.items())
