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

import asyncio
import logging
import math
import os
import secrets
import shlex
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from abebeats_lab import capabilities
from abebeats_lab._types import ROUTE_DEFAULT_FIELDS, JobState, Route, Settings, VideoRequest
from abebeats_lab.errors import AllRoutesFailed, LabError, ProviderError, ValidationError
from abebeats_lab.run import costs
from abebeats_lab.run.connect import connect
from abebeats_lab.run.job import JobEvent, RunContext, live_row
from abebeats_lab.run.limits import Limiter
from abebeats_lab.run.lock import hold_run
from abebeats_lab.store import DB_NAME, JobRow, RunInfo, RunStore
from abebeats_lab.views.comparison import Comparison
from abebeats_lab.waiting import WaitPolicy

if TYPE_CHECKING:
    from abebeats_lab.quality.auto import AutoScorer

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

PARTIAL_GLOB = ".*.part"
"""The temporary names `media.save_output` writes to before its atomic rename."""
RUNS_DIR = "abebeats-runs"  # one default folder for every entry point (gitignored)
"""Default parent of run directories, under the working directory."""
UpdateHandler = Callable[[JobEvent], None]
_T = TypeVar("_T")


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
    """The request this route is sent, its data, and every setting nobody chose as given.

    Fields the caller left ``None`` take the route's default, recorded in ``adjusted`` as
    ``[None, default]``; fields the caller set must be allowed (``ValidationError``) unless
    ``adapt`` snaps them to the nearest allowed value, recorded as ``[asked, used]``.
    """
    filled, defaulted = capabilities.with_defaults(request, route)
    if not adapt:
        return filled, _validate_given(filled, route), dict(defaulted)
    adjusted, changes = capabilities.nearest(filled, route)
    caps = capabilities.validate(adjusted, route)
    return adjusted, caps, {**defaulted, **{name: list(pair) for name, pair in changes.items()}}


def _validate_given(request: VideoRequest, route: Route) -> capabilities.Capabilities:
    """`capabilities.validate`, saying how to get past a setting the route refuses."""
    try:
        return capabilities.validate(request, route)
    except ValidationError as exc:
        if exc.field not in ROUTE_DEFAULT_FIELDS:
            raise
        hint = f"{exc.allowed} (leave it unset for the route's default, or adapt)"
        raise ValidationError(exc.field, exc.value, hint, route=str(route)) from None


def _check_text(name: str, text: str | None) -> None:
    """Text must be storable as UTF-8 (a lone surrogate from undecodable command-line bytes
    is not): refused before anything is written, not half-way through writing the run."""
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(name, text, "valid UTF-8 text") from None


def plan_jobs(
    run_id: str,
    prompts: Sequence[str],
    routes: Sequence[Route],
    settings: Settings,
    *,
    repeats: int = 1,
    adapt: bool = False,
    emulate: bool = False,
    prices: Mapping[str, float] | None = None,
) -> list[Planned]:
    """Every (prompt, route, repeat) validated and priced; raises before any network call.

    User prices (``prices``, then the user's ``prices.toml``) replace the price table's.
    """
    for prompt in prompts:
        _check_text("prompt", prompt)
    _check_text("negative_prompt", settings.negative_prompt)
    overrides = capabilities.price_overrides(prices)
    planned = []
    for index, prompt in enumerate(prompts):
        for route in routes:
            sent, caps, adjusted = _prepare(VideoRequest.of(prompt, settings), route, adapt=adapt)
            caps = capabilities.priced(caps, route, overrides)
            emulated = emulate and not caps.runs_locally
            cost = costs.job_cost(caps, sent, emulated=emulated)
            for repeat in range(repeats):
                row = JobRow(
                    run_id=run_id,
                    prompt_index=index,
                    route=str(route),
                    repeat=repeat,
                    provider=route.provider,
                    model=route.model,
                    prompt=prompt,
                    settings=sent.as_dict(),
                    seed=sent.seed,
                    client_ref=uuid.uuid4().hex,
                    cost_usd=cost.charged_usd,
                    cost_estimate_usd=cost.estimate_usd,
                    cost_note=cost.note,
                    price_source=cost.source,
                    price_date=cost.date,
                    emulated=emulated,
                    adjusted=adjusted,
                )
                planned.append(Planned(row, sent, caps))
    return planned


def limiters_for(
    pairs: Iterable[tuple[str, capabilities.Capabilities]],
    concurrency: Mapping[str, int] | None = None,
    rate_per_min: Mapping[str, float] | None = None,
) -> dict[str, Limiter]:
    """One limiter per provider from ``(provider, caps)`` pairs: the tightest capability
    data (``concurrency``, ``rate_per_min``) unless the caller overrides it per provider."""
    caps_by: dict[str, list[capabilities.Capabilities]] = {}
    for provider, caps in pairs:
        caps_by.setdefault(provider, []).append(caps)
    limiters: dict[str, Limiter] = {}
    for provider, mine in caps_by.items():
        cap = (concurrency or {}).get(provider, min(c.concurrency for c in mine))
        rates = [c.rate_per_min for c in mine if c.rate_per_min]
        rate = (rate_per_min or {}).get(provider, min(rates) if rates else None)
        limiters[provider] = Limiter(max(1, cap), rate)
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
    prompts: Sequence[str], routes: Sequence[Route], settings: Settings, **options: object
) -> dict[str, object]:
    return {
        "prompts": list(prompts),
        "routes": [str(r) for r in routes],
        "settings": settings.as_dict(),
        **options,
    }


def model_routes(model: str, *, emulate: bool = False) -> list[Route]:
    """Every concrete route selling ``model`` that can run here: one whose provider has a key
    (every one with ``emulate=True``). Raises `ValidationError` when none can."""
    from abebeats_lab import config

    rows = capabilities.routes_for_model(model)
    sellers = [Route.parse(c.pattern) for c in rows]
    usable = [
        Route.parse(c.pattern)
        for c in rows
        if emulate or c.runs_locally or config.key_for(c.pattern.partition(":")[0], required=False)
    ]
    if not usable:
        missing = ", ".join(str(r) for r in sellers)
        raise ValidationError("model", model, f"a key for one of {missing} (or emulate)")
    return usable


def _unchecked_notes(planned: Sequence[Planned]) -> list[str]:
    """One note per route planned through a catch-all row (settings and price unchecked)."""
    seen = dict.fromkeys(p.row.route for p in planned if not p.caps.checked)
    return [f"{route}: {capabilities.capabilities_for(route).notes}" for route in seen]


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
    is downloaded, off the event loop (`quality.auto.AutoScorer`).
    """
    prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
    sellers = model_routes(model, emulate=emulate) if model else []
    route_list = list(dict.fromkeys([*(Route.parse(r) for r in routes), *sellers]))
    if not prompt_list or not route_list or repeats < 1:
        raise LabError("compare needs at least one prompt, one route and repeats >= 1")
    base = settings or Settings()
    run_id = new_run_id()
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
    estimate = costs.total((p.row.route, _cost_of(p.row)) for p in planned)
    notes = _unchecked_notes(planned)
    if emulate and max_cost_usd is not None:
        notes.append(costs.emulated_limit_note(estimate, max_cost_usd))
        log.info("%s", notes[-1])
    else:
        costs.check_limit(estimate, max_cost_usd)
    log.info("%s: %d jobs, %s", run_id, len(planned), estimate.describe())
    limiters = limiters_for(((p.row.provider, p.caps) for p in planned), concurrency, rate_per_min)
    eta = _estimated_time(planned, limiters)
    if dry_run:
        rows = [p.row for p in planned]
        return Comparison(
            rows, run_id, None, estimate=estimate, estimated_time_s=eta, dry_run=True, notes=notes
        )
    directory = _directory(run_dir, run_id)
    spec = _spec(
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
            scorer = _scorer(score, directory, on_update)
            context = RunContext(
                store, clients, limiters, on_update=scorer or on_update, policy=policy
            )
            await _scored(context.run_all([live_row(row) for row in rows]), scorer)
    result = load_run(directory, run_id)
    result.estimate, result.estimated_time_s, result.notes = estimate, eta, notes
    return result


def _scorer(
    score: bool | Executor, directory: Path, on_update: UpdateHandler | None
) -> AutoScorer | None:
    """The on_update handler that scores each new output (None when scoring is off)."""
    if score is False:
        return None
    from abebeats_lab.quality.auto import AutoScorer

    return AutoScorer(directory, None if score is True else score, forward=on_update)


async def _scored(work: Awaitable[_T], scorer: AutoScorer | None) -> _T:
    """``work``, then the clips still being scored (given up on if ``work`` fails)."""
    if scorer is None:
        return await work
    try:
        result = await work
    except BaseException:
        await scorer.close()
        raise
    await scorer.finish()
    return result


def _directory(run_dir: Path | str | None, run_id: str) -> Path:
    return Path(run_dir) if run_dir is not None else Path.cwd() / RUNS_DIR / run_id


def _cost_of(row: JobRow) -> costs.JobCost:
    source, date = row.price_source or "", row.price_date or ""
    return costs.JobCost(row.cost_usd, row.cost_estimate_usd, row.cost_note, source, date)


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
    with _reader(run_dir) as store:
        listings = []
        for info in store.runs():
            states = Counter(str(row.state) for row in store.rows(info.run_id))
            jobs = sum(states.values())
            listings.append(RunListing(info.run_id, info.created_at, info.kind, jobs, dict(states)))
        return listings


def _reader(run_dir: Path | str) -> RunStore:
    """The store opened to read: read-only where this process cannot write (a read-only
    folder or file); elsewhere as usual, so an older store is upgraded and SQLite's WAL
    files are cleaned up on close."""
    directory = Path(run_dir)
    path = directory / DB_NAME
    if not path.is_file():
        raise LabError(f"no run store in {directory} (expected {DB_NAME})")
    writable = os.access(directory, os.W_OK) and os.access(path, os.W_OK)
    return RunStore(directory, read_only=not writable)


def _pick(store: RunStore, run_id: str | None) -> RunInfo:
    """The run asked for, or the latest one with jobs (a run that failed before planning
    anything must not hide the good run before it)."""
    runs = store.runs()
    where = f"{store.run_dir} (abebeats-lab runs {shlex.quote(str(store.run_dir))} lists them)"
    if run_id is not None:
        found = next((info for info in runs if info.run_id == run_id), None)
        if found is None:
            raise LabError(f"no run {run_id} in {where}")
        return found
    for info in reversed(runs):
        if store.rows(info.run_id):
            return info
    raise LabError(f"no run with jobs in {where}")


def load_run(run_dir: Path | str, run_id: str | None = None) -> Comparison:
    """The rows of a stored run (default: the latest run in the directory that has jobs).

    A run asked for by id comes back even when it has no jobs (``len()`` is 0). A read-only
    run folder can be read.
    """
    directory = Path(run_dir)
    with _reader(directory) as store:
        info = _pick(store, run_id)
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
    directory = Path(run_dir)
    chosen = load_run(directory, run_id)
    if not chosen.rows:
        raise LabError(f"run {chosen.run_id} in {directory} has no jobs: nothing to resume")
    if not any(_to_finish(row, rerun_cancelled) for row in chosen.rows):
        return chosen  # every job is final: nothing to send, nothing to write (a read-only folder)
    with hold_run(directory, chosen.run_id), RunStore(directory) as store:
        info = next(r for r in store.runs() if r.run_id == chosen.run_id)
        todo, recheck = _resume_plan(store, info, emulate=emulate, rerun_cancelled=rerun_cancelled)
        _remove_partial_downloads(store.outputs_dir)
        for row in todo:
            store.save(row)
        done = await _run_rows(store, todo, info.spec, emulate, on_update, policy)
        # A re-attached job the provider reports cancelled made no video: send it again.
        again = [_fresh(r) for r in done if r.key in recheck and r.state is JobState.CANCELED]
        for row in again:
            store.save(row)
        await _run_rows(store, again, info.spec, emulate, on_update, policy)
    return load_run(directory, chosen.run_id)


def _to_finish(row: JobRow, rerun_cancelled: bool) -> bool:
    """Whether `resume` has anything to do for this row."""
    return row.state.unfinished or (rerun_cancelled and was_interrupted(row))


def _resume_plan(
    store: RunStore, info: RunInfo, *, emulate: bool, rerun_cancelled: bool
) -> tuple[list[JobRow], set[tuple[int, str, int]]]:
    """The rows `resume` runs (as they must be stored first) and the keys of those it
    re-attaches only to learn whether their job still runs; raises before any request."""
    emulated_run = bool(info.spec.get("emulate"))
    rows = list(store.unfinished(info.run_id))
    lost = [r for r in rows if emulated_run and r.emulated and r.state is not JobState.PLANNED]
    if lost and not rerun_cancelled:
        raise LabError(_lost_message(len(lost)))
    fresh, recheck = (
        _rerun_plan(store.rows(info.run_id), emulated_run) if rerun_cancelled else ([], [])
    )
    lost_keys = {r.key for r in lost}
    todo = [r for r in rows if r.key not in lost_keys] + [_fresh(r) for r in lost + fresh]
    todo += [r.evolve(state=JobState.QUEUED, error=None) for r in recheck]
    if emulated_run and not emulate and any(r.emulated for r in todo):
        raise LabError(
            "this run was emulated: resume it with --emulate (emulate=True), "
            "or its jobs would go to the real, paid providers"
        )
    return todo, {r.key for r in recheck}


INTERRUPTED = "comparison cancelled"
"""How every error `RunContext` writes on a row cancelled by our own cancel begins."""
CANCEL_CONFIRMED = "comparison cancelled; remote job cancelled"
"""The provider acknowledged the cancel: its job will not finish."""
NEVER_SENT = "comparison cancelled before submit"
RUN_FIELDS = (
    "job_id", "handles", "state", "error", "progress", "timing", "output_path", "sha256",
    "duration_s", "width", "height", "fps", "codec", "has_audio", "bytes", "duration_ok",
    "ratio_ok", "resolution_ok", "submitted_at", "finished_at",
)  # fmt: skip
"""What a job's run wrote on its row; a rerun starts from the plan without them."""


def was_interrupted(row: JobRow) -> bool:
    """True for a row cancelled because its comparison was (Ctrl-C, a kernel interrupt)."""
    return row.state is JobState.CANCELED and (row.error or "").startswith(INTERRUPTED)


def _rerun_plan(rows: Sequence[JobRow], emulated_run: bool) -> tuple[list[JobRow], list[JobRow]]:
    """Interrupted rows split into (submit again now, re-attach first): see `resume`."""
    fresh: list[JobRow] = []
    recheck: list[JobRow] = []
    for row in filter(was_interrupted, rows):
        gone = row.job_id is None or row.error in (CANCEL_CONFIRMED, NEVER_SENT)
        # An in-process emulator's jobs died with it: nothing to re-attach, nothing to pay.
        (fresh if gone or (emulated_run and row.emulated) else recheck).append(row)
    return fresh, recheck


def _fresh(row: JobRow) -> JobRow:
    """The row as planned, with a new client reference: a new job, not the old one."""
    blank = JobRow(row.run_id, row.prompt_index, row.route, row.repeat, "", "", "")
    defaults = {name: getattr(blank, name) for name in RUN_FIELDS}
    return row.evolve(**defaults, client_ref=uuid.uuid4().hex)


def _lost_message(count: int) -> str:
    return (
        f"{count} job(s) of this emulated run were in flight in emulators that stopped with "
        "the process that ran them, so they cannot be re-attached: resume with --emulate "
        "--rerun-cancelled (rerun_cancelled=True) to submit them again to new emulators "
        "(free), or start a new compare"
    )


async def _run_rows(
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


def _remove_partial_downloads(folder: Path) -> None:
    """Delete half-written downloads a killed process left behind (resume fetches them again)."""
    for stale in folder.glob(PARTIAL_GLOB):
        stale.unlink(missing_ok=True)


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
    settings: Settings | None = None,
    *,
    fallback: bool = True,
    run_dir: Path | str | None = None,
    emulate: bool = False,
    on_update: UpdateHandler | None = None,
    policy: WaitPolicy | None = None,
    adapt: bool = False,
    prices: Mapping[str, float] | None = None,
) -> GenerateResult:
    """Try ``routes`` in order until one succeeds (only the first with ``fallback=False``).

    Every route is validated and every client opened first; every attempt is a stored row.
    Settings left ``None`` take each route's default; a setting a route refuses
    raises `ValidationError` before anything is sent, unless ``adapt=True`` snaps it to the
    nearest value that route allows (recorded in the row's ``adjusted``).

    ``prices`` supplies USD per second per route, as in `compare`.
    Raises `AllRoutesFailed` (a `JobFailed`) listing each attempt's reason if none succeeds,
    and `ProviderError` without trying further routes when a job's status could not be read
    (the job may still finish; `resume` collects it).
    """
    (result,) = await generate_many(
        [prompt], routes, settings, fallback=fallback, run_dir=run_dir,
        emulate=emulate, on_update=on_update, policy=policy, adapt=adapt, prices=prices,
    )  # fmt: skip
    return result


@dataclass(frozen=True)
class _Chain:
    """One prompt's fallback chain: its routes' planned rows, in order, and its label."""

    index: int
    tries: list[Planned]
    label: str | None = None
    earlier: list[JobRow] = field(default_factory=list)
    """Rows a previous pass of the same run left for this prompt (continued runs only)."""

    def tag(self, route: str) -> str:
        """The route, prefixed by the chain's label in errors (``shot 3 runway:gen4.5``)."""
        return f"{self.label} {route}" if self.label else route


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
    (``labels`` prefix each route in `AllRoutesFailed`, e.g. ``shot 3``). ``score``: as in
    `compare`.
    """
    route_list = [Route.parse(r) for r in routes][: None if fallback else 1]
    prompt_list = list(prompts)
    if not route_list or not prompt_list:
        raise LabError("generate needs at least one prompt and one route")
    sent = _settings_for(prompt_list, settings)
    run_id = continue_run or new_run_id()
    directory = _directory(run_dir, run_id)
    chains = [
        _Chain(
            i, _chain_plan(run_id, i, p, s, route_list, adapt, emulate, prices), _label(labels, i)
        )
        for i, (p, s) in enumerate(zip(prompt_list, sent, strict=True))
    ]
    if continue_run is not None:
        chains = _continued(directory, run_id, chains)
    limiters = limiters_for(
        ((p.row.provider, p.caps) for c in chains for p in c.tries), concurrency
    )
    options = dict(
        fallback=fallback, emulate=emulate, adapt=adapt, concurrency=dict(concurrency or {})
    )
    if any(s != sent[0] for s in sent):
        options["settings_per_prompt"] = [s.as_dict() for s in sent]
    record = _spec(prompt_list, route_list, sent[0], **options, **(spec or {}))
    providers = {p.row.provider for c in chains for p in c.tries}
    async with connect(providers, emulate=emulate) as clients:
        with hold_run(directory, run_id), RunStore(directory) as store:
            if continue_run is None:
                store.add_run(run_id, datetime.now(UTC).isoformat(), kind, record)
            scorer = _scorer(score, directory, on_update)
            context = RunContext(
                store, clients, limiters, on_update=scorer or on_update, policy=policy
            )
            slots = asyncio.Semaphore(parallel or len(chains))
            return await _scored(_run_chains(context, chains, slots, directory), scorer)


def _settings_for(
    prompts: Sequence[str], settings: Settings | Sequence[Settings] | None
) -> list[Settings]:
    """One `Settings` per prompt: the same for all, or the caller's list (same length)."""
    if settings is None or isinstance(settings, Settings):
        return [settings or Settings()] * len(prompts)
    if len(settings) != len(prompts):
        raise LabError(f"{len(settings)} settings for {len(prompts)} prompts: give one or one each")
    return list(settings)


def _label(labels: Sequence[str] | None, index: int) -> str | None:
    return labels[index] if labels is not None else None


def _chain_plan(
    run_id: str,
    index: int,
    prompt: str,
    settings: Settings,
    routes: Sequence[Route],
    adapt: bool,
    emulate: bool,
    prices: Mapping[str, float] | None,
) -> list[Planned]:
    """One prompt's rows, one per route in order, validated and priced."""
    planned = plan_jobs(
        run_id, [prompt], routes, settings, adapt=adapt, emulate=emulate, prices=prices
    )
    return [replace(p, row=p.row.evolve(prompt_index=index)) for p in planned]


def _continued(directory: Path, run_id: str, chains: Sequence[_Chain]) -> list[_Chain]:
    """The chains of a stored run, each with its earlier rows and the next free ``repeat``."""
    with RunStore(directory) as store:
        stored = store.rows(run_id)
    blocking = [
        r for r in stored
        if r.state.unfinished or (r.state is JobState.AMBIGUOUS and not r.emulated)
    ]  # fmt: skip
    if blocking:
        raise LabError(
            f"{len(blocking)} job(s) of run {run_id} in {directory} are unfinished or "
            f"ambiguous: run `abebeats-lab resume {directory}` first (nothing was sent)"
        )
    continued = []
    for chain in chains:
        mine = [r for r in stored if r.prompt_index == chain.index]
        again = max((r.repeat for r in mine), default=-1) + 1
        tries = [replace(p, row=p.row.evolve(repeat=again)) for p in chain.tries]
        continued.append(replace(chain, tries=tries, earlier=mine))
    return continued


def _reusable(chain: _Chain, directory: Path) -> GenerateResult | None:
    """The earlier success of this chain's prompt on one of its routes, if its video is here."""
    prompt, routes = chain.tries[0].row.prompt, {p.row.route for p in chain.tries}
    for row in chain.earlier:
        path = directory / (row.output_path or "")
        ok = row.state is JobState.SUCCEEDED and row.output_path and path.is_file()
        if ok and row.prompt == prompt and row.route in routes:
            failures = [r for r in chain.earlier if r is not row]
            return GenerateResult(row, path, failures, directory)
    return None


async def _run_chains(
    context: RunContext, chains: Sequence[_Chain], slots: asyncio.Semaphore, directory: Path
) -> list[GenerateResult]:
    """Every chain at once under ``slots``; the first failure cancels the rest and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_run_chain(context, c, slots, directory)) for c in chains]
    except* Exception as failures:
        # Callers catch our errors, not groups: the first one stands for the batch.
        first: BaseException = failures
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


async def _run_chain(
    context: RunContext, chain: _Chain, slots: asyncio.Semaphore, directory: Path
) -> GenerateResult:
    """Try the chain's routes in order until one succeeds; every attempt is a stored row."""
    reused = _reusable(chain, directory)
    if reused is not None:
        return reused
    failures: list[JobRow] = list(chain.earlier)
    tried: list[JobRow] = []
    async with slots:
        for item in chain.tries:
            row = item.row.evolve(emulated=context.clients.emulated(item.row.provider))
            context.store.insert([row])  # only when tried: resume must not try later routes
            done = await context.run_one(live_row(row))
            if done.state is JobState.SUCCEEDED and done.output_path:
                return GenerateResult(done, directory / done.output_path, failures, directory)
            if done.state.unfinished:
                # The job lives on (its status could not be read): trying the next route
                # would pay for a second video while this one may still arrive.
                raise ProviderError(
                    f"{chain.tag(done.route)}: {done.error}; no other route was tried. "
                    f"Resume the run in {directory} to collect it",
                    provider=done.provider,
                )
            failures.append(done)
            tried.append(done)
    raise AllRoutesFailed((chain.tag(r.route), r.error or r.state) for r in tried)
