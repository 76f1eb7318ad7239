"""The never-pay-twice submit: one create per row, its job id stored before anything else.

The row is stored ``submitting`` before the create call and the provider's id right after
it, before the first status request, so a crash loses no job. A create whose answer is lost
(`AmbiguousSubmitError`, or no answer within the run's deadline) or cannot be used (a
`ProtocolError`: unreadable, over the size cap, an id we refuse; the job may exist all the
same) is never sent again blindly: the row turns ``ambiguous`` and the provider is asked
whether the job exists (`Provider.reconcile`); only its proof that it does not lets the row
be sent again. A provider that cannot look creates up leaves the row ambiguous for a person
to check. A create in flight when the run is cancelled is settled the same way: its job
found, then cancelled, unless it had already finished (a held create can answer with the
result): a finished job is never cancelled, its row is left for `resume` to collect. Only a
cancel the provider confirms makes the row say `CANCELLED` (`resume` may send it again);
otherwise it says `CANCEL_ASKED` and `resume` re-attaches first.

Identical rows (repeats) make look-alike jobs, so a lookup must not take a sibling's: it
waits until the provider's other creates in flight have answered (their ids are then known
and excluded), and no new create to that provider is sent until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from abebeats_lab._types import Job, JobState, Route
from abebeats_lab.errors import AmbiguousSubmitError, ProtocolError, ProviderError
from abebeats_lab.providers import Provider
from abebeats_lab.run import costs
from abebeats_lab.run.connect import Clients
from abebeats_lab.run.live import Live, Recorder, durable, error_text, parse_time, request_of
from abebeats_lab.run.timing import Marks, with_submit
from abebeats_lab.waiting import CANCEL_TIMEOUT_S, CancelUnconfirmed, cancel_remote

if TYPE_CHECKING:
    from abebeats_lab.run.limits import Limiter

__all__ = [
    "CANCELLED",
    "CANCEL_ASKED",
    "FINISHED_FIRST",
    "NEVER_SENT",
    "NOT_CANCELLABLE",
    "Submitter",
    "finished_first",
]

SUBMIT_GRACE_S = 10.0
"""After a cancel, how long a create already sent may take to answer so we can cancel its job."""
LOOKUP_GRACE_S = 1.0
"""The same, for a provider that can look the create up instead (its create may be held)."""
CANCELLED = "comparison cancelled; remote job cancelled"
"""The provider confirmed the cancel: its job will not finish (nor be charged)."""
CANCEL_ASKED = "comparison cancelled; the provider was asked to cancel the remote job"
"""The provider took the cancel without confirming it: the job may still finish."""
FINISHED_FIRST = (
    "comparison cancelled after the job had already finished, so it was not cancelled: "
    "`abebeats-lab resume` collects it"
)
"""On a row left in flight (not ``canceled``): the job's answer was already final."""
NEVER_SENT = "comparison cancelled before submit"
NOT_CANCELLABLE = (
    "comparison cancelled; this provider cannot cancel a job, so it may still finish "
    "(and be charged)"
)
AMBIGUOUS = (
    "the create call was sent but its answer was lost (the process stopped mid-create); "
    "the provider offers no reconcile, so it was not resubmitted: check the provider's "
    "dashboard before running it again"
)
NEVER_ARRIVED = "the provider shows no job from it, so nothing was charged"
RESUBMITTED = "reconciled: the provider shows no job from the lost create; submitted again"


class Submitter:
    """Creates the jobs of one run, each at most once (see the module docstring)."""

    def __init__(
        self,
        record: Recorder,
        clients: Clients,
        limiters: Mapping[str, Limiter],
        *,
        deadline_s: float,
    ) -> None:
        self.record = record
        self.clients = clients
        self.limiters = limiters
        self.deadline_s = deadline_s
        """Bounds create + wait together, a held or hung create included."""
        # One reconcile at a time, so two lost creates never claim the same remote job.
        self._reconcile_lock = asyncio.Lock()
        self._creating: dict[str, set[asyncio.Future[Job]]] = {}
        """Creates sent and not yet answered, by provider."""
        self._looking: dict[str, asyncio.Event] = {}
        """Per provider, cleared while a lookup runs: new creates wait for it."""
        self._known: set[str] = set()
        """Job ids this process's creates were answered with."""
        # A create lost by an earlier process is older than this one; jobs newer than this
        # belong to creates this process is making (identical inputs must not be claimed).
        self._started_at = datetime.now(UTC)

    async def submit(self, live: Live) -> None:
        """Create the row's job; on return ``live.job`` is set (and stored) or the row is
        ambiguous or final. Cancellation settles a create in flight, then propagates."""
        provider = self.clients[live.row.provider]
        marks = live.marks = Marks(submitted_at=datetime.now(UTC))
        try:  # on disk before the create is sent: a crash mid-create is settled, not resent
            await self.record.commit(
                live, state=JobState.SUBMITTING, submitted_at=marks.submitted_at.isoformat()
            )
            self.record.emit(live, JobState.SUBMITTING)
            await self._no_lookup(live.row.provider)  # last: nothing is sent during a lookup
        except asyncio.CancelledError:
            self._save(live, state=JobState.CANCELED, error=NEVER_SENT)
            raise
        marks.submit_start = time.monotonic()
        task = self._send(live, provider)
        deadline = asyncio.timeout(self.deadline_s)
        try:
            async with deadline:
                job = await asyncio.shield(task)
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout of the provider's own: an ordinary failure of this row
            task.cancel()  # sent, unanswered: the job may exist, so it is settled, not resent
            exc = AmbiguousSubmitError(
                f"the create did not answer within the {self.deadline_s:g} s deadline",
                provider=live.row.provider,
            )
            self._ambiguous(live, error_text(exc))
            await self.reconcile(live, resubmit=False)
            return
        except asyncio.CancelledError:
            await self._settle_cancelled(live, provider, task)
            raise
        except (AmbiguousSubmitError, ProtocolError) as exc:
            self._ambiguous(live, error_text(exc))
            await self.reconcile(live)
            return
        marks.submit_end = time.monotonic()
        marks.accepted_at = datetime.now(UTC)
        await self._attached(live, job, marks.submit_end - marks.submit_start)

    async def reconcile(self, live: Live, *, resubmit: bool = True) -> None:
        """Settle a create whose answer was lost: ask the provider, never resubmit blindly.

        `Provider.reconcile` returns the job, returns None only when it proves there is none
        (then the row is sent again, unless ``resubmit`` is False because the deadline has
        passed: then it fails), and raises `AmbiguousSubmitError` when it cannot tell (then,
        as when the lookup itself fails, the row stays ambiguous). A provider that cannot look
        creates up (``can_reconcile`` False) leaves the row ambiguous at once.
        """
        provider = self.clients[live.row.provider]
        if not provider.can_reconcile:
            self._ambiguous(live, live.row.error or AMBIGUOUS)
            return
        hint = self._hint(live)
        async with self._reconcile_lock, self._lookup(live.row.provider):
            before = self._started_at if live.marks is None else None
            await self._siblings_answered(live.row.provider)
            try:
                job = await provider.reconcile(
                    hint, exclude=await self._claimed(live), created_before=before
                )
            except AmbiguousSubmitError as exc:
                self._ambiguous(live, error_text(exc))
                return
            except ProviderError as exc:  # the lookup itself failed: still cannot tell
                self._ambiguous(live, f"{live.row.error}; the lookup failed: {error_text(exc)}")
                return
            if job is not None:
                if live.marks is None:  # resumed: this process never saw the submit
                    live.marks = Marks(submitted_at=hint.submitted_at)
                await self._attached(live, job, None)  # stored: the next row cannot claim it
                return
        if not resubmit:
            await self.record.finish(live, JobState.FAILED, f"{live.row.error}; {NEVER_ARRIVED}")
            return
        # The provider's own list proves the create never arrived: sending it is not paying twice.
        self._save(live, state=JobState.PLANNED, error=RESUBMITTED)
        await self.limiters[live.row.provider].pace()
        await self.submit(live)

    # -- steps ---------------------------------------------------------------------------

    def _save(self, live: Live, **changes: Any) -> Future[None]:
        return self.record.save(live, **changes)

    def _ambiguous(self, live: Live, error: str) -> None:
        self._save(live, state=JobState.AMBIGUOUS, error=error)
        self.record.emit(live, JobState.AMBIGUOUS)

    async def _attached(self, live: Live, job: Job, submit_s: float | None) -> None:
        """`_attach`, returning once the id is committed: the first status request may follow."""
        written = self._attach(live, job, submit_s)
        try:
            await durable(written)
        except asyncio.CancelledError:
            # Cancelled between the create's answer and the first status request: the job
            # exists, so it is cancelled here, as `waiting.wait` would have done.
            await self._stop(live, self.clients[live.row.provider], job)
            raise

    def _attach(self, live: Live, job: Job, submit_s: float | None) -> Future[None]:
        """Store the provider's id (before any status request) and mark the job queued.

        A provider that found an emulator on the other end (it says so in every answer) makes
        the row emulated and free, however the emulator was started.
        """
        live.job = job
        changes: dict[str, Any] = {}
        if self.clients.emulated(live.row.provider) and not live.row.emulated:
            changes = {"emulated": True, "cost_usd": 0.0, "cost_note": costs.NOTE_EMULATED}
        written = self._save(
            live,
            job_id=job.id,
            handles=dict(job.handles),
            state=JobState.QUEUED,
            timing=with_submit(live.row.timing, submit_s),
            **changes,
        )
        self.record.emit(live, JobState.QUEUED)
        return written

    async def _settle_cancelled(
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
        elif not isinstance(failure, (AmbiguousSubmitError, ProtocolError)):
            return  # refused or never sent: there is no job to cancel
        if lookup and job is None:
            job = await self._look_up(live, provider)  # attached there, inside the lock
        elif job is not None:
            self._attach(live, job, None)
        if job is not None:
            await self._stop(live, provider, job)

    async def _stop(self, live: Live, provider: Provider, job: Job) -> None:
        """Cancel the attached job of a cancelled run, unless its answer was already final:
        a finished job is paid for and its video kept, so its row stays in flight with
        `FINISHED_FIRST` for `resume` to collect (`RunContext` leaves it so)."""
        if finished_first(job):
            self._save(live, error=FINISHED_FIRST)
            return
        self._save(live, state=JobState.CANCELED, error=await _cancelled_remote(provider, job))

    async def _look_up(self, live: Live, provider: Provider) -> Job | None:
        """One lookup under the reconcile lock; the time limit (a cancel's) is for the lookup
        itself."""
        async with self._reconcile_lock, self._lookup(live.row.provider):
            try:
                async with asyncio.timeout(CANCEL_TIMEOUT_S):
                    await self._siblings_answered(live.row.provider)
                    claimed = await self._claimed(live)
                    found = await provider.reconcile(self._hint(live), exclude=claimed)
            except Exception:  # settling after a cancel is best effort; resume settles the rest
                return None
            if found is not None:
                self._attach(live, found, None)  # stored inside the lock: no sibling can claim it
            return found

    def _hint(self, live: Live) -> Job:
        """What a lost create looked like, for `reconcile`: everything but the id."""
        row = live.row
        submitted = parse_time(row.submitted_at)
        return Job(
            Route.parse(row.route), "", request_of(row), submitted, {"client_ref": row.client_ref}
        )

    async def _claimed(self, live: Live) -> set[str]:
        """Job ids other rows own: those stored for this run (read after the writes queued
        before, off the loop) and those this process's creates were answered with."""
        stored = await asyncio.wrap_future(self.record.store.job_ids_soon(live.row.run_id))
        return stored | self._known

    # -- creates in flight and lookups ----------------------------------------------------

    def _send(self, live: Live, provider: Provider) -> asyncio.Future[Job]:
        """Start the create; it counts as in flight until answered."""
        task = asyncio.ensure_future(
            provider.submit(request_of(live.row), Route.parse(live.row.route))
        )
        in_flight = self._creating.setdefault(live.row.provider, set())
        in_flight.add(task)

        def answered(done: asyncio.Future[Job]) -> None:
            in_flight.discard(done)
            if not done.cancelled() and done.exception() is None:
                self._known.add(done.result().id)

        task.add_done_callback(answered)
        return task

    async def _no_lookup(self, provider: str) -> None:
        """Wait while a lookup on ``provider`` runs: a job created now would look like the
        lost one it is looking for."""
        while (free := self._looking.get(provider)) is not None and not free.is_set():
            await free.wait()

    @contextlib.asynccontextmanager
    async def _lookup(self, provider: str) -> AsyncIterator[None]:
        """Hold new creates to ``provider`` back for the duration."""
        free = self._looking[provider] = asyncio.Event()
        try:
            yield
        finally:
            free.set()

    async def _siblings_answered(self, provider: str) -> None:
        """Wait until every other create to ``provider`` in flight has answered (each is
        bounded by the run's deadline), so their jobs are known before a lookup."""
        if pending := {t for t in self._creating.get(provider, ()) if not t.done()}:
            await asyncio.wait(pending)


def finished_first(job: Job | None) -> bool:
    """True when the job's create (or lookup) already answered with a final state."""
    return job is not None and job.initial is not None and job.initial.state.terminal


async def _cancelled_remote(provider: Provider, job: Job) -> str:
    """Cancel ``job`` where the provider allows (`waiting.cancel_remote`); return what the
    row should say: `CANCELLED` only when the provider confirmed it."""
    if not provider.can_cancel:
        return NOT_CANCELLABLE
    failure = await cancel_remote(provider, job)
    if failure is None:
        return CANCELLED
    if isinstance(failure, CancelUnconfirmed):
        return CANCEL_ASKED
    return f"comparison cancelled; cancelling the remote job failed ({error_text(failure)})"
