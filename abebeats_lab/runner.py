"""Compare routes: the same prompts and settings sent to many routes at once, every job recorded.

`compare` validates every (prompt, route) and prices the whole plan before any network
call, opens every client (a missing key stops it here), writes every job to the run store,
then fans out under per-provider caps and create-rate limits. A job's provider id is
committed before its first status request; a failure becomes a row, never a crashed batch;
cancelling the comparison cancels its remote jobs. `resume` re-attaches to a run left
unfinished (even by a SIGKILLed process) without resubmitting anything; `generate` is the
fallback chain. This module never names a provider: capability data and duck-typed
optional methods (``refresh_outputs``, ``reconcile``) carry every difference.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from abebeats_lab import capabilities, costs
from abebeats_lab._jobs import JobEvent, Limiter, RunContext, live_row
from abebeats_lab._types import Route, VideoRequest
from abebeats_lab.comparison import Comparison
from abebeats_lab.connect import connect
from abebeats_lab.errors import AllRoutesFailed, LabError
from abebeats_lab.store import JobRow, RunStore
from abebeats_lab.waiting import WaitPolicy

__all__ = ["Comparison", "GenerateResult", "JobEvent", "compare", "generate", "load_run", "resume"]

RUNS_DIR = "runs"
"""Default parent of run directories, under the working directory."""
ON_UPDATE = Callable[[JobEvent], None]


@dataclass(frozen=True)
class Planned:
    """One job of a plan: its row (state ``planned``), the request it sends, and its data."""

    row: JobRow
    request: VideoRequest
    caps: capabilities.Capabilities


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _prepare(
    request: VideoRequest, route: Route, *, adapt: bool
) -> tuple[VideoRequest, capabilities.Capabilities, dict[str, list[object]]]:
    if not adapt:
        return request, capabilities.validate(request, route), {}
    adjusted, changes = capabilities.nearest(request, route)
    caps = capabilities.validate(adjusted, route)
    return adjusted, caps, {name: list(pair) for name, pair in changes.items()}


def plan_jobs(
    run_id: str,
    prompts: Sequence[str],
    routes: Sequence[Route],
    request: VideoRequest,
    *,
    repeats: int = 1,
    adapt: bool = False,
    emulate: bool = False,
) -> list[Planned]:
    """Every (prompt, route, repeat) validated and priced; raises before any network call."""
    planned = []
    for index, prompt in enumerate(prompts):
        for route in routes:
            sent, caps, adjusted = _prepare(request.replace(prompt=prompt), route, adapt=adapt)
            emulated = emulate and route.provider != "local"
            cost = costs.job_cost(caps, sent, provider=route.provider, emulated=emulated)
            for repeat in range(repeats):
                row = JobRow(
                    run_id=run_id, prompt_index=index, route=str(route), repeat=repeat,
                    provider=route.provider, model=route.model, prompt=prompt,
                    settings=sent.settings(), seed=sent.seed, client_ref=uuid.uuid4().hex,
                    cost_usd=cost.charged_usd, cost_estimate_usd=cost.estimate_usd,
                    cost_note=cost.note, price_source=cost.source, price_date=cost.date,
                    emulated=emulated, adjusted=adjusted,
                )  # fmt: skip
                planned.append(Planned(row, sent, caps))
    return planned


def _caps_by_provider(
    planned: Sequence[Planned], overrides: Mapping[str, int] | None
) -> dict[str, Limiter]:
    """One limiter per provider: the tightest capability data, unless overridden."""
    limiters: dict[str, Limiter] = {}
    for provider in dict.fromkeys(p.row.provider for p in planned):
        mine = [p.caps for p in planned if p.row.provider == provider]
        cap = min(c.concurrency for c in mine)
        rates = [c.rate_per_min for c in mine if c.rate_per_min]
        if overrides and provider in overrides:
            cap = overrides[provider]
        limiters[provider] = Limiter(max(1, cap), min(rates) if rates else None)
    return limiters


def _estimated_time(planned: Sequence[Planned], limiters: Mapping[str, Limiter]) -> float:
    """Waves of jobs per provider times the slowest typical run time; the slowest provider wins."""
    worst = 0.0
    for provider, limiter in limiters.items():
        mine = [p for p in planned if p.row.provider == provider]
        waves = math.ceil(len(mine) / limiter.cap)
        worst = max(worst, waves * max(p.caps.typical_run_s for p in mine))
    return worst


def _spec(
    prompts: Sequence[str], routes: Sequence[Route], request: VideoRequest, **options: object
) -> dict[str, object]:
    return {
        "prompts": list(prompts),
        "routes": [str(r) for r in routes],
        "request": request.settings(),
        **options,
    }


async def compare(
    prompts: Sequence[str] | str,
    routes: Sequence[str | Route],
    request: VideoRequest | None = None,
    *,
    repeats: int = 1,
    run_dir: Path | str | None = None,
    on_update: ON_UPDATE | None = None,
    emulate: bool = False,
    max_cost_usd: float | None = None,
    adapt: bool = False,
    concurrency: Mapping[str, int] | None = None,
    policy: WaitPolicy | None = None,
    dry_run: bool = False,
) -> Comparison:
    """Send every prompt to every route ``repeats`` times and return the rows.

    ``request`` holds the common settings (its prompt is replaced per prompt). Raises
    `ValidationError` (or adapts, with ``adapt=True``), `CostLimitError` and
    `MissingKeyError` before anything is submitted. ``concurrency`` overrides the
    per-provider cap (``{"runway": 1}``). ``dry_run=True`` returns the plan, sends nothing.
    """
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    route_list = [Route.parse(r) for r in routes]
    if not prompt_list or not route_list or repeats < 1:
        raise LabError("compare needs at least one prompt, one route and repeats >= 1")
    base = request or VideoRequest(prompt_list[0])
    run_id = new_run_id()
    planned = plan_jobs(
        run_id, prompt_list, route_list, base, repeats=repeats, adapt=adapt, emulate=emulate
    )
    estimate = costs.total((p.row.route, _cost_of(p.row)) for p in planned)
    costs.check_limit(estimate, max_cost_usd)
    limiters = _caps_by_provider(planned, concurrency)
    eta = _estimated_time(planned, limiters)
    if dry_run:
        rows = [p.row for p in planned]
        return Comparison(rows, run_id, None, estimate=estimate, estimated_time_s=eta, dry_run=True)
    directory = Path(run_dir) if run_dir is not None else Path.cwd() / RUNS_DIR / run_id
    spec = _spec(prompt_list, route_list, base, repeats=repeats, emulate=emulate, adapt=adapt)
    async with connect({p.row.provider for p in planned}, emulate=emulate) as clients:
        with RunStore(directory) as store:
            rows = [p.row.evolve(emulated=clients.emulated(p.row.provider)) for p in planned]
            store.add_run(run_id, datetime.now(UTC).isoformat(), "compare", spec)
            store.insert(rows)
            context = RunContext(store, clients, limiters, on_update=on_update, policy=policy)
            await context.run_all([live_row(row) for row in rows])
    result = load_run(directory, run_id)
    result.estimate, result.estimated_time_s = estimate, eta
    return result


def _cost_of(row: JobRow) -> costs.JobCost:
    note = row.cost_note
    return costs.JobCost(
        row.cost_usd, row.cost_estimate_usd, note, row.price_source or "", row.price_date or ""
    )


def load_run(run_dir: Path | str, run_id: str | None = None) -> Comparison:
    """The rows of a stored run (default: the latest run in the directory)."""
    directory = Path(run_dir)
    with RunStore(directory) as store:
        info = (
            store.latest_run()
            if run_id is None
            else next((r for r in store.runs() if r.run_id == run_id), None)
        )
        if info is None:
            raise LabError(f"no run {run_id or ''} in {directory}".replace("  ", " "))
        return Comparison(store.rows(info.run_id), info.run_id, directory)


async def resume(
    run_dir: Path | str,
    *,
    emulate: bool = False,
    on_update: ON_UPDATE | None = None,
    policy: WaitPolicy | None = None,
) -> Comparison:
    """Finish the latest run in ``run_dir``: re-attach, download, never resubmit a sent job.

    Rows that were only planned are submitted now (no create was ever sent for them). Rows
    left ``submitting`` (the process died mid-create) are reconciled where the provider
    offers ``reconcile``; otherwise they are marked ``ambiguous`` and left alone.
    """
    directory = Path(run_dir)
    with RunStore(directory) as store:
        info = store.latest_run()
        if info is None:
            raise LabError(f"no run in {directory}")
        rows = list(store.unfinished(info.run_id))
        if rows:
            async with connect({r.provider for r in rows}, emulate=emulate) as clients:
                limiters = _limiters_for_rows(rows)
                context = RunContext(store, clients, limiters, on_update=on_update, policy=policy)
                await context.run_all([live_row(row) for row in rows])
    return load_run(directory, info.run_id)


def _limiters_for_rows(rows: Sequence[JobRow]) -> dict[str, Limiter]:
    limiters: dict[str, Limiter] = {}
    for row in rows:
        caps = capabilities.capabilities_for(row.route)
        current = limiters.get(row.provider)
        cap = caps.concurrency if current is None else min(current.cap, caps.concurrency)
        limiters[row.provider] = Limiter(max(1, cap), caps.rate_per_min)
    return limiters


@dataclass(frozen=True)
class GenerateResult:
    """The first route that succeeded, its video, and every attempt that failed before it."""

    row: JobRow
    output_path: Path
    failures: list[JobRow] = field(default_factory=list)
    run_dir: Path | None = None


async def generate(
    prompt: str,
    routes: Sequence[str | Route],
    request: VideoRequest | None = None,
    *,
    fallback: bool = True,
    run_dir: Path | str | None = None,
    emulate: bool = False,
    on_update: ON_UPDATE | None = None,
    policy: WaitPolicy | None = None,
) -> GenerateResult:
    """Try ``routes`` in order until one succeeds (only the first with ``fallback=False``).

    Every route is validated and every client opened first; every attempt is a stored row.
    Raises `AllRoutesFailed` (a `JobFailed`) listing each attempt's reason if none succeeds.
    """
    route_list = [Route.parse(r) for r in routes][: None if fallback else 1]
    if not route_list:
        raise LabError("generate needs at least one route")
    base = (request or VideoRequest(prompt)).replace(prompt=prompt)
    run_id = new_run_id()
    planned = plan_jobs(run_id, [prompt], route_list, base, emulate=emulate)
    directory = Path(run_dir) if run_dir is not None else Path.cwd() / RUNS_DIR / run_id
    limiters = _caps_by_provider(planned, None)
    async with connect({p.row.provider for p in planned}, emulate=emulate) as clients:
        with RunStore(directory) as store:
            store.add_run(
                run_id,
                datetime.now(UTC).isoformat(),
                "generate",
                _spec([prompt], route_list, base, fallback=fallback, emulate=emulate),
            )
            context = RunContext(store, clients, limiters, on_update=on_update, policy=policy)
            failures: list[JobRow] = []
            for item in planned:
                row = item.row.evolve(emulated=clients.emulated(item.row.provider))
                store.insert([row])
                done = await context.run_one(live_row(row))
                if done.state == "succeeded" and done.output_path:
                    return GenerateResult(done, directory / done.output_path, failures, directory)
                failures.append(done)
    raise AllRoutesFailed((r.route, r.error or r.state) for r in failures)
