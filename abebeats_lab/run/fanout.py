"""Fan stored rows out under the run's per-provider limiters, scoring outputs as they land.

`run_rows` opens the clients the rows need and takes every row to a final state at once,
each provider's jobs under one `Limiter` (the caps and rates stored with the run); a
failure ends as its row, never as the batch. `scorer` and `scored` add the optional
quality scoring (`quality.auto.AutoScorer`): each output is measured off the event loop as
soon as it is downloaded, and the run waits for the last scores before it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from abebeats_lab import capabilities
from abebeats_lab.run.connect import connect
from abebeats_lab.run.job import JobEvent, RunContext, live_row
from abebeats_lab.run.plan import limiters_for
from abebeats_lab.store import JobRow, RunStore
from abebeats_lab.waiting import WaitPolicy

if TYPE_CHECKING:
    from abebeats_lab.quality.auto import AutoScorer

__all__ = ["UpdateHandler", "run_rows", "scored", "scorer"]

UpdateHandler = Callable[[JobEvent], None]
_T = TypeVar("_T")


async def run_rows(
    store: RunStore,
    rows: Sequence[JobRow],
    spec: Mapping[str, object],
    emulate: bool,
    on_update: UpdateHandler | None,
    policy: WaitPolicy | None,
) -> list[JobRow]:
    """Take stored rows to a final state; returns them as they ended."""
    if not rows:
        return []
    pairs = ((r.provider, capabilities.capabilities_for(r.route)) for r in rows)
    concurrency = spec.get("concurrency")
    rates = spec.get("rate_per_min")
    limiters = limiters_for(
        pairs,
        concurrency if isinstance(concurrency, dict) else None,
        rates if isinstance(rates, dict) else None,
    )
    lives = [live_row(row) for row in rows]
    async with connect({r.provider for r in rows}, emulate=emulate) as clients:
        context = RunContext(store, clients, limiters, on_update=on_update, policy=policy)
        await context.run_all(lives)
    return [live.row for live in lives]


def scorer(
    score: bool | Executor, directory: Path, on_update: UpdateHandler | None
) -> AutoScorer | None:
    """The on_update handler that scores each new output (None when scoring is off)."""
    if score is False:
        return None
    from abebeats_lab.quality.auto import AutoScorer

    return AutoScorer(directory, None if score is True else score, forward=on_update)


async def scored(work: Awaitable[_T], scoring: AutoScorer | None) -> _T:
    """``work``, then the clips still being scored (given up on if ``work`` fails)."""
    if scoring is None:
        return await work
    try:
        result = await work
    except BaseException:
        await scoring.close()
        raise
    await scoring.finish()
    return result
