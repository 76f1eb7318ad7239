"""Scripted job lifecycles and faults for the emulators, as data.

A `Scenario` says how long jobs queue and run (fixed or drawn from a normal distribution),
whether they fail, and which faults the server injects. Faults are counted per server, so
"the first two creates get a 429" means exactly that.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["Dist", "Scenario"]


@dataclass(frozen=True, slots=True)
class Dist:
    """Seconds: ``mean`` alone is fixed; with ``sd`` it is normal, floored at ``low``."""

    mean: float
    sd: float = 0.0
    low: float = 0.0

    def draw(self, rng: random.Random) -> float:
        """One value."""
        if self.sd <= 0:
            return max(self.low, self.mean)
        return max(self.low, rng.gauss(self.mean, self.sd))


def _dist(value: float | Dist) -> Dist:
    return value if isinstance(value, Dist) else Dist(float(value))


@dataclass(frozen=True, slots=True)
class Scenario:
    """How emulated jobs behave and which faults the emulator injects."""

    queue_s: Dist = field(default_factory=lambda: Dist(0.2))
    run_s: Dist = field(default_factory=lambda: Dist(0.8))
    fail: bool = False
    """Every job ends in the provider's failure shape."""
    failure_message: str = "The generation failed (emulated)."
    failure_code: str | None = None
    concurrency: int | None = None
    """Jobs beyond this many running at once wait (Runway shows them THROTTLED)."""
    create_429: int = 0
    """The first N create calls answer 429 with ``Retry-After: retry_after_s``."""
    status_429: int = 0
    """The first N status calls answer 429 with ``Retry-After``."""
    stream_429: int = 0
    """The first N push-stream opens (fal's SSE status stream) answer 429 with ``Retry-After``;
    polls are not counted or throttled by it."""
    result_429: int = 0
    """The first N result fetches (fal's ``response_url``) answer 429 with ``Retry-After``."""
    retry_after_s: float = 0.2
    status_5xx: int = 0
    """The first N status calls answer 503."""
    drop_create: int = 0
    """The first N creates are accepted (the job exists) but the connection drops mid-answer."""
    hang_create: int = 0
    """The first N creates are accepted, then the answer never comes (the client must time out)."""
    malformed_status: int = 0
    """The first N status calls answer with a body that is not JSON."""
    unknown_status: bool = False
    """Status answers carry a state word the provider never documented."""
    cancel_elsewhere_after_s: float | None = None
    """Jobs are cancelled server-side this long after creation (someone else cancelled them)."""
    expire_outputs_after: int | None = None
    """Output URLs stop working after this many fetches (signed URLs that expired)."""
    truncate_downloads: int = 0
    """The first N output downloads stop halfway through the body."""
    bad_output: bool = False
    """Outputs are not videos."""
    progress: bool = True
    """Report progress where the provider has a progress field."""
    unique_outputs: bool = True
    """Render each job's own video (prompt and seed drawn in). False shares one render per
    duration and size, so load tests measure waiting rather than this machine's encoder."""
    seed: int = 0
    """Seed for the run-time draws, so a scenario replays identically."""

    @classmethod
    def fast(cls, **changes: Any) -> Scenario:
        """Quick jobs for tests: 0.05 s queued, 0.2 s running."""
        return replace(cls(queue_s=Dist(0.05), run_s=Dist(0.2)), **changes)

    def with_times(self, queue_s: float | Dist, run_s: float | Dist) -> Scenario:
        """A copy with other queue and run times."""
        return replace(self, queue_s=_dist(queue_s), run_s=_dist(run_s))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (to configure an emulator in another process)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        """Inverse of `to_dict`; unknown keys are an error, so typos do not pass silently."""
        values = dict(data)
        for name in ("queue_s", "run_s"):
            if name in values and not isinstance(values[name], Dist):
                raw = values[name]
                values[name] = Dist(**raw) if isinstance(raw, dict) else Dist(float(raw))
        return cls(**values)
