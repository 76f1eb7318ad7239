"""The public face of a run: compare, generate, resume, and reading stored runs back.

`compare` validates every (prompt, route) and prices the whole plan before any network
call (`run.plan`), opens every client (a missing key stops it here), writes every job to
the run store, then fans out under per-provider caps and create-rate limits. A job's
provider id is committed before its first status request (`run.job`, `run.submit`); a
failure becomes a row, never a crashed batch; cancelling the comparison cancels its remote
jobs. `generate` and `generate_many` are the fallback chains (`run.chains`). `resume`
re-attaches to a run left unfinished (even by a SIGKILLed process) without resubmitting
anything (`run.resume_plan`). No provider is named here: capability data and the provider
interface's optional methods carry every difference. One module past 400 lines: these are the
functions a user calls, each the same short sequence (check, plan, lock, connect, fan out),
read side by side.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from abebeats_lab import capabilities
from abebeats_lab._types import JobState, Route, Settings
from abebeats_lab.errors import LabError, MissingKeyError, ValidationError
from abebeats_lab.run import costs
from abebeats_lab.run.chains import GenerateResult, continued, plan_chains, run_chains
from abebeats_lab.run.connect import connect
from abebeats_lab.run.fanout import UpdateHandler, run_rows, scored, scorer
from abebeats_lab.run.folder import open_to_read, pick_run
from abebeats_lab.run.job import JobEvent, RunContext, cancelled_by_deadline, live_row
from abebeats_lab.run.limits import Limiter
from abebeats_lab.run.lock import hold_run
from abebeats_lab.run.plan import (
    check_counts,
    check_prices,
    checked_settings,
    cost_of,
    estimated_time,
    limiters_for,
    new_run_id,
    plan_jobs,
    refuse_in_worker_import,
    run_directory,
    run_spec,
    settings_for,
    unchecked_notes,
)
from abebeats_lab.run.resume_plan import (
    fresh,
    remove_partial_downloads,
    resume_plan,
    to_finish,
    was_interrupted,
)
from abebeats_lab.store import DB_NAME, RunStore
from abebeats_lab.views.comparison import Comparison
from abebeats_lab.waiting import WaitPolicy

__all__ = [
    "DB_NAME",
    "Comparison",
    "GenerateResult",
    "JobEvent",
    "Limiter",
    "RunListing",
    "compare",
    "generate",
    "generate_many",
    "list_runs",
    "load_run",
    "model_routes",
    "resume",
    "was_interrupted",
]

log = logging.getLogger(__name__)


def model_routes(model: str, *, emulate: bool = False) -> list[Route]:
    """Every concrete route selling ``model`` that can run here: one whose provider has a key
    (every one with ``emulate=True``). Raises `ValidationError` for a model no route sells and
    `MissingKeyError` (as a single route's missing key does) when no seller has a key."""
    from abebeats_lab import config

    rows = capabilities.routes_for_model(model)
    sellers = [Route.parse(c.pattern) for c in rows]
    usable = [
        Route.parse(c.pattern)
        for c in rows
        if emulate or c.runs_locally or config.key_for(c.pattern.partition(":")[0], required=False)
    ]
    if not usable:
        providers = dict.fromkeys(r.provider for r in sellers)
        variables = dict.fromkeys(config.PROVIDER_ENV[p].keys[0] for p in providers)
        where = f"{model} (sold by {', '.join(str(r) for r in sellers)})"
        raise MissingKeyError(where, variables)
    return usable


async def compare(
    prompts: Sequence[str] | str,
    routes: Sequence[str | Route] = (),
    settings: Settings | None = None,
    *,
    model: str | None = None,
    repeats: int = 1,
    run_dir: Path | str | None = None,
    on_update: UpdateHandler | None = None,
    emulate: bool = False,
    max_cost_usd: float | None = None,
    adapt: bool = False,
    concurrency: Mapping[str, int] | None = None,
    policy: WaitPolicy | None = None,
    dry_run: bool = False,
    rate_per_min: Mapping[str, float] | None = None,
    prices: Mapping[str, float] | None = None,
    score: bool | Executor = False,
    run_id: str | None = None,
) -> Comparison:
    """Send every prompt to every route ``repeats`` times and return the rows.

    ``settings`` are the same for every prompt and route; a duration, ratio or resolution
    they leave ``None`` takes each route's own default (recorded in the row's ``adjusted``
    as ``[None, default]``). Raises
    `ValidationError` (or adapts, with ``adapt=True``), `CostLimitError` and
    `MissingKeyError` before anything is submitted. ``concurrency`` and ``rate_per_min``
    override the per-provider caps (``{"runway": 1}``). ``dry_run=True`` returns the plan
    (rows in state ``planned``, ``estimate``, ``estimated_time_s``) and sends nothing.
    ``prices`` supplies USD per second per route (``{"replicate:owner/model": 0.05}``),
    over the user's ``prices.toml`` and the price table. Emulated runs are free, so with
    ``emulate=True`` ``max_cost_usd`` is not applied: ``notes`` says what the run would cost.
    ``model="veo-3.1-fast"`` adds every route selling that model which has a key (every one
    when emulated), so one model is compared across its resellers (`model_routes`).
    ``score=True`` (or an `Executor`) measures each output's quality metrics as soon as it
    is downloaded, off the event loop (`quality.auto.AutoScorer`). ``run_id`` names the new
    run (default: a fresh `new_run_id()`, which also names the folder when ``run_dir`` is
    None); it must be new in ``run_dir``.
    """
    refuse_in_worker_import()
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    sellers = model_routes(model, emulate=emulate) if model else []
    route_list = list(dict.fromkeys([*(Route.parse(r) for r in routes), *sellers]))
    check_counts("compare", prompt_list, route_list, repeats)
    check_prices(prices, route_list)
    base = checked_settings(settings)
    run_id, directory = _new_run(run_id, run_dir)
    planned = plan_jobs(
        run_id,
        prompt_list,
        route_list,
        base,
        repeats=repeats,
        adapt=adapt,
        emulate=emulate,
        prices=prices,
    )
    estimate = costs.total((p.row.route, cost_of(p.row)) for p in planned)
    notes = unchecked_notes(planned)
    if emulate and max_cost_usd is not None:
        notes.append(costs.emulated_limit_note(estimate, max_cost_usd))
        log.info("%s", notes[-1])
    else:
        costs.check_limit(estimate, max_cost_usd)
    log.info("%s: %d jobs, %s", run_id, len(planned), estimate.describe())
    limiters = limiters_for(((p.row.provider, p.caps) for p in planned), concurrency, rate_per_min)
    eta = estimated_time(planned, limiters)
    if dry_run:
        rows = [p.row for p in planned]
        return Comparison(
            rows, run_id, None, estimate=estimate, estimated_time_s=eta, dry_run=True, notes=notes
        )
    spec = run_spec(
        prompt_list,
        route_list,
        base,
        repeats=repeats,
        emulate=emulate,
        adapt=adapt,
        concurrency=dict(concurrency or {}),
        rate_per_min=dict(rate_per_min or {}),
    )
    async with connect({p.row.provider for p in planned}, emulate=emulate) as clients:
        with hold_run(directory, run_id), RunStore(directory) as store:
            rows = [p.row.evolve(emulated=clients.emulated(p.row.provider)) for p in planned]
            store.add_run(run_id, datetime.now(UTC).isoformat(), "compare", spec)
            store.insert(rows)
            scoring = scorer(score, directory, on_update)
            context = RunContext(
                store, clients, limiters, on_update=scoring or on_update, policy=policy
            )
            await scored(context.run_all([live_row(row) for row in rows]), scoring)
    result = load_run(directory, run_id)
    result.estimate, result.estimated_time_s, result.notes = estimate, eta, notes
    return result


def _new_run(run_id: str | None, run_dir: Path | str | None) -> tuple[str, Path]:
    """The id of the run a call starts (``run_id``, or a fresh one) and its folder. A given
    id must be new there: two runs never share one."""
    chosen = run_id or new_run_id()
    directory = run_directory(run_dir, chosen)
    if run_id is not None and (directory / DB_NAME).is_file():
        with open_to_read(directory) as store:
            taken = any(info.run_id == run_id for info in store.runs())
        if taken:
            raise ValidationError("run_id", run_id, f"an id no run in {directory} has yet")
    return chosen, directory


@dataclass(frozen=True)
class RunListing:
    """One run of a folder, as `list_runs` (``abebeats-lab runs``) shows it."""

    run_id: str
    created_at: str
    kind: str
    jobs: int
    states: dict[str, int]
    """Jobs per state, e.g. ``{"succeeded": 3, "failed": 1}``."""


def list_runs(run_dir: Path | str) -> list[RunListing]:
    """Every run stored in ``run_dir``, oldest first, with its jobs counted per state.

    Works on a read-only folder and beside a running run.
    """
    with open_to_read(run_dir) as store:
        listings = []
        for info in store.runs():
            states = Counter(str(row.state) for row in store.rows(info.run_id))
            jobs = sum(states.values())
            listings.append(RunListing(info.run_id, info.created_at, info.kind, jobs, dict(states)))
        return listings


def load_run(run_dir: Path | str, run_id: str | None = None) -> Comparison:
    """The rows of a stored run (default: the latest run in the directory that has jobs).

    A run asked for by id comes back even when it has no jobs (``len()`` is 0). A read-only
    run folder can be read.
    """
    directory = Path(run_dir)
    with open_to_read(directory) as store:
        info = pick_run(store, run_id)
        return Comparison(store.rows(info.run_id), info.run_id, directory)


async def resume(
    run_dir: Path | str,
    *,
    run_id: str | None = None,
    emulate: bool = False,
    on_update: UpdateHandler | None = None,
    policy: WaitPolicy | None = None,
    rerun_cancelled: bool = False,
) -> Comparison:
    """Finish a run in ``run_dir`` (``run_id``, default the latest with jobs): re-attach,
    download, never resubmit a sent job.

    Only one process works on a run at a time: while another owns it (a `compare` still
    running), this raises `RunBusyError` naming that process, before sending anything.

    Rows that were only planned are submitted now (no create was ever sent for them). Rows
    left ``submitting`` (the process died mid-create) are reconciled where the provider
    offers ``reconcile``; otherwise they are marked ``ambiguous`` and left alone.

    ``rerun_cancelled=True`` also finishes rows an interrupt cancelled (see `was_interrupted`)
    without paying twice: a row whose job never existed or whose cancel the provider
    confirmed is submitted again as a new job; a row whose job the provider may still
    finish is re-attached first and submitted again only if the provider reports that job
    cancelled (if it finishes, its video is collected instead).

    Jobs of an emulated run lived in in-process emulators that stopped with the process
    that ran them: such rows cannot be re-attached, so this raises `LabError` before any
    request unless ``rerun_cancelled=True``, which submits them again to new emulators (free).
    """
    refuse_in_worker_import()
    directory = Path(run_dir)
    chosen = load_run(directory, run_id)
    if not chosen.rows:
        raise LabError(f"run {chosen.run_id} in {directory} has no jobs: nothing to resume")
    if not any(to_finish(row, rerun_cancelled) for row in chosen.rows):
        return chosen  # every job is final: nothing to send, nothing to write (a read-only folder)
    with hold_run(directory, chosen.run_id), RunStore(directory) as store:
        info = next(r for r in store.runs() if r.run_id == chosen.run_id)
        todo, recheck = resume_plan(store, info, emulate=emulate, rerun_cancelled=rerun_cancelled)
        remove_partial_downloads(store.outputs_dir)
        for row in todo:
            store.save(row)
        done = await run_rows(store, todo, info.spec, emulate, on_update, policy)
        # A re-attached job the provider reports cancelled made no video: send it again (not
        # one this resume's own deadline cancelled: that limit was the caller's).
        again = [
            fresh(r)
            for r in done
            if r.key in recheck and r.state is JobState.CANCELED and not cancelled_by_deadline(r)
        ]
        for row in again:
            store.save(row)
        await run_rows(store, again, info.spec, emulate, on_update, policy)
    return load_run(directory, chosen.run_id)


async def generate(
    prompt: str,
    routes: Sequence[str | Route],
    settings: Settings | None = None,
    *,
    fallback: bool = True,
    run_dir: Path | str | None = None,
    emulate: bool = False,
    on_update: UpdateHandler | None = None,
    policy: WaitPolicy | None = None,
    adapt: bool = False,
    prices: Mapping[str, float] | None = None,
    run_id: str | None = None,
) -> GenerateResult:
    """Try ``routes`` in order until one succeeds (only the first with ``fallback=False``).

    Every route is validated and every client opened first; every attempt is a stored row.
    Settings left ``None`` take each route's default; a setting a route refuses
    raises `ValidationError` before anything is sent, unless ``adapt=True`` snaps it to the
    nearest value that route allows (recorded in the row's ``adjusted``).

    ``prices`` supplies USD per second per route and ``run_id`` names the run, as in
    `compare`.
    Raises `AllRoutesFailed` (a `JobFailed`) listing each attempt's reason if none succeeds,
    and `ProviderError` without trying further routes when a job's status could not be read
    (the job may still finish; `resume` collects it).
    """
    refuse_in_worker_import()
    (result,) = await generate_many(
        [prompt], routes, settings, fallback=fallback, run_dir=run_dir,
        emulate=emulate, on_update=on_update, policy=policy, adapt=adapt, prices=prices,
        run_id=run_id,
    )  # fmt: skip
    return result


async def generate_many(
    prompts: Sequence[str],
    routes: Sequence[str | Route],
    settings: Settings | Sequence[Settings] | None = None,
    *,
    fallback: bool = True,
    run_dir: Path | str | None = None,
    emulate: bool = False,
    on_update: UpdateHandler | None = None,
    policy: WaitPolicy | None = None,
    adapt: bool = False,
    prices: Mapping[str, float] | None = None,
    concurrency: Mapping[str, int] | None = None,
    parallel: int | None = None,
    labels: Sequence[str] | None = None,
    kind: str = "generate",
    spec: Mapping[str, object] | None = None,
    continue_run: str | None = None,
    score: bool | Executor = False,
    run_id: str | None = None,
) -> list[GenerateResult]:
    """Each prompt through the fallback chain ``routes``, all as one run; results in order.

    One run id, one set of clients (one set of emulators with ``emulate=True``) and one
    limiter per provider, so a route's caps (``concurrency`` overrides them per provider)
    hold across prompts; ``parallel`` bounds the chains running at once (default: all).
    Row ``prompt_index`` is the prompt's index. A route's row is stored only when that
    route is tried, so `resume` collects jobs in flight and never tries a later route.
    ``settings`` are one `Settings` for every prompt or one per prompt.

    ``continue_run`` adds to that stored run in ``run_dir`` instead of starting one: a
    prompt whose row there succeeded (same prompt and route) is not sent again; another
    tries its chain again, as rows with the next ``repeat``. A job of that run still
    unfinished (or an ambiguous paid create) raises `LabError` before anything is sent.

    The first chain that fails cancels the others and its error is raised, as `generate`'s
    (``labels`` prefix each route in `AllRoutesFailed`, e.g. ``shot 3``). ``score`` and
    ``run_id`` (the new run's id: not with ``continue_run``): as in `compare`.
    """
    refuse_in_worker_import()
    route_list = [Route.parse(r) for r in routes][: None if fallback else 1]
    prompt_list = list(prompts)
    check_counts("generate", prompt_list, route_list)
    check_prices(prices, [Route.parse(r) for r in routes])
    sent = settings_for(prompt_list, settings)
    if continue_run is not None and run_id is not None:
        raise ValidationError("run_id", run_id, "None when continuing a run (continue_run)")
    if continue_run is None:
        run_id, directory = _new_run(run_id, run_dir)
    else:
        run_id, directory = continue_run, run_directory(run_dir, continue_run)
    chains = plan_chains(run_id, prompt_list, sent, route_list, labels, adapt, emulate, prices)
    if continue_run is not None:
        chains = continued(directory, run_id, chains)
    limiters = limiters_for(
        ((p.row.provider, p.caps) for c in chains for p in c.tries), concurrency
    )
    options = dict(
        fallback=fallback, emulate=emulate, adapt=adapt, concurrency=dict(concurrency or {})
    )
    if any(s != sent[0] for s in sent):
        options["settings_per_prompt"] = [s.as_dict() for s in sent]
    record = run_spec(prompt_list, route_list, sent[0], **options, **(spec or {}))
    providers = {p.row.provider for c in chains for p in c.tries}
    async with connect(providers, emulate=emulate) as clients:
        with hold_run(directory, run_id), RunStore(directory) as store:
            if continue_run is None:
                store.add_run(run_id, datetime.now(UTC).isoformat(), kind, record)
            scoring = scorer(score, directory, on_update)
            context = RunContext(
                store, clients, limiters, on_update=scoring or on_update, policy=policy
            )
            slots = asyncio.Semaphore(parallel or len(chains))
            return await scored(run_chains(context, chains, slots, directory), scoring)
