"""Google Veo on Vertex AI (``veo:<model>``), through the official ``google-genai`` SDK.

genai sends ``:predictLongRunning`` and polls ``:fetchPredictOperation``; this module adds
what it lacks: retries of a refused create (429/5xx, honouring Google's ``RetryInfo``), no
blind retry of a create that may have arrived (`AmbiguousSubmitError`), and our error types.
Veo reports only ``done``: there is no queue signal, so a job that is not done is RUNNING,
and no cancel exists. The genai client (one per event loop, genai's retries off), its hooks
and the translation of genai's errors are shared with Gemini (`providers._genai`); Veo sets
`GenaiProvider.answer_cap` to `MAX_ANSWER_BYTES`, larger than other providers' cap because a
finished operation carries the video inline, base64.

Credentials, in order: the ``credentials`` argument; a static OAuth token (``api_key`` or
``GOOGLE_OAUTH_ACCESS_TOKEN``); application default credentials, read from
``GOOGLE_APPLICATION_CREDENTIALS`` or gcloud's ADC file only. ``google.auth.default()`` is
never called, because it would probe the GCE metadata server over the network.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from google import genai
from google.auth.credentials import Credentials
from google.genai import types
from google.oauth2.credentials import Credentials as TokenCredentials

from abebeats_lab import config
from abebeats_lab._types import Job, JobState, JobStatus, OutputRef, Route, VideoRequest
from abebeats_lab.errors import (
    ConfigError,
    DownloadError,
    MissingKeyError,
    ProtocolError,
    ValidationError,
)
from abebeats_lab.http import DEFAULT_RETRY, RetryPolicy, retry_errors
from abebeats_lab.providers._genai import GenaiProvider
from abebeats_lab.providers.base import utcnow
from abebeats_lab.secret import Secret

__all__ = ["VeoProvider", "build_config", "parse_operation"]

API_VERSION = "v1"
"""GA Veo models fail on genai's default v1beta1 (python-genai issue #2079); v1 works."""
DEFAULT_LOCATION = "us-central1"
DEFAULT_TIMEOUT_S = 60.0
VERTEX_URL = "https://{location}-aiplatform.googleapis.com"
"""Where genai sends Vertex requests when no base URL is set."""
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
PROJECT_VARS = config.PROVIDER_ENV["veo"].also
KEY_VARS = ("GOOGLE_OAUTH_ACCESS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS")
_ADC_FILE = "application_default_credentials.json"
_CODE_CANCELLED = 1
_NO_VIDEO = "NO_VIDEO"
"""Error code of an operation done without a video and without a filter count."""
MAX_ANSWER_BYTES = 96 * 1024**2
"""A done operation carries the video inline as base64: 96 MiB holds a ~70 MB video, far
above an 8 s clip; bigger outputs belong in Cloud Storage (``output_gcs_uri``)."""
_OPERATION = re.compile(
    r"projects/{s}/locations/{s}/publishers/{s}/models/{s}/operations/{s}".format(
        s=r"[A-Za-z0-9][A-Za-z0-9._-]*"
    )
)
"""A Vertex operation name; genai builds the poll path from it, so nothing else may pass."""
_CONFIG_EXTRAS = frozenset(
    {
        "enhance_prompt",
        "person_generation",
        "output_gcs_uri",
        "fps",
        "compression_quality",
        "resize_mode",
        "labels",
        "pubsub_topic",
        "number_of_videos",
    }
)


def _adc_path() -> Path | None:
    """The ADC file to use, if one exists; never a network lookup."""
    explicit = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "").strip()
    if explicit:
        return Path(explicit)
    folder = os.environ.get("CLOUDSDK_CONFIG") or str(Path.home() / ".config" / "gcloud")
    candidate = Path(folder) / _ADC_FILE
    return candidate if candidate.is_file() else None


def resolve_credentials(
    credentials: Credentials | None, api_key: str | Secret | None
) -> tuple[Credentials, str | None]:
    """Credentials and the project the ADC file names (if any); see the module docstring."""
    if credentials is not None:
        return credentials, None
    token = config.key_for("veo", api_key, required=False)
    if token is not None:
        return TokenCredentials(token=token.reveal()), None  # type: ignore[no-untyped-call]
    path = _adc_path()
    if path is None:
        raise MissingKeyError("veo", KEY_VARS)
    return _load_adc(path)


def _load_adc(path: Path) -> tuple[Credentials, str | None]:
    """User or service-account credentials from an ADC file, by the file's declared type.

    Type-specific loaders, as google-auth recommends: a file of any other type is refused
    rather than executed (external-account configs can run commands).
    """
    from google.oauth2 import service_account

    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        kind = info.get("type")
        if kind == "authorized_user":
            user = TokenCredentials.from_authorized_user_info(info, scopes=list(SCOPES))  # type: ignore[no-untyped-call]
            return user, info.get("quota_project_id")
        if kind == "service_account":
            robot = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)  # type: ignore[no-untyped-call]
            return robot, info.get("project_id")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"veo: cannot read credentials from {path.name}: {exc}") from exc
    raise ConfigError(
        f"veo: {path.name} holds {kind!r} credentials; only authorized_user and "
        "service_account files are supported (or pass credentials=...)"
    )


def build_config(
    request: VideoRequest, route: Route
) -> tuple[types.GenerateVideosSource, types.GenerateVideosConfig]:
    """The genai source and config for one request (one video per job)."""
    unknown = sorted(set(request.extras) - _CONFIG_EXTRAS)
    if unknown:
        raise ValidationError(
            "extras", unknown, ", ".join(sorted(_CONFIG_EXTRAS)), route=str(route)
        )
    options: dict[str, Any] = {
        "number_of_videos": 1,
        "duration_seconds": request.duration_s,
        "aspect_ratio": request.aspect_ratio,
        "resolution": request.resolution,
        "seed": request.seed,
        "negative_prompt": request.negative_prompt,
        "generate_audio": request.generate_audio,
        **request.extras,
    }
    image = _image(request.image, route) if request.image else None
    source = types.GenerateVideosSource(prompt=request.prompt, image=image)
    return source, types.GenerateVideosConfig(**options)


def _image(text: str, route: Route) -> types.Image:
    if text.startswith("gs://"):
        return types.Image(gcs_uri=text)
    header, sep, payload = text.partition(",")
    if text.startswith("data:") and sep and header.endswith(";base64"):
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise ValidationError("image", "<data: URI>", "valid base64", route=str(route)) from exc
        return types.Image(image_bytes=data, mime_type=header[len("data:") : -len(";base64")])
    raise ValidationError("image", text[:40], "a base64 data: URI or a gs:// URI", route=str(route))


class VeoProvider(GenaiProvider):
    """Veo video generation on Vertex AI; see the module docstring."""

    name: ClassVar[str] = "veo"
    api_version: ClassVar[str | None] = API_VERSION
    answer_cap: ClassVar[int | None] = MAX_ANSWER_BYTES

    def __init__(
        self,
        *,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        project: str | None = None,
        location: str | None = None,
        credentials: Credentials | None = None,
        emulated: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._credentials, adc_project = resolve_credentials(credentials, api_key)
        self.project = project or config.env_first(*PROJECT_VARS) or adc_project
        if not self.project:
            raise ConfigError(
                "veo: no Google Cloud project. Set GOOGLE_CLOUD_PROJECT "
                "(or GOOGLE_CLOUD_PROJECT_ID), pass project=..., or use --emulate"
            )
        self.location = location or config.env_first(
            "GOOGLE_CLOUD_LOCATION", default=DEFAULT_LOCATION
        )
        super().__init__(
            base_url=config.base_url_for("veo", base_url) or None,
            emulated=emulated,
            timeout_s=timeout_s,
            retry=retry,
        )

    def __repr__(self) -> str:
        where = f"project={self.project!r}, location={self.location!r}"
        return f"VeoProvider({where}, emulated={self.emulated})"

    @property
    def can_cancel(self) -> bool:
        """Veo operations have no cancel."""
        return False

    @property
    def base_url(self) -> str | None:
        return self._base_url or VERTEX_URL.format(location=self.location)

    def _new_client(self, options: types.HttpOptions) -> genai.Client:
        return genai.Client(
            vertexai=True,
            project=self.project,
            location=self.location,
            credentials=self._credentials,
            http_options=options,
        )

    async def submit(self, request: VideoRequest, route: Route) -> Job:
        source, video_config = build_config(request, route)
        submitted_at = utcnow()
        models = self._client().aio.models
        operation = await self._create_with_retries(
            lambda: models.generate_videos(model=route.model, source=source, config=video_config)
        )
        if not operation.name:
            raise ProtocolError("the create answer carried no operation name", provider=self.name)
        checked_name(operation.name)
        return Job(
            route=route,
            id=operation.name,
            request=request,
            submitted_at=submitted_at,
            handles={"operation": operation.name},
        )

    async def _create_with_retries(
        self, create: Callable[[], Awaitable[types.GenerateVideosOperation]]
    ) -> types.GenerateVideosOperation:
        return await retry_errors(lambda: self._call(create, creating=True), policy=self._retry)

    async def status(self, job: Job) -> JobStatus:
        name = checked_name(job.id)
        operations = self._client().aio.operations
        operation = await self._call(
            lambda: operations.get(types.GenerateVideosOperation.model_validate({"name": name}))
        )
        return parse_operation(operation)

    async def cancel(self, job: Job) -> bool:
        """No-op: Vertex has no cancel for Veo operations, so nothing is ever confirmed."""
        return False

    async def outputs(self, job: Job, status: JobStatus) -> list[OutputRef]:
        """Inline bytes as they are; ``gs://`` objects are fetched with google-cloud-storage."""
        return [await self._fetch_gcs(ref) if _is_gcs(ref) else ref for ref in status.outputs]

    async def _fetch_gcs(self, ref: OutputRef) -> OutputRef:
        try:
            storage = importlib.import_module("google.cloud.storage")
        except ImportError as exc:
            raise DownloadError(
                f"{ref.url} is in Cloud Storage; downloading it needs the optional package "
                "google-cloud-storage (pip install google-cloud-storage), or leave out "
                "output_gcs_uri so Veo returns the video inline"
            ) from exc
        bucket, _, blob = (ref.url or "")[len("gs://") :].partition("/")
        gcs = storage.Client(project=self.project, credentials=self._credentials)
        data = await asyncio.to_thread(gcs.bucket(bucket).blob(blob).download_as_bytes)
        return OutputRef(data=data, content_type=ref.content_type)


def checked_name(name: str) -> str:
    """An operation name of Vertex's shape, or a `ProtocolError` naming the one given."""
    if not _OPERATION.fullmatch(name):
        raise ProtocolError(
            f"operation name {name[:120]!r} is not a Vertex operation", provider="veo"
        )
    return name


def parse_operation(operation: types.GenerateVideosOperation) -> JobStatus:
    """An operation as a `JobStatus`. Veo has no queue signal: not done means RUNNING."""
    raw = _raw(operation)
    if not operation.done:
        return JobStatus(JobState.RUNNING, "running", raw=raw)
    if operation.error:
        code = operation.error.get("code")
        state = JobState.CANCELED if code == _CODE_CANCELLED else JobState.FAILED
        return JobStatus(
            state,
            "error",
            error=str(operation.error.get("message") or operation.error),
            error_code=None if code is None else str(code),
            raw=raw,
        )
    response = operation.response
    videos = (response.generated_videos if response else None) or []
    refs = tuple(ref for video in videos if (ref := _ref(video)) is not None)
    if not refs:
        return _without_video(response, raw)
    return JobStatus(JobState.SUCCEEDED, "done", progress=1.0, outputs=refs, raw=raw)


def _without_video(response: types.GenerateVideosResponse | None, raw: dict[str, Any]) -> JobStatus:
    """Done with no video is a failure with Vertex's reasons (not charged), never a garbled
    answer to ask again: its filter may drop a video without counting it, or say nothing."""
    reasons = "; ".join(response.rai_media_filtered_reasons or []) if response else ""
    because = reasons or "no reason given"
    if response is not None and (response.rai_media_filtered_count or 0) > 0:
        error = f"safety filter removed the video: {because}"
        return JobStatus(
            JobState.FAILED, "filtered", error=error, error_code="RAI_FILTERED", raw=raw
        )
    error = f"done without a video: {because}"
    return JobStatus(JobState.FAILED, "done", error=error, error_code=_NO_VIDEO, raw=raw)


def _ref(video: types.GeneratedVideo) -> OutputRef | None:
    if video.video is None:
        return None
    mime = video.video.mime_type or "video/mp4"
    if video.video.video_bytes:
        return OutputRef(data=video.video.video_bytes, content_type=mime)
    if video.video.uri:
        return OutputRef(url=video.video.uri, content_type=mime)
    return None


def _raw(operation: types.GenerateVideosOperation) -> dict[str, Any]:
    """The operation without video bytes (they go to disk, not to the store)."""
    response = operation.response
    videos = [
        {
            "uri": v.video.uri,
            "mime_type": v.video.mime_type,
            "bytes": len(v.video.video_bytes or b""),
        }
        for v in (response.generated_videos or [] if response else [])
        if v.video is not None
    ]
    return {
        "name": operation.name,
        "done": operation.done,
        "error": operation.error,
        "rai_media_filtered_count": response.rai_media_filtered_count if response else None,
        "rai_media_filtered_reasons": response.rai_media_filtered_reasons if response else None,
        "videos": videos,
    }


def _is_gcs(ref: OutputRef) -> bool:
    return ref.data is None and bool(ref.url) and (ref.url or "").startswith("gs://")
