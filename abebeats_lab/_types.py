"""Provider-neutral values: what is asked for, where it goes, and what came back."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Self

from abebeats_lab.errors import LabError, UnknownRouteError

ROUTE_DEFAULT_FIELDS = ("duration_s", "aspect_ratio", "resolution")
"""`Settings` fields where ``None`` means "the route's own default" (see `capabilities`)."""

EMULATOR_HEADER = "x-abebeats-emulator"
"""The response header every built-in emulator answer carries; a client that sees it knows its
figures are emulated and nothing was charged, however the emulator was started."""


class JobState(enum.StrEnum):
    """Every state a job can be in: the one vocabulary of statuses, rows and events.

    A provider's status is only ever one of the five provider states (``queued``,
    ``running``, ``succeeded``, ``failed``, ``canceled``: `from_provider`); the others are
    the runner's own steps around them: ``planned`` (not sent yet), ``submitting`` (the create
    is being sent), ``downloading`` (done remotely, the video not yet saved here) and
    ``ambiguous`` (a create whose answer was lost or unusable, never resubmitted blindly). The
    values are what the store holds.
    """

    PLANNED = "planned"
    SUBMITTING = "submitting"
    QUEUED = "queued"
    RUNNING = "running"
    DOWNLOADING = "downloading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    AMBIGUOUS = "ambiguous"

    @property
    def terminal(self) -> bool:
        """True once the job can no longer change by itself (`resume` leaves it alone)."""
        return not self.unfinished

    @property
    def unfinished(self) -> bool:
        """True while the run (or `resume`) still has to take the job somewhere."""
        return self in _UNFINISHED

    @property
    def from_provider(self) -> bool:
        """True for the five states a provider's status may carry."""
        return self in _FROM_PROVIDER


_UNFINISHED = frozenset(
    {
        JobState.PLANNED,
        JobState.SUBMITTING,
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.DOWNLOADING,
    }
)
_FROM_PROVIDER = frozenset(
    {JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED}
)


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """One way to buy one model: ``provider:model``, e.g. ``runway:gen4.5``."""

    provider: str
    """Registry name of the provider client (``runway``, ``replicate``, ``veo``, ...)."""
    model: str
    """The model as the provider names it (``gen4.5``, ``google/veo-3-fast``, ...)."""

    @classmethod
    def parse(cls, text: str | Route) -> Route:
        """Parse ``provider:model``; only the first colon separates (Replicate versions use one)."""
        if isinstance(text, Route):
            return text
        provider, sep, model = text.strip().partition(":")
        if not sep or not provider or not model:
            raise UnknownRouteError(
                text, hint="a route looks like provider:model, e.g. local:procedural"
            )
        return cls(provider.lower(), model)

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


class Shape(NamedTuple):
    """Duration, aspect ratio and resolution of a request whose route defaults are filled in."""

    duration_s: int
    aspect_ratio: str
    resolution: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _VideoFields:
    """The fields `Settings` and `VideoRequest` share, declared once."""

    duration_s: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    image: str | None = None
    """Optional first frame: an https URL or a ``data:`` URI."""
    generate_audio: bool = False
    extras: Mapping[str, Any] = field(default_factory=dict)
    """Route-specific fields passed through to the provider payload unchanged."""

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-friendly values (for the store and reports)."""
        values = {f.name: getattr(self, f.name) for f in fields(_VideoFields)}
        values["extras"] = dict(self.extras)
        return values


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings(_VideoFields):
    """Everything about a video but its prompt: what `compare`, `generate` and the music
    video hold fixed while prompts and routes vary.

    ``duration_s``, ``aspect_ratio`` and ``resolution`` left ``None`` take each route's own
    default when a run is planned (`capabilities.with_defaults`), so a setting nobody chose
    never makes a route refuse the request.
    """


@dataclass(frozen=True, slots=True)
class VideoRequest(_VideoFields):
    """One prompt with its `Settings`: what a route is asked to make, in provider-neutral
    terms; providers translate it to their own payload and only ever see filled-in requests
    (no route default left ``None``)."""

    prompt: str

    @classmethod
    def of(cls, prompt: str, settings: Settings | None = None) -> VideoRequest:
        """``prompt`` with ``settings`` (default: every field the route's default)."""
        return cls(prompt, **(settings or Settings()).as_dict())

    @property
    def settings(self) -> Settings:
        """Everything but the prompt."""
        return Settings(**_VideoFields.as_dict(self))

    def as_dict(self) -> dict[str, Any]:
        """The prompt and the settings as plain JSON-friendly values (for the store)."""
        return {"prompt": self.prompt, **_VideoFields.as_dict(self)}

    def shape(self) -> Shape:
        """Duration, ratio and resolution; raises `LabError` while a route default is unfilled."""
        duration, ratio, resolution = self.duration_s, self.aspect_ratio, self.resolution
        if duration is None or ratio is None or resolution is None:
            unset = [name for name in ROUTE_DEFAULT_FIELDS if getattr(self, name) is None]
            raise LabError(
                f"{', '.join(unset)} not set: fill in the route's defaults first "
                "(capabilities.with_defaults; compare and generate do it)"
            )
        return Shape(duration, ratio, resolution)


@dataclass(frozen=True, slots=True)
class OutputRef:
    """Where a finished video can be fetched: a URL, or bytes the provider returned inline."""

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One observation of a job, normalised; ``raw`` keeps the provider's payload."""

    state: JobState
    """One of the five provider states (`JobState.from_provider`)."""
    raw_status: str
    """The provider's own word for the state (``THROTTLED``, ``starting``, ``IN_QUEUE``...)."""
    progress: float | None = None
    """0..1 where the provider reports it."""
    progress_step: float | None = None
    """How coarse ``progress`` is: the job's true fraction done lies in
    [``progress``, ``progress + progress_step``) (a tqdm bar's count of finished steps). None
    when the provider reports a fine-grained or unknown scale."""
    queue_position: int | None = None
    error: str | None = None
    error_code: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    """Provider timestamps (UTC) where the provider reports them."""
    outputs: tuple[OutputRef, ...] = ()
    retry_after_s: float | None = None
    """A server hint on when to ask again."""
    usage: Mapping[str, float] = field(default_factory=dict)
    """What the provider reports the job used, under its own documented field names
    (Replicate's ``metrics.predict_time``, fal's ``metrics.inference_time``: seconds)."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


def reported_usage(metrics: Any, names: tuple[str, ...]) -> dict[str, float]:
    """The documented ``names`` of a provider's ``metrics`` object that hold a finite number
    (anything else, or no object at all, is left out: usage is reported, never guessed)."""
    if not isinstance(metrics, Mapping):
        return {}
    found = {name: metrics.get(name) for name in names}
    return {
        name: float(value)
        for name, value in found.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


@dataclass(frozen=True, slots=True)
class Job:
    """One request submitted to one route."""

    route: Route
    id: str
    """The provider's id for the job (task id, prediction id, operation name, request id)."""
    request: VideoRequest
    submitted_at: datetime
    """UTC wall clock when the create call was sent."""
    handles: Mapping[str, str] = field(default_factory=dict)
    """Provider-specific URLs or names needed to re-attach (stored, so resume works)."""
    initial: JobStatus | None = None
    """The status carried by the create response, if it had one (Replicate's ``Prefer: wait``)."""


@dataclass(slots=True)
class Timing:
    """The figures of DESIGN.md "Timing"; ``sources`` says per field who measured it."""

    submit_s: float | None = None
    queue_s: float | None = None
    run_s: float | None = None
    detect_lag_s: float | None = None
    download_s: float | None = None
    total_s: float | None = None
    polls: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    """field name -> ``provider``, ``client`` or ``emulator``."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What PyAV saw in a video file."""

    duration_s: float
    width: int
    height: int
    fps: float
    codec: str
    has_audio: bool
    bytes: int


@dataclass(frozen=True, slots=True)
class Output:
    """A verified video on disk."""

    path: Path
    probe: Probe
    sha256: str
