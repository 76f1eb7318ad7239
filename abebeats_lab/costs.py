"""The cost guard: what a comparison would cost, computed from the price data before any submit.

Prices are estimates from the capability data (per second of video, with audio and
resolution tiers where they differ), each with its source and date. Emulated and local
routes are charged nothing; their would-be price is still computed and kept apart, so a
demo shows what the same comparison would cost for real.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from abebeats_lab._types import VideoRequest
from abebeats_lab.capabilities import Capabilities
from abebeats_lab.errors import CostLimitError

__all__ = ["FREE_PROVIDERS", "CostEstimate", "JobCost", "check_limit", "job_cost", "total"]

FREE_PROVIDERS = frozenset({"local"})
"""Providers that run on this machine and never charge."""
NOTE_ESTIMATE = "estimate"
NOTE_EMULATED = "emulated: not charged"
NOTE_LOCAL = "local: free"


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


def job_cost(
    caps: Capabilities, request: VideoRequest, *, provider: str, emulated: bool
) -> JobCost:
    """Cost figures of one job of ``request`` on a route with ``caps``."""
    estimate = caps.estimate_usd(request)
    charged: float | None
    if provider in FREE_PROVIDERS:
        charged, note = 0.0, NOTE_LOCAL
    elif emulated:
        charged, note = 0.0, NOTE_EMULATED
    else:
        charged, note = estimate, NOTE_ESTIMATE
    return JobCost(charged, estimate, note, caps.price.source, caps.price.date)


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

    def describe(self) -> str:
        """One line for a plan printout."""
        text = f"estimated cost ${self.charged_usd:.2f}"
        if self.would_be_usd != self.charged_usd:
            text += f" (would be ${self.would_be_usd:.2f} on the real routes)"
        if self.unknown:
            text += f"; no price known for {', '.join(self.unknown)}"
        return text


def total(costs: Iterable[tuple[str, JobCost]]) -> CostEstimate:
    """Add up ``(route, cost)`` pairs."""
    charged = would_be = 0.0
    per_route: dict[str, float] = {}
    unknown: list[str] = []
    for route, cost in costs:
        if cost.charged_usd is None:
            if route not in unknown:
                unknown.append(route)
        else:
            charged += cost.charged_usd
            per_route[route] = round(per_route.get(route, 0.0) + cost.charged_usd, 4)
        would_be += cost.estimate_usd or 0.0
    return CostEstimate(round(charged, 4), round(would_be, 4), per_route, tuple(unknown))


def check_limit(estimate: CostEstimate, limit_usd: float | None) -> None:
    """Raise `CostLimitError` when the estimate is over the limit or cannot be bounded."""
    if limit_usd is None:
        return
    if estimate.unknown:
        detail = f"no price known for {', '.join(estimate.unknown)}"
        raise CostLimitError(None, limit_usd, detail)
    if estimate.charged_usd > limit_usd:
        raise CostLimitError(estimate.charged_usd, limit_usd)
