"""The one small interface every provider implements.

A provider translates a `VideoRequest` into its payload and its payloads into `JobStatus`
values. It knows nothing of waiting, concurrency or storage: `waiting.wait` decides when to
ask again, the runner decides how many jobs run at once.
"""

from __future__ import annotations

import abc
import reprlib
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime
from typing import Any, ClassVar

from abebeats_lab import capabilities
from abebeats_lab._types import Job, JobStatus, OutputRef, Route, VideoRequest
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    ProtocolError,
    ProviderError,
    ProviderTransportError,
)

__all__ = ["Provider", "transport_failure", "unreadable_answer", "utcnow"]


def utcnow() -> datetime:
    """Timezone-aware UTC now (one place, so tests and records agree)."""
    return datetime.now(UTC)


def transport_failure(exc: Exception, *, provider: str, sent: bool) -> ProviderError:
    """The error for a call that got no usable answer.

    ``sent`` is True for a paid create that may have reached the provider: then the job may
    exist, so the error is `AmbiguousSubmitError` (reconcile, never resubmit blindly).
    """
    if sent:
        return AmbiguousSubmitError(
            f"the create was sent but no answer came back ({type(exc).__name__}); "
            "reconcile before resubmitting",
            provider=provider,
        )
    return ProviderTransportError(f"{type(exc).__name__}: {exc}", provider=provider)


_MISSING = object()
_SHORT = reprlib.Repr()
"""A rejected value as the message shows it: a whole body (output URLs and all) is too much."""
_SHORT.maxstring = _SHORT.maxother = 80


def unreadable_answer(exc: Exception, *, provider: str) -> ProtocolError:
    """The error for an answer an SDK could not read (bad JSON, a body its model rejects).

    A model rejection names the field and the value it got (``status = 'archived'``), which
    is what a user needs to report an API change; anything else keeps its first line.
    """
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    problems = getattr(exc, "errors", None)  # pydantic's ValidationError, without importing it
    if callable(problems):
        try:
            first = problems()[0]
            field = ".".join(str(part) for part in first["loc"]) or "body"
            # pydantic 2 keeps the value as ``input``; pydantic.v1 (replicate's) as ctx.given
            value = first.get("input", (first.get("ctx") or {}).get("given", _MISSING))
            shown = field if value is _MISSING else f"{field} = {_SHORT.repr(value)}"
            detail = f"{shown} ({first['msg']})"
        except (TypeError, KeyError, IndexError, AttributeError):
            pass
    return ProtocolError(f"unreadable answer: {detail}", provider=provider)


class Provider(abc.ABC):
    """Base class for provider clients.

    Subclasses implement `submit`, `status`, `cancel`. Every optional capability has a
    default here, so the runner calls it on any provider and never looks a method up:
    `outputs` (when the result lives behind another call), `stream` (when the provider
    pushes status), `reconcile` (when it can find a lost create again: `can_reconcile`),
    `refresh_outputs` (when output URLs expire and can be signed again), `can_cancel`.

    Statuses carry only the five provider states of `JobState` (``queued`` ... ``canceled``);
    the runner's own row states (``planned``, ``submitting`` ...) are never a provider's word.
    """

    name: ClassVar[str]
    """Registry name, the part of a route before the colon."""

    emulated: bool = False
    """True when the base URL points at the built-in emulator; every figure is labelled."""

    can_reconcile: ClassVar[bool] = False
    """Whether `reconcile` can look a lost create up: set for every class that overrides it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Derived, so the capability and the method can never disagree.
        cls.can_reconcile = cls.reconcile is not Provider.reconcile

    @classmethod
    def validate(cls, request: VideoRequest, route: Route) -> capabilities.Capabilities:
        """Check the request against the route's capabilities (and the route against what
        this provider can address); the planner calls it, so it raises before any request."""
        return capabilities.validate(request, route)

    @abc.abstractmethod
    async def submit(self, request: VideoRequest, route: Route) -> Job:
        """Create the job. Must be called with a validated request whose route defaults are
        filled in (`capabilities.with_defaults`; the runner does both)."""

    @abc.abstractmethod
    async def status(self, job: Job) -> JobStatus:
        """One status observation (one HTTP request)."""

    @abc.abstractmethod
    async def cancel(self, job: Job) -> bool:
        """Ask the provider to stop the job; True only when it confirms the job will not run
        (nor charge), False when it only took the request, the job had already finished, or
        there is no cancel. Never deletes or alters a finished job: its video is paid for."""

    async def outputs(self, job: Job, status: JobStatus) -> list[OutputRef]:
        """Where the finished videos are; by default what the status carried."""
        return list(status.outputs)

    def stream(self, job: Job) -> AsyncIterator[JobStatus] | None:
        """A push stream of statuses where the provider has one, else ``None``."""
        return None

    async def reconcile(
        self,
        job_hint: Job,
        exclude: Collection[str] = (),
        created_before: datetime | None = None,
    ) -> Job | None:
        """After a create whose answer was lost: find the job it made, never resubmit blindly.

        ``job_hint`` has the route, request, submit time and ``handles["client_ref"]`` but no
        id; ``exclude`` holds ids other rows already own; ``created_before`` rules out jobs
        this process is creating right now. Returns the job; None only when it proves there is
        none; raises `AmbiguousSubmitError` when it cannot tell, which is all this default can
        say (a provider that lists its jobs overrides it, and `can_reconcile` follows).
        """
        raise AmbiguousSubmitError(
            "this provider offers no way to look a lost create up", provider=self.name
        )

    async def refresh_outputs(self, job: Job) -> list[OutputRef]:
        """Fresh references for outputs whose URLs expired (signed again); none by default."""
        return []

    @property
    def can_cancel(self) -> bool:
        """Whether `cancel` really stops remote work."""
        return True

    @property
    def base_url(self) -> str | None:
        """Where the provider's API is (its output URLs are checked against it); None for a
        provider that answers from this process."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook; most providers have nothing to close
        """Release connections."""

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
