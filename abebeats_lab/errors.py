"""Every error abebeats-lab raises, under one base.

```
LabError
├── ConfigError                      settings are missing or wrong
│   ├── MissingKeyError              a provider key is not set (names the variable and --emulate)
│   ├── MissingExtraError (ImportError) an optional part is not installed (names the extra)
│   └── CostLimitError               a comparison's estimated cost is over --max-cost
├── ValidationError (ValueError)     a request a route cannot take; raised before any paid call
│   └── UnknownRouteError (KeyError) no such provider or route (lists the known ones)
├── ProviderError                    talking to a provider went wrong
│   ├── ProviderHTTPError            the provider answered with an error status
│   ├── ProviderTransportError       no usable answer: connection refused, dropped, timed out
│   ├── ProtocolError                an answer we cannot parse (bad JSON, unknown status)
│   ├── AmbiguousSubmitError         a create may or may not have reached the provider
│   └── CancelUnconfirmed            a cancel taken, not confirmed: the job may still finish
├── JobFailed                        the job ran and the provider says it failed
│   └── AllRoutesFailed              a fallback chain ran out of routes (lists every attempt)
├── JobCanceled                      the job was cancelled (by us on a deadline, or elsewhere)
├── JobTimeout (TimeoutError)        the wait hit its deadline
├── RunBusyError                     another process is working on this run (names it)
├── WeightsUnavailable               a metric's model weights are absent and cannot be fetched
├── BadPath                          a command-line path that cannot work (checked first)
├── UsageError                       arguments that make no command (compare with no route)
└── DownloadError                    an output was rejected (scheme, size, content, probe)
    ├── DownloadHTTPError            the output URL answered an error (expired, or busy for good)
    ├── DownloadUnreachable          no answer from the output host; fetching again may succeed
    └── DownloadTruncated            the body stopped short; fetching again may succeed
        └── DownloadStalled          the attempt ran out of its time budget
```

The four download subclasses live with the code that raises them, `media.download`, as
`WeightsUnavailable` does in `quality.clip` and `BadPath` and `UsageError` in `cli.checks`.

Messages never contain secrets: keys are held by `secret.Secret`, whose repr is masked, and
whatever a provider said (an error body, a failure message) passes `secret.scrub` first, so a
server that echoes the key back cannot put it in a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from abebeats_lab.secret import scrub

__all__ = [
    "AllRoutesFailed",
    "AmbiguousSubmitError",
    "ConfigError",
    "CostLimitError",
    "DownloadError",
    "JobCanceled",
    "JobFailed",
    "JobTimeout",
    "LabError",
    "MissingExtraError",
    "MissingKeyError",
    "ProtocolError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderTransportError",
    "RunBusyError",
    "UnknownRouteError",
    "ValidationError",
]

_BODY_LIMIT = 500


class LabError(Exception):
    """Base of every abebeats-lab error."""


class ConfigError(LabError):
    """Settings are missing or inconsistent."""


class MissingKeyError(ConfigError):
    """A provider needs a key that is not set."""

    def __init__(self, provider: str, env_vars: Iterable[str], argument: str = "api_key") -> None:
        self.provider = provider
        self.env_vars = tuple(env_vars)
        names = " or ".join(self.env_vars)
        super().__init__(
            f"{provider}: no key. Set {names}, pass {argument}=..., "
            "or use --emulate (emulate=True) to run against the built-in emulator"
        )


class MissingExtraError(ConfigError, ImportError):
    """An optional part needs a package from an extra that is not installed."""

    def __init__(self, what: str, extra: str, missing: str) -> None:
        self.extra = extra
        super().__init__(
            f"{what} needs the '{extra}' extra ({missing} is not installed): "
            f"pip install 'abebeats-lab[{extra}]'",
            name=missing,
        )


class CostLimitError(ConfigError):
    """The estimated cost of a comparison is over the limit the caller set; nothing was sent."""

    def __init__(self, estimate_usd: float | None, limit_usd: float, detail: str = "") -> None:
        self.estimate_usd = estimate_usd
        self.limit_usd = limit_usd
        extra = f" ({detail})" if detail else ""
        if estimate_usd is None:
            super().__init__(
                f"the cost cannot be bounded by the limit ${limit_usd:.2f}{extra}; nothing was "
                "submitted"
            )
            return
        super().__init__(
            f"estimated cost ${estimate_usd:.2f} is over the limit ${limit_usd:.2f}{extra}; "
            "nothing was submitted. Raise --max-cost (max_cost_usd=), or use fewer prompts, "
            "routes or repeats"
        )


class ValidationError(LabError, ValueError):
    """A request that a route cannot take. Names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str, *, route: str | None = None) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        where = f"{route}: " if route else ""
        super().__init__(f"{where}{field}={value!r} is not allowed; allowed: {allowed}")


class UnknownRouteError(ValidationError, KeyError):
    """No such provider or route."""

    def __init__(self, route: str, *, known: Iterable[str] = (), hint: str = "") -> None:
        listed = ", ".join(sorted(known))
        allowed = "; ".join(part for part in (listed, hint) if part) or "see `abebeats-lab routes`"
        ValidationError.__init__(self, "route", route, allowed)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ProviderError(LabError):
    """Talking to a provider went wrong."""

    def __init__(self, message: str, *, provider: str) -> None:
        self.provider = provider
        super().__init__(scrub(f"{provider}: {message}"))


class ProviderHTTPError(ProviderError):
    """The provider answered with an error status."""

    def __init__(
        self,
        *,
        provider: str,
        status_code: int,
        body: str = "",
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = scrub(body)[:_BODY_LIMIT]
        self.request_id = request_id
        self.retry_after_s = retry_after_s
        detail = f": {self.body}" if self.body else ""
        super().__init__(f"HTTP {status_code}{detail}", provider=provider)


class ProviderTransportError(ProviderError):
    """No usable answer: connection refused or dropped, or a timeout."""


class ProtocolError(ProviderError):
    """The provider's answer could not be understood (bad JSON, unknown status, missing field)."""


class AmbiguousSubmitError(ProviderError):
    """A create call may have reached the provider but we never saw its answer.

    The job is recorded as ambiguous and reconciled; it is never blindly resubmitted.
    """

    def __init__(self, message: str, *, provider: str, client_ref: str | None = None) -> None:
        self.client_ref = client_ref
        super().__init__(message, provider=provider)


class JobFailed(LabError):
    """The job ran and the provider reports failure."""

    def __init__(self, message: str, *, job_id: str, code: str | None = None) -> None:
        self.job_id = job_id
        self.code = code
        suffix = f" [{code}]" if code else ""
        super().__init__(scrub(f"job {job_id} failed: {message}{suffix}"))


class AllRoutesFailed(JobFailed):
    """Every route of a fallback chain failed; ``attempts`` holds one reason per route."""

    def __init__(self, attempts: Iterable[tuple[str, str]]) -> None:
        self.attempts = tuple(attempts)
        self.job_id = "-"
        self.code = None
        reasons = "; ".join(f"{route}: {reason}" for route, reason in self.attempts)
        LabError.__init__(self, f"every route failed: {reasons}")


class JobCanceled(LabError):
    """The job was cancelled, by us (deadline, interrupt) or elsewhere."""

    def __init__(self, job_id: str, reason: str = "canceled") -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} {reason}")


CANNOT_CANCEL = "the provider cannot cancel it"
"""`JobTimeout`'s default reason for a job left running."""


class JobTimeout(LabError, TimeoutError):
    """The wait reached its deadline: the job was cancelled, or it runs on (and may be charged)
    for the reason in ``left_running``: the provider cannot cancel, or the cancel failed."""

    def __init__(
        self, job_id: str, deadline_s: float, *, canceled: bool, left_running: str = CANNOT_CANCEL
    ) -> None:
        self.job_id = job_id
        self.deadline_s = deadline_s
        self.canceled = canceled
        self.left_running = None if canceled else left_running
        then = "cancelled it" if canceled else f"{left_running}, so it may still finish"
        super().__init__(f"job {job_id} not done after {deadline_s:g} s; {then}")


class RunBusyError(LabError):
    """Another process (or another call in this one) is working on this run right now."""


class DownloadError(LabError):
    """An output was refused: wrong scheme, too large, truncated, not a video."""
