"""Fallback chains: each prompt tries its routes in order until one makes a video.

`generate_many` runs one chain per prompt, all in one run under the same limiters. A
route's row is stored only when that route is tried, so `resume` collects a job in flight
and never tries a later route; a job whose status could not be read stops its chain (the
next route would pay for a second video). A continued run reuses a prompt's earlier
success and numbers new attempts with the next ``repeat``.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from abebeats_lab._types import JobState, Route, Settings
from abebeats_lab.errors import AllRoutesFailed, LabError, ProviderError
from abebeats_lab.run.job import RunContext, live_row
from abebeats_lab.run.plan import Planned, plan_jobs
from abebeats_lab.run.resume_plan import may_still_run
from abebeats_lab.store import JobRow, RunStore

__all__ = ["Chain", "GenerateResult", "continued", "plan_chains", "run_chains"]


@dataclass(frozen=True)
class GenerateResult:
    """The first route that succeeded, its video, and every attempt that failed before it."""

    row: JobRow
    output_path: Path
    failures: list[JobRow] = field(default_factory=list)
    run_dir: Path | None = None


@dataclass(frozen=True)
class Chain:
    """One prompt's fallback chain: its routes' planned rows, in order, and its label."""

    index: int
    tries: list[Planned]
    label: str | None = None
    earlier: list[JobRow] = field(default_factory=list)
    """Rows a previous pass of the same run left for this prompt (continued runs only)."""

    def tag(self, route: str) -> str:
        """The route, prefixed by the chain's label in errors (``shot 3 runway:gen4.5``)."""
        return f"{self.label} {route}" if self.label else route


def plan_chains(
    run_id: str,
    prompts: Sequence[str],
    settings: Sequence[Settings],
    routes: Sequence[Route],
    labels: Sequence[str] | None,
    adapt: bool,
    emulate: bool,
    prices: Mapping[str, float] | None,
) -> list[Chain]:
    """One chain per prompt (with its settings and label), validated and priced."""
    return [
        Chain(i, _chain_plan(run_id, i, p, s, routes, adapt, emulate, prices), _label(labels, i))
        for i, (p, s) in enumerate(zip(prompts, settings, strict=True))
    ]


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


def continued(directory: Path, run_id: str, chains: Sequence[Chain]) -> list[Chain]:
    """The chains of a stored run, each with its earlier rows and the next free ``repeat``.

    Raises `LabError` before anything is sent while a job of the run may still make a video:
    unfinished, or interrupted with its cancel unconfirmed (`resume` settles those; the
    message names the command), or an ambiguous paid create (only the provider's dashboard
    can; the message says so). A new attempt would pay twice.
    """
    with RunStore(directory) as store:
        stored = store.rows(run_id)
        emulated_run = any(i.spec.get("emulate") for i in store.runs() if i.run_id == run_id)
    interrupted = [r for r in stored if may_still_run(r, emulated_run)]
    blocking = interrupted + [r for r in stored if r.state.unfinished]
    if blocking:
        command = _resume_command(directory, run_id, emulated_run, bool(interrupted))
        raise LabError(
            f"{len(blocking)} job(s) of run {run_id} in {directory} are unfinished or "
            f"interrupted and may still finish: run `{command}` first (nothing was sent)"
        )
    # `resume` cannot settle these: the provider can't be asked whether the job exists.
    if ambiguous := [r for r in stored if r.state is JobState.AMBIGUOUS and not r.emulated]:
        raise LabError(
            f"{len(ambiguous)} create(s) of run {run_id} in {directory} are ambiguous: the "
            "provider may have made (and charged) their jobs and cannot be asked which; check "
            "its dashboard, and use a new run folder to send them again (nothing was sent)"
        )
    chains_now = []
    for chain in chains:
        mine = [r for r in stored if r.prompt_index == chain.index]
        again = max((r.repeat for r in mine), default=-1) + 1
        tries = [replace(p, row=p.row.evolve(repeat=again)) for p in chain.tries]
        chains_now.append(replace(chain, tries=tries, earlier=mine))
    return chains_now


def _resume_command(directory: Path, run_id: str, emulated_run: bool, interrupted: bool) -> str:
    """The `resume` that settles a run's blocking rows: an emulated run's lost jobs and
    interrupted rows need ``--rerun-cancelled`` (and the former ``--emulate``)."""
    words = ["abebeats-lab", "resume", str(directory), "--run", run_id]
    words += ["--emulate"] if emulated_run else []
    words += ["--rerun-cancelled"] if emulated_run or interrupted else []
    return shlex.join(words)


def _reusable(chain: Chain, directory: Path) -> GenerateResult | None:
    """The earlier success of this chain's prompt on one of its routes, if its video is here."""
    prompt, routes = chain.tries[0].row.prompt, {p.row.route for p in chain.tries}
    for row in chain.earlier:
        path = directory / (row.output_path or "")
        ok = row.state is JobState.SUCCEEDED and row.output_path and path.is_file()
        if ok and row.prompt == prompt and row.route in routes:
            failures = [r for r in chain.earlier if r is not row]
            return GenerateResult(row, path, failures, directory)
    return None


async def run_chains(
    context: RunContext, chains: Sequence[Chain], slots: asyncio.Semaphore, directory: Path
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
    context: RunContext, chain: Chain, slots: asyncio.Semaphore, directory: Path
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
