"""Replicate routes (``replicate:owner/name`` and ``replicate:owner/name:<version>``).

Built on the official ``replicate`` SDK (1.x, async methods), whose requests go out through the
event loop's shared stock httpx client (`http`), so proxies from the environment apply. Three
things the SDK does not do are added here: a create holds briefly with ``Prefer: wait`` so
short jobs come back finished; a create answered with 429/5xx is retried honouring
``Retry-After`` (the SDK never retries a POST), while a create that may have reached the server
is never repeated (`AmbiguousSubmitError`); and every SDK or httpx exception becomes one of ours.
The transport (`providers.replicate_transport`) also reads every answer under
`http.read_answer`'s cap before the SDK sees it, and prediction ids are checked before the SDK
puts them into a path.

A status read, the one request a wait repeats, skips the SDK's client: it is one GET on the
shared client, read by the same transport code and validated with the SDK's own `Prediction`
model. Through the SDK each poll crossed two httpx clients (the SDK's, then the shared one),
which cost about a third more client CPU per poll than the SDK's own sync ``Prediction.wait()``.

Retries have one owner per kind (the table in `abebeats_lab.http`): the SDK wraps every
transport in its own ``RetryTransport`` (10 attempts of a GET on 429/503/504, with no setting
to change it), so our transport raises an error answer as `ProviderHTTPError` instead of
returning it, and the SDK's retrier never has a status to retry. A status read is then sent
once (the wait loop retries it); a cancel or a predictions-list lookup is retried by
`retry_errors` with the provider's policy.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

import httpx
from replicate.client import Client as SdkClient
from replicate.exceptions import ModelError, ReplicateError
from replicate.pagination import Page
from replicate.prediction import Prediction

from abebeats_lab import capabilities, config
from abebeats_lab._types import (
    Job,
    JobState,
    JobStatus,
    OutputRef,
    Route,
    VideoRequest,
    reported_usage,
)
from abebeats_lab.errors import (
    AmbiguousSubmitError,
    JobFailed,
    ProtocolError,
    ProviderHTTPError,
    ValidationError,
)
from abebeats_lab.http import (
    DEFAULT_RETRY,
    Lease,
    RetryPolicy,
    from_emulator,
    never_sent,
    retry_errors,
)
from abebeats_lab.providers.base import Provider, transport_failure, unreadable_answer, utcnow
from abebeats_lab.providers.replicate_transport import SdkTransport, answered, problem_text
from abebeats_lab.secret import Secret

__all__ = ["USAGE_FIELDS", "ModelRef", "ReplicateProvider", "build_input", "parse_model"]

T = TypeVar("T")
DEFAULT_WAIT_S = 60
"""Seconds a create holds under ``Prefer: wait`` (Replicate's maximum). Most video jobs then
finish inside the create call: one request, the lowest detection lag. The price is that the
prediction id arrives only with the answer; a crash during the hold leaves a "submitting" row
that `reconcile` finds again through the predictions list, so it is never paid twice."""
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0, pool=10.0)
RECONCILE_PAGES = 5
RECONCILE_SKEW = timedelta(seconds=120)
_MODEL_RE = re.compile(
    r"^(?P<owner>[A-Za-z0-9][A-Za-z0-9_.-]*)/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)"
    r"(?::(?P<version>[0-9a-f]{64}))?$"
)
_FORMS = "replicate:owner/name or replicate:owner/name:<64-hex version id>"
_PREDICTION_ID = re.compile(r"[a-z0-9]{1,64}")
"""Replicate's prediction ids (lower-case base32); the SDK puts them into paths unencoded."""
USAGE_FIELDS = ("predict_time", "total_time")
"""What a prediction's ``metrics`` documents it used, in seconds (``predict_time`` is compute
without the queue; provider-apis.md §2.4). A billing unit is not documented there: not read."""
_STATES = {
    "starting": JobState.QUEUED,
    "processing": JobState.RUNNING,
    "succeeded": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "canceled": JobState.CANCELED,
}


class ModelRef:
    """A parsed Replicate model reference: owner, name and an optional version id."""

    __slots__ = ("name", "owner", "version")

    def __init__(self, owner: str, name: str, version: str | None) -> None:
        self.owner, self.name, self.version = owner, name, version

    @property
    def model(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"


def parse_model(route: Route) -> ModelRef:
    """Parse ``owner/name[:version]``; a malformed one is a `ValidationError` naming both forms."""
    match = _MODEL_RE.match(route.model)
    if match is None:
        raise ValidationError("route", str(route), _FORMS)
    return ModelRef(match["owner"], match["name"], match["version"])


def build_input(request: VideoRequest, caps: capabilities.Capabilities) -> dict[str, Any]:
    """The model's ``input``: fixed inputs, then mapped request fields, then the extras."""
    return caps.inputs(request)


class ReplicateProvider(Provider):
    """Replicate predictions through the official SDK; see the module docstring."""

    name: ClassVar[str] = "replicate"

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        emulated: bool = False,
        wait_s: int = DEFAULT_WAIT_S,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        key = config.key_for("replicate", api_key)
        assert key is not None  # required=True raises instead of returning None
        self._key = key
        self._base_url = config.base_url_for("replicate", base_url)
        self.emulated = emulated
        self._wait_s = wait_s
        self._timeout = timeout
        self._retry = retry
        self._lease = Lease()
        self._transport = SdkTransport(self._lease, self._retry, self._timeout, self._observe)
        self._sdk: SdkClient | None = None

    def __repr__(self) -> str:
        return f"ReplicateProvider(base_url={self._base_url!r}, emulated={self.emulated})"

    @property
    def base_url(self) -> str | None:
        return self._base_url

    def _client(self) -> SdkClient:
        # One SDK client serves every loop: it holds no connections, its transport takes the
        # running loop's shared client per request.
        if self._sdk is None:
            self._sdk = SdkClient(
                api_token=self._key.reveal(),
                base_url=self._base_url,
                timeout=self._timeout,
                transport=self._transport,
            )
        return self._sdk

    def _observe(self, response: httpx.Response) -> None:
        """An emulator's answer makes this client emulated, however it was pointed there."""
        if from_emulator(response.headers):
            self.emulated = True

    @classmethod
    def validate(cls, request: VideoRequest, route: Route) -> capabilities.Capabilities:
        parse_model(route)
        return super().validate(request, route)

    async def submit(self, request: VideoRequest, route: Route) -> Job:
        ref = parse_model(route)
        payload = build_input(request, capabilities.capabilities_for(route))
        submitted_at = utcnow()
        prediction = await self._call(lambda: self._create(ref, payload), creating=True)
        checked_id(prediction.id)
        status = parse_prediction(prediction)
        urls = prediction.urls or {}
        return Job(
            route=route,
            id=prediction.id,
            request=request,
            submitted_at=submitted_at,
            handles={k: v for k, v in urls.items() if k in ("get", "cancel", "web")},
            initial=status,
        )

    async def _create(self, ref: ModelRef, payload: dict[str, Any]) -> Prediction:
        client = self._client()
        wait: int | bool = self._wait_s if self._wait_s > 0 else False
        prediction: Prediction
        if ref.version is not None:
            prediction = await client.predictions.async_create(
                version=ref.version, input=payload, wait=wait
            )
        else:
            # Not predictions.async_create(model=...): SDK 1.0.7 drops ``wait`` on that path.
            prediction = await client.models.predictions.async_create(
                model=ref.model, input=payload, wait=wait
            )
        return prediction

    async def status(self, job: Job) -> JobStatus:
        """One prediction read, sent once: the wait loop owns a status request's retries.

        A plain GET rather than the SDK's ``predictions.async_get`` (see the module docstring);
        the answer is validated with the SDK's `Prediction` model all the same.
        """
        prediction_id = checked_id(job.id)
        return parse_prediction(await self._call(lambda: self._read(prediction_id)))

    async def _read(self, prediction_id: str) -> Prediction:
        request = self._lease.client().build_request(
            "GET",
            f"{self._base_url}/v1/predictions/{prediction_id}",
            headers={"Authorization": f"Bearer {self._key.reveal()}"},
            timeout=self._timeout,
        )
        response = answered(await self._transport.send_once(request))
        return Prediction(**response.json())

    async def cancel(self, job: Job) -> bool:
        """POST …/cancel; confirmed when the prediction it answers with is ``canceled`` (a
        finished one comes back unchanged)."""
        prediction_id = checked_id(job.id)
        prediction = await self._retried(
            lambda: self._client().predictions.async_cancel(prediction_id)
        )
        return _STATES.get(prediction.status) is JobState.CANCELED

    async def reconcile(
        self,
        job_hint: Job,
        exclude: Collection[str] = (),
        created_before: datetime | None = None,
    ) -> Job | None:
        """After an ambiguous create: find the prediction it made (same model and input,
        created after the submit, allowing for clock skew, not one of ``exclude``).

        None means proven absent: the list was read back past the submit time. If the pages
        run out first, it cannot tell and raises `AmbiguousSubmitError`.
        """
        ref = parse_model(job_hint.route)
        payload = build_input(job_hint.request, capabilities.capabilities_for(job_hint.route))
        earliest = job_hint.submitted_at - RECONCILE_SKEW
        cursor: Any = ...
        for _ in range(RECONCILE_PAGES):
            page = await self._retried(functools.partial(self._list, cursor))
            for prediction in page.results:
                created = _timestamp(prediction.created_at)
                if created is not None and created < earliest:
                    return None
                same = prediction.model == ref.model and prediction.input == payload
                fresh = (
                    created_before is not None and created is not None and created > created_before
                )
                if same and not fresh and prediction.id not in exclude:
                    return _job_from(job_hint, prediction)
            if not page.next:
                return None
            cursor = page.next
        raise AmbiguousSubmitError(
            f"no match in the newest {RECONCILE_PAGES} pages of predictions; cannot tell whether "
            "the lost create arrived",
            provider=self.name,
        )

    async def _list(self, cursor: Any) -> Page[Prediction]:
        page: Page[Prediction] = await self._client().predictions.async_list(cursor)
        return page

    async def _retried(self, make: Callable[[], Awaitable[T]]) -> T:
        """An idempotent call outside the wait loop (cancel, list), retried with the policy."""
        return await retry_errors(lambda: self._call(make), policy=self._retry)

    async def _call(self, make: Callable[[], Awaitable[T]], *, creating: bool = False) -> T:
        """Run one SDK call and translate whatever it raises into our error types."""
        try:
            return await make()
        except ReplicateError as exc:
            raise ProviderHTTPError(
                provider=self.name, status_code=exc.status or 0, body=problem_text(exc)
            ) from exc
        except ModelError as exc:
            raise JobFailed(str(exc), job_id=exc.prediction.id) from exc
        except httpx.HTTPError as exc:
            sent = creating and not never_sent(exc)
            raise transport_failure(exc, provider=self.name, sent=sent) from exc
        except (ValueError, TypeError, RecursionError) as exc:
            # bad JSON (nested past the parser's depth too); a payload the SDK's model rejects
            raise unreadable_answer(exc, provider=self.name) from exc

    async def aclose(self) -> None:
        await self._lease.release()


def checked_id(prediction_id: str) -> str:
    """A prediction id of Replicate's shape, or a `ProtocolError` naming the one given."""
    if not isinstance(prediction_id, str) or not _PREDICTION_ID.fullmatch(prediction_id):
        shown = str(prediction_id)[:80]
        raise ProtocolError(f"prediction id {shown!r} is not a Replicate id", provider="replicate")
    return prediction_id


def parse_prediction(prediction: Prediction) -> JobStatus:
    """A prediction as a `JobStatus`; an undocumented status word is a `ProtocolError`."""
    state = _STATES.get(prediction.status)
    if state is None:
        raise ProtocolError(
            f"unknown prediction status {prediction.status!r}", provider="replicate"
        )
    progress, step = (1.0, None) if state is JobState.SUCCEEDED else _progress(prediction)
    return JobStatus(
        state=state,
        raw_status=prediction.status,
        progress=progress,
        progress_step=step,
        error=prediction.error if state is JobState.FAILED else None,
        created_at=_timestamp(prediction.created_at),
        started_at=_timestamp(prediction.started_at),
        completed_at=_timestamp(prediction.completed_at),
        outputs=_outputs(prediction.output) if state is JobState.SUCCEEDED else (),
        usage=reported_usage(prediction.metrics, USAGE_FIELDS),
        raw=prediction.dict(),
    )


def _progress(prediction: Prediction) -> tuple[float | None, float | None]:
    """The fraction done and its resolution from the SDK's parse of the tqdm bar in ``logs``.

    tqdm counts finished steps, so the job is between ``current`` and ``current + 1`` of
    ``total`` steps: the count is finer than the bar's whole percent when ``total`` > 100.
    """
    bar = prediction.progress
    if bar is None:
        return None, None
    if bar.total <= 0 or not 0 <= bar.current <= bar.total:
        return bar.percentage, None
    return bar.current / bar.total, 1 / bar.total


def _outputs(output: Any) -> tuple[OutputRef, ...]:
    if output is None:
        return ()
    items = output if isinstance(output, list) else [output]
    if not all(isinstance(item, str) for item in items):
        raise ProtocolError(
            f"expected output URL(s), got {type(output).__name__}", provider="replicate"
        )
    return tuple(OutputRef(url=item) for item in items)


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ProtocolError(f"bad timestamp {text!r}", provider="replicate") from exc


def _job_from(hint: Job, prediction: Prediction) -> Job:
    return Job(
        route=hint.route,
        id=checked_id(prediction.id),
        request=hint.request,
        submitted_at=hint.submitted_at,
        handles=dict(prediction.urls or {}),
        initial=parse_prediction(prediction),
    )
