"""The life of one job inside a run: submit, record, wait, download, figure, store.

`RunContext.run_one` walks a stored row from wherever it stands (``planned``,
``submitting``, in flight, ``downloading``) to a final state, writing the store at every
step: ``submitting`` before the create call, the provider's id right after it and before
the first status request. Every exception except cancellation ends as a failed row, except a
local one (disk full, a folder not writable) or a stalled download after the remote job
succeeded: that row stays ``downloading`` with the reason, for `resume`. Nothing a row meets
escapes `run_one` but cancellation, so one row never cancels its siblings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from abebeats_lab import capabilities, config, history
from abebeats_lab._text import cut
from abebeats_lab._types import (
    Job,
    JobState,
    JobStatus,
    Output,
    OutputRef,
    Route,
    VideoRequest,
)
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    DownloadError,
    ProtocolError,
    ProviderHTTPError,
    ProviderTransportError,
)
from abebeats_lab.http import RETRY_STATUSES
from abebeats_lab.media.download import (
    DownloadStalled,
    DownloadTruncated,
    safe_name,
    save_output,
)
from abebeats_lab.providers import Provider
from abebeats_lab.run import costs
from abebeats_lab.run.connect import Clients
from abebeats_lab.run.timing import Clock, Marks, build_timing, with_submit
from abebeats_lab.store import JobRow, RunStore
from abebeats_lab.views.comparison import output_fields
from abebeats_lab.waiting import CANCEL_TIMEOUT_S, WaitPolicy, WaitResult, cancel_remote, wait

if TYPE_CHECKING:
    from abebeats_lab.run.limits import Limiter

__all__ = ["JobEvent", "Live", "RunContext", "live_row"]

log = logging.getLogger("abebeats_lab.run.api")

SUBMIT_GRACE_S = 10.0
"""After a cancel, how long a create already sent may take to answer so we can cancel its job."""
LOOKUP_GRACE_S = 1.0
"""The same, for a provider that can look the create up instead (its create may be held)."""
CANCELLED = "comparison cancelled; remote job cancelled"
CANCEL_ASKED = "comparison cancelled; the provider was asked to cancel the remote job"
NOT_CANCELLABLE = (
    "comparison cancelled; this provider cannot cancel a job, so it may still finish "
    "(and be charged)"
)
HASH_CHARS = 12
"""Hex digits of the content hash in an output's file name."""
AMBIGUOUS = (
    "the create call was sent but its answer was lost (the process stopped mid-create); "
    "the provider offers no reconcile, so it was not resubmitted: check the provider's "
    "dashboard before running it again"
)

DOWNLOAD_ATTEMPTS = 3
LOST_SIGHT = (
    "its status could not be read, so the job was left running with its id kept: "
    "`abebeats-lab resume` asks again"
)
NEVER_ARRIVED = "the provider shows no job from it, so nothing was charged"
RESUBMITTED = "reconciled: the provider shows no job from the lost create; submitted again"
DOWNLOAD_LATER = (
    "the job succeeded but its video was not saved here, so the row keeps its id: "
    "`abebeats-lab resume` downloads it later (while the provider keeps the output)"
)


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One change of one job, for ``on_update`` (progress bars, widgets, the CLI)."""

    run_id: str
    key: tuple[int, str, int]
    """(prompt_index, route, repeat)."""
    route: str
    prompt: str
    state: JobState
    progress: float | None = None
    queue_position: int | None = None
    elapsed_s: float | None = None
    error: str | None = None
    output_path: str | None = None


@dataclass
class Live:
    """A row being worked on, with the client-side facts that are not stored."""

    row: JobRow
    job: Job | None = None
    marks: Marks | None = None
    result: WaitResult | None = None
    output: Output | None = None


def live_row(row: JobRow) -> Live:
    """Wrap a stored row for `RunContext.run_one`."""
    return Live(row)


def request_of(row: JobRow) -> VideoRequest:
    """The request a row sent (or will send), rebuilt from its stored settings."""
    return VideoRequest(**row.settings)


def _parse_time(text: str | None) -> datetime:
    return datetime.fromisoformat(text) if text else datetime.now(UTC)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _local(exc: BaseException) -> bool:
    """A failure of this machine (disk full, a folder not writable), not of the job.

    TimeoutError is an OSError too, but never a local file problem.
    """
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


class RunContext:
    """Everything the jobs of one run share: store, clients, limits, policy, callback."""

    def __init__(
        self,
        store: RunStore,
        clients: Clients,
        limiters: Mapping[str, Limiter],
        *,
        on_update: Callable[[JobEvent], None] | None = None,
        policy: WaitPolicy | None = None,
    ) -> None:
        self.store = store
        self.clients = clients
        self.limiters = limiters
        self.on_update = on_update
        self.policy = policy
        # One reconcile at a time, so two lost creates never claim the same remote job.
        self._reconcile_lock = asyncio.Lock()
        # A create lost by an earlier process is older than this one; jobs newer than this
        # belong to creates this process is making (identical inputs must not be claimed).
        self._started_at = datetime.now(UTC)

    async def run_all(self, lives: Sequence[Live]) -> None:
        """Run every job at once under the limits; returns when all are final."""
        async with asyncio.TaskGroup() as group:
            for live in lives:
                group.create_task(self.run_one(live))

    async def run_one(self, live: Live) -> JobRow:
        """Take one row to a final state; only cancellation escapes."""
        try:
            async with self.limiters[live.row.provider].slots:
                await self._advance(live)
        except asyncio.CancelledError:
            self._on_cancel(live)
            raise
        except Exception as exc:
            try:
                self._finish(live, JobState.FAILED, _error_text(exc))
            except Exception:  # the store cannot take it (disk full): the row stays as stored
                log.exception("could not store the failure of %s; resume settles it", live.row.key)
        return live.row

    async def _advance(self, live: Live) -> None:
        state = live.row.state
        if state is JobState.PLANNED:
            await self.limiters[live.row.provider].pace()
            await self._submit(live)
        elif state in (JobState.SUBMITTING, JobState.AMBIGUOUS):
            await self._reconcile(live)
        else:
            self._reattach(live)
        if live.job is not None:
            await self._follow(live)

    # -- state and events --------------------------------------------------------------

    def _save(self, live: Live, **changes: Any) -> None:
        if changes.get("error"):  # provider words may echo a key back, or run to megabytes
            changes["error"] = cut(config.scrub(changes["error"]))  # scrubbed whole, then cut
        live.row = live.row.evolve(**changes)
        self.store.save(live.row)

    def _emit(self, live: Live, state: JobState, status: JobStatus | None = None) -> None:
        if self.on_update is None:
            return
        row = live.row
        event = JobEvent(
            row.run_id,
            row.key,
            row.route,
            row.prompt,
            state,
            progress=status.progress if status else None,
            queue_position=status.queue_position if status else None,
            elapsed_s=self._elapsed(live),
            error=row.error,
            output_path=row.output_path,
        )
        try:
            self.on_update(event)
        except Exception:  # a broken progress view must not lose a paid job
            log.exception("on_update callback failed; the run continues")

    def _elapsed(self, live: Live) -> float | None:
        marks = live.marks
        if marks is None:
            return None
        if marks.submit_start is not None:
            return time.monotonic() - marks.submit_start
        return (datetime.now(UTC) - marks.submitted_at).total_seconds()

    def _on_cancel(self, live: Live) -> None:
        state = live.row.state
        if state is JobState.PLANNED:
            self._save(live, state=JobState.CANCELED, error="comparison cancelled before submit")
        elif state in (JobState.QUEUED, JobState.RUNNING):
            # `waiting.wait` has cancelled the remote job on its way out, where it could.
            can_cancel = self.clients[live.row.provider].can_cancel
            self._save(
                live, state=JobState.CANCELED, error=CANCEL_ASKED if can_cancel else NOT_CANCELLABLE
            )
        # Submitting and downloading rows stay as they are: resume settles them.

    # -- submit ------------------------------------------------------------------------

    async def _submit(self, live: Live) -> None:
        provider = self.clients[live.row.provider]
        marks = live.marks = Marks(submitted_at=datetime.now(UTC))
        self._save(live, state=JobState.SUBMITTING, submitted_at=marks.submitted_at.isoformat())
        self._emit(live, JobState.SUBMITTING)
        marks.submit_start = time.monotonic()
        task = asyncio.ensure_future(
            provider.submit(request_of(live.row), Route.parse(live.row.route))
        )
        deadline_s = self._policy(live.row.route).deadline_s
        deadline = asyncio.timeout(deadline_s)
        try:
            # The deadline bounds create + wait together (a held or hung create included).
            async with deadline:
                job = await asyncio.shield(task)
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the provider's own: an ordinary failure of this row
            task.cancel()  # sent, unanswered: the job may exist, so it is settled, not resent
            exc = AmbiguousSubmitError(
                f"the create did not answer within the {deadline_s:g} s deadline",
                provider=live.row.provider,
            )
            self._save(live, state=JobState.AMBIGUOUS, error=_error_text(exc))
            self._emit(live, JobState.AMBIGUOUS)
            await self._reconcile(live, resubmit=False)
            return
        except asyncio.CancelledError:
            await self._settle_cancelled_submit(live, provider, task)
            raise
        except AmbiguousSubmitError as exc:
            self._save(live, state=JobState.AMBIGUOUS, error=_error_text(exc))
            self._emit(live, JobState.AMBIGUOUS)
            await self._reconcile(live)
            return
        marks.submit_end = time.monotonic()
        marks.accepted_at = datetime.now(UTC)
        self._attach(live, job, marks.submit_end - marks.submit_start)

    def _attach(self, live: Live, job: Job, submit_s: float | None) -> None:
        """Commit the provider's id (before any status request) and mark the job queued.

        A provider that found an emulator on the other end (it says so in every answer) makes
        the row emulated and free, however the emulator was started.
        """
        live.job = job
        changes: dict[str, Any] = {}
        if self.clients.emulated(live.row.provider) and not live.row.emulated:
            changes = {"emulated": True, "cost_usd": 0.0, "cost_note": costs.NOTE_EMULATED}
        self._save(
            live,
            job_id=job.id,
            handles=dict(job.handles),
            state=JobState.QUEUED,
            timing=with_submit(live.row.timing, submit_s),
            **changes,
        )
        self._emit(live, JobState.QUEUED)

    async def _settle_cancelled_submit(
        self, live: Live, provider: Provider, task: asyncio.Future[Job]
    ) -> None:
        """A create was in flight when we were cancelled: find its job and cancel it.

        The answer gets a grace period. A provider that can look a lost create up (Replicate,
        whose create may be held for a minute) is asked through its list after a short one,
        but only while the create's fate is unknown: one that failed outright made no job.
        Unsettled, the row stays ``submitting`` and `resume` settles it.
        """
        lookup = provider.can_reconcile
        done, _ = await asyncio.wait({task}, timeout=LOOKUP_GRACE_S if lookup else SUBMIT_GRACE_S)
        job: Job | None = None
        if not done:
            task.cancel()
        elif task.cancelled():
            return
        elif (failure := task.exception()) is None:
            job = task.result()
        elif not isinstance(failure, AmbiguousSubmitError):
            return  # refused or never sent: there is no job to cancel
        if lookup and (job is None or job.id in self._claimed(live)):
            # Unknown, or a sibling's lookup took this job before its id was stored (identical
            # inputs look alike): then the sibling's own job is the one left to find.
            job = await self._look_up(live, provider)  # attached there, inside the lock
        elif job is not None:
            self._attach(live, job, None)
        if job is not None:
            self._save(live, state=JobState.CANCELED, error=await _cancelled_remote(provider, job))

    async def _look_up(self, live: Live, provider: Provider) -> Job | None:
        """One lookup under the reconcile lock; the time limit (a cancel's) is for the lookup
        itself."""
        async with self._reconcile_lock:
            try:
                async with asyncio.timeout(CANCEL_TIMEOUT_S):
                    found = await provider.reconcile(self._hint(live), exclude=self._claimed(live))
            except Exception:  # settling after a cancel is best effort; resume settles the rest
                return None
            if found is not None:
                self._attach(live, found, None)  # stored inside the lock: no sibling can claim it
            return found

    def _hint(self, live: Live) -> Job:
        """What a lost create looked like, for `reconcile`: everything but the id."""
        row = live.row
        submitted = _parse_time(row.submitted_at)
        return Job(
            Route.parse(row.route), "", request_of(row), submitted, {"client_ref": row.client_ref}
        )

    def _claimed(self, live: Live) -> set[str]:
        """Job ids other rows of this run already own."""
        return {row.job_id for row in self.store.rows(live.row.run_id) if row.job_id}

    async def _reconcile(self, live: Live, *, resubmit: bool = True) -> None:
        """Settle a create whose answer was lost: ask the provider, never resubmit blindly.

        `Provider.reconcile` returns the job, returns None only when it proves there is none
        (then the row is sent again, unless ``resubmit`` is False because the deadline has
        passed: then it fails), and raises `AmbiguousSubmitError` when it cannot tell (then
        the row stays ambiguous). A provider that cannot look creates up
        (``can_reconcile`` False) leaves the row ambiguous at once.
        """
        provider = self.clients[live.row.provider]
        if not provider.can_reconcile:
            self._save(live, state=JobState.AMBIGUOUS, error=live.row.error or AMBIGUOUS)
            self._emit(live, JobState.AMBIGUOUS)
            return
        hint = self._hint(live)
        async with self._reconcile_lock:
            before = self._started_at if live.marks is None else None
            try:
                job = await provider.reconcile(
                    hint, exclude=self._claimed(live), created_before=before
                )
            except AmbiguousSubmitError as exc:
                self._save(live, state=JobState.AMBIGUOUS, error=_error_text(exc))
                self._emit(live, JobState.AMBIGUOUS)
                return
            if job is not None:
                if live.marks is None:  # resumed: this process never saw the submit
                    live.marks = Marks(submitted_at=hint.submitted_at)
                self._attach(live, job, None)  # stored now, so the next row cannot claim it
                return
        if not resubmit:
            self._finish(live, JobState.FAILED, f"{live.row.error}; {NEVER_ARRIVED}")
            return
        # The provider's own list proves the create never arrived: sending it is not paying twice.
        self._save(live, state=JobState.PLANNED, error=RESUBMITTED)
        await self.limiters[live.row.provider].pace()
        await self._submit(live)

    def _reattach(self, live: Live) -> None:
        """Rebuild the Job of an in-flight row from the store (resume)."""
        row = live.row
        submitted = _parse_time(row.submitted_at)
        live.job = Job(
            Route.parse(row.route), row.job_id or "", request_of(row), submitted, dict(row.handles)
        )
        submit_s = row.timing.submit_s
        accepted = submitted + timedelta(seconds=submit_s) if submit_s is not None else None
        live.marks = Marks(
            submitted_at=submitted,
            accepted_at=accepted,
            prior_submit_s=submit_s,
            prior_polls=row.timing.polls,
        )

    # -- wait and download -------------------------------------------------------------

    def _policy(self, route: str, *, emulated: bool = False) -> WaitPolicy:
        """The caller's policy, with run times learnt from this user's history of ``route``.

        The per-user history (every run folder feeds it) comes first; this run folder's own
        rows stand in while it has too few; then the route's typical run time, as a prior.
        Emulated and real run times never stand in for each other: a row or a client that
        says emulated is emulated.
        """
        base = self.policy or WaitPolicy()
        if base.expected_run_s is not None:
            return base
        emulated = emulated or self.clients.emulated(Route.parse(route).provider)
        prior = history.run_time_prior(route, emulated=emulated) or self.store.run_time_prior(
            route, emulated=emulated
        )
        if prior is None:
            return replace(base, expected_run_s=capabilities.capabilities_for(route).typical_run_s)
        return replace(base, expected_run_s=prior[0], spread_s=prior[1])

    def _record_run_time(self, live: Live) -> None:
        """Teach the per-user history this succeeded job's run time."""
        row = live.row
        run_s, source = row.timing.run_s, row.timing.sources.get("run_s")
        sample = history.run_time_sample(live.result, run_s, source)
        emulated = row.emulated or self.clients.emulated(row.provider)
        history.record(row.route, sample, emulated=emulated)

    def _observe(self, live: Live, status: JobStatus) -> None:
        if status.state is not live.row.state and not status.state.terminal:
            self._save(live, state=status.state.value)
        self._emit(live, status.state, status)

    async def _follow(self, live: Live) -> None:
        assert live.job is not None
        provider = self.clients[live.row.provider]
        policy = self._policy(live.row.route, emulated=live.row.emulated)
        # A create this process sent started the deadline; a resumed row's clock starts now.
        started = live.marks.submit_start if live.marks is not None else None
        try:
            result = live.result = await wait(
                provider,
                live.job,
                policy=policy,
                on_update=lambda _job, s: self._observe(live, s),
                started_at=started,
            )
        except (ProtocolError, ProviderTransportError, ProviderHTTPError) as exc:
            if isinstance(exc, ProviderHTTPError) and exc.status_code not in RETRY_STATUSES:
                raise  # the provider's own answer about this job (gone, forbidden): final
            # We lost sight of a job that is still paid for: keep the row resumable.
            self._save(live, error=f"{_error_text(exc)}; {LOST_SIGHT}")
            self._emit(live, live.row.state)
            return
        status = result.status
        if status.state is not JobState.SUCCEEDED:
            reason = status.error or f"ended {status.raw_status}"
            if status.error_code:
                reason += f" [{status.error_code}]"
            self._finish(live, status.state, reason)
            return
        self._save(live, state=JobState.DOWNLOADING)
        self._emit(live, JobState.DOWNLOADING)
        try:
            live.output = await self._download(live, provider, status)
        except Exception as exc:
            if not (_local(exc) or isinstance(exc, DownloadStalled)):
                raise
            # Paid for and done remotely: never a final failure for a local reason. If even
            # the reason cannot be stored, the row is still ``downloading`` for resume.
            try:
                self._save(live, error=f"{_error_text(exc)}; {DOWNLOAD_LATER}")
            except Exception:
                log.exception("could not store why %s was not downloaded", live.row.key)
            self._emit(live, JobState.DOWNLOADING)
            return
        self._finish(live, JobState.SUCCEEDED, None)
        self._record_run_time(live)

    async def _download(self, live: Live, provider: Provider, status: JobStatus) -> Output:
        job, marks, row = live.job, live.marks, live.row
        assert job is not None and marks is not None
        refs = await provider.outputs(job, status)
        if not refs:
            raise DownloadError("the job succeeded but listed no output")
        # The attempt's own ref in the name: runs sharing a folder (a music video's shots) never
        # write the same file at once.
        attempt_name = safe_name(row.route, row.prompt_index, row.repeat, row.client_ref[:8])
        dest = self.store.outputs_dir / f"{attempt_name}.mp4"
        marks.download_start = time.monotonic()
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                output = await save_output(
                    refs[0], dest, refresh=_refresher(provider, job), origin=provider.base_url
                )
                break
            except DownloadTruncated:
                # The result is paid for and its URL still good: a cut-off body is worth a retry.
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise
        final = dest.with_name(
            f"{safe_name(row.route, row.prompt_index, row.repeat, output.sha256[:HASH_CHARS])}.mp4"
        )
        output.path.replace(final)
        marks.download_end = time.monotonic()
        return replace(output, path=final)

    def _finish(self, live: Live, state: JobState, error: str | None) -> None:
        changes: dict[str, Any] = {"state": state, "error": error}
        changes["finished_at"] = datetime.now(UTC).isoformat()
        if live.marks is not None:
            changes["timing"] = build_timing(live.job, live.result, live.marks, Clock.now())
        if live.output is not None:
            changes.update(output_fields(live.output, self.store.run_dir, request_of(live.row)))
        self._save(live, **changes)
        self._emit(live, state, live.result.status if live.result else None)


def _refresher(provider: Provider, job: Job) -> Callable[[], Awaitable[OutputRef | None]]:
    """`Provider.refresh_outputs` as `media.save_output` wants it: the first fresh reference,
    or None (the default's answer), which keeps the expired URL's error."""

    async def refresh() -> OutputRef | None:
        return next(iter(await provider.refresh_outputs(job)), None)

    return refresh


async def _cancelled_remote(provider: Provider, job: Job) -> str:
    """Cancel ``job`` where the provider allows (`waiting.cancel_remote`); return what the
    row should say."""
    if not provider.can_cancel:
        return NOT_CANCELLABLE
    failure = await cancel_remote(provider, job)
    if failure is not None:
        return f"comparison cancelled; cancelling the remote job failed ({_error_text(failure)})"
    return CANCELLED
