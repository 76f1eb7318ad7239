"""The life of one job inside a run, top to bottom: submit, wait, download, figures, store.

`RunContext.run_one` walks a stored row from wherever it stands (``planned``,
``submitting``, in flight, ``downloading``) to a final state, writing the store at every
step. The create itself, with its never-pay-twice rules (``submitting`` stored before the
call, the job id before the first status request, a lost answer reconciled and never sent
again blindly), is `run.submit`'s. Every exception except cancellation ends as a failed
row, except where the remote job may still be, or is, paid for: a status that cannot be read,
or a deadline the provider could not be made to honour (no cancel, or the cancel failed),
keeps the row in flight with its id; a job that succeeded but whose video could not be
fetched for a passing reason (disk full, a folder not writable, a storage host or output
listing unreachable, busy or too slow) stays ``downloading``. Both keep the reason, for
`resume`. A job the deadline cancelled ends ``canceled``. Nothing a row meets escapes
`run_one` but cancellation, so one row never cancels its siblings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from abebeats_lab import capabilities, history
from abebeats_lab._types import Job, JobState, JobStatus, Output, OutputRef, Route
from abebeats_lab.errors import (
    DownloadError,
    JobTimeout,
    ProtocolError,
    ProviderHTTPError,
    ProviderTransportError,
)
from abebeats_lab.http import RETRY_STATUSES
from abebeats_lab.media.download import (
    DownloadHTTPError,
    DownloadStalled,
    DownloadTruncated,
    DownloadUnreachable,
    save_output,
)
from abebeats_lab.media.probe import output_name
from abebeats_lab.providers import Provider
from abebeats_lab.run.connect import Clients
from abebeats_lab.run.live import JobEvent, Live, Recorder, error_text, parse_time, request_of
from abebeats_lab.run.submit import (
    CANCEL_ASKED,
    NEVER_SENT,
    NOT_CANCELLABLE,
    Submitter,
    finished_first,
)
from abebeats_lab.run.timing import Marks
from abebeats_lab.store import JobRow, RunStore
from abebeats_lab.waiting import WaitPolicy, wait

if TYPE_CHECKING:
    from abebeats_lab.run.limits import Limiter

__all__ = ["JobEvent", "Live", "RunContext", "cancelled_by_deadline", "live_row"]

log = logging.getLogger("abebeats_lab.run.api")

HASH_CHARS = 12
"""Hex digits of the content hash in an output's file name."""
DOWNLOAD_ATTEMPTS = 3
LOST_SIGHT = (
    "its status could not be read, so the job was left running with its id kept: "
    "`abebeats-lab resume` asks again"
)
LEFT_RUNNING = "the row keeps its id: `abebeats-lab resume` re-attaches and collects it"
DOWNLOAD_LATER = (
    "the job succeeded but its video was not saved here, so the row keeps its id: "
    "`abebeats-lab resume` downloads it later (while the provider keeps the output)"
)


def live_row(row: JobRow) -> Live:
    """Wrap a stored row for `RunContext.run_one`."""
    return Live(row)


def _fetch_later(exc: BaseException) -> bool:
    """A failure to fetch a succeeded job's video worth trying again later: this machine's (a
    full disk), a storage host too slow, unreachable or still busy after the retry policy, or
    the provider's output listing unreachable or busy (429/5xx) likewise. The video is paid for
    and done remotely, so the row stays ``downloading`` for `resume`."""
    busy = isinstance(exc, DownloadHTTPError) and exc.busy
    passing = isinstance(exc, DownloadStalled | DownloadUnreachable | ProviderTransportError)
    provider_busy = isinstance(exc, ProviderHTTPError) and exc.status_code in RETRY_STATUSES
    return _local(exc) or busy or passing or provider_busy


def _local(exc: BaseException) -> bool:
    """A failure of this machine (disk full, a folder not writable), not of the job.

    TimeoutError is an OSError too, but never a local file problem.
    """
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


def cancelled_by_deadline(row: JobRow) -> bool:
    """True for a row whose job our own wait deadline cancelled (`RunContext._past_deadline`):
    the caller's limit ended it, so it is final, never a job to send again."""
    return row.state is JobState.CANCELED and (row.error or "").startswith(
        f"{JobTimeout.__name__}: "
    )


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
        self.policy = policy
        self.record = Recorder(store, on_update)
        deadline_s = (policy or WaitPolicy()).deadline_s
        self.submitter = Submitter(self.record, clients, limiters, deadline_s=deadline_s)

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
                await self.record.finish(live, JobState.FAILED, error_text(exc))
            except Exception:  # the store cannot take it (disk full): the row stays as stored
                log.exception("could not store the failure of %s; resume settles it", live.row.key)
        return live.row

    async def _advance(self, live: Live) -> None:
        """Create the job (or settle a create whose answer was lost), then follow it."""
        state = live.row.state
        if state is JobState.PLANNED:
            await self.limiters[live.row.provider].pace()
            await self.submitter.submit(live)
        elif state in (JobState.SUBMITTING, JobState.AMBIGUOUS):
            await self.submitter.reconcile(live)
        else:
            self._reattach(live)
        if live.job is not None:
            await self._follow(live)

    def _reattach(self, live: Live) -> None:
        """Rebuild the Job of an in-flight row from the store (resume)."""
        row = live.row
        submitted = parse_time(row.submitted_at)
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

    def _on_cancel(self, live: Live) -> None:
        state = live.row.state
        if state is JobState.PLANNED:
            self.record.save(live, state=JobState.CANCELED, error=NEVER_SENT)
        elif state in (JobState.QUEUED, JobState.RUNNING) and not finished_first(live.job):
            # `waiting.wait` has cancelled the remote job on its way out, where it could.
            can_cancel = self.clients[live.row.provider].can_cancel
            error = CANCEL_ASKED if can_cancel else NOT_CANCELLABLE
            self.record.save(live, state=JobState.CANCELED, error=error)
        # Submitting and downloading rows stay as they are, and so does a job that had
        # finished before the cancel (never cancelled): resume settles them.

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

    async def _record_run_time(self, live: Live) -> None:
        """Teach the per-user history this succeeded job's run time."""
        row = live.row
        run_s, source = row.timing.run_s, row.timing.sources.get("run_s")
        sample = history.run_time_sample(live.result, run_s, source)
        emulated = row.emulated or self.clients.emulated(row.provider)
        # The history is another database, committed to disk: kept off the loop too.
        await asyncio.to_thread(history.record, row.route, sample, emulated=emulated)

    def _observe(self, live: Live, status: JobStatus) -> None:
        # The provider's end is not the row's: a success is announced once, with its file,
        # after the download, and any other end once the row records it.
        if status.state.terminal:
            return
        if status.state is not live.row.state:
            self.record.save(live, state=status.state)
        self.record.emit(live, status.state, status)

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
        except JobTimeout as exc:
            await self._past_deadline(live, exc)
            return
        except (ProtocolError, ProviderTransportError, ProviderHTTPError) as exc:
            if isinstance(exc, ProviderHTTPError) and exc.status_code not in RETRY_STATUSES:
                raise  # the provider's own answer about this job (gone, forbidden): final
            # We lost sight of a job that is still paid for: keep the row resumable.
            self.record.save(live, error=f"{error_text(exc)}; {LOST_SIGHT}")
            self.record.emit(live, live.row.state)
            return
        status = result.status
        if status.state is not JobState.SUCCEEDED:
            reason = status.error or f"ended {status.raw_status}"
            if status.error_code:
                reason += f" [{status.error_code}]"
            await self.record.finish(live, status.state, reason)
            return
        self.record.save(live, state=JobState.DOWNLOADING)
        self.record.emit(live, JobState.DOWNLOADING)
        try:
            live.output = await self._download(live, provider, status)
        except Exception as exc:
            if not _fetch_later(exc):
                raise
            # Paid for and done remotely: never a final failure for a passing reason. If even
            # the reason cannot be stored, the row is still ``downloading`` for resume.
            try:
                self.record.save(live, error=f"{error_text(exc)}; {DOWNLOAD_LATER}")
            except Exception:
                log.exception("could not store why %s was not downloaded", live.row.key)
            self.record.emit(live, JobState.DOWNLOADING)
            return
        await self.record.finish(live, JobState.SUCCEEDED, None)
        await self._record_run_time(live)

    async def _past_deadline(self, live: Live, exc: JobTimeout) -> None:
        """The wait's deadline passed: a cancelled job ends CANCELED (the caller's deadline,
        not a failure); one left running keeps its id and last state for `resume`."""
        if exc.canceled:
            await self.record.finish(live, JobState.CANCELED, error_text(exc))
            return
        # Still running remotely, and paid for if it finishes: never a final state here.
        self.record.save(live, error=f"{error_text(exc)}; {LEFT_RUNNING}")
        self.record.emit(live, live.row.state)

    async def _download(self, live: Live, provider: Provider, status: JobStatus) -> Output:
        job, marks, row = live.job, live.marks, live.row
        assert job is not None and marks is not None
        refs = await provider.outputs(job, status)
        if not refs:
            raise DownloadError("the job succeeded but listed no output")
        # The attempt's own ref in the name: runs sharing a folder (a music video's shots) never
        # write the same file at once.
        attempt_name = output_name(row.route, row.prompt_index, row.repeat, row.client_ref[:8])
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
        stem = output_name(row.route, row.prompt_index, row.repeat, output.sha256[:HASH_CHARS])
        final = dest.with_name(f"{stem}.mp4")
        output.path.replace(final)
        marks.download_end = time.monotonic()
        return replace(output, path=final)


def _refresher(provider: Provider, job: Job) -> Callable[[], Awaitable[OutputRef | None]]:
    """`Provider.refresh_outputs` as `media.save_output` wants it: the first fresh reference,
    or None (the default's answer), which keeps the expired URL's error."""

    async def refresh() -> OutputRef | None:
        return next(iter(await provider.refresh_outputs(job)), None)

    return refresh
