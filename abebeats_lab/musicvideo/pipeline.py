"""The music-video pipeline: an audio track and a prompt in, one video cut on the beat out.

`make_music_video` analyses the track (`beats.analyze`), plans shots whose cuts land on
detected beats (section changes first) and that fit every route's allowed clip durations,
with one prompt per shot (the base prompt, a framing that rotates from shot to shot and a
mood from the section's energy; `plan.plan_shots`) and one seed throughout, generates each
clip through the fallback chain, then conforms, cuts and muxes the original audio into one
H.264/AAC MP4 (`assemble.assemble`). A JSON shot list beside the video records each shot's
timing, prompt, route, every attempt and its figures.

All the clips are one run (`run.api.generate_many`): one run id, one set of clients (one
set of emulators), each route's caps holding across shots, each shot's attempts rows with
``prompt_index`` = shot index. The same music video asked again with the same run folder
continues that run: it first settles what an interrupt or a kill left, as ``abebeats-lab
resume RUN_DIR --rerun-cancelled`` does (a job that may still finish is collected, never
paid again), then reuses every clip that succeeded and generates only the shots without one
before the assembly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from abebeats_lab import capabilities
from abebeats_lab._types import Route, Settings, VideoRequest
from abebeats_lab.errors import ValidationError
from abebeats_lab.media.render import frame_size
from abebeats_lab.musicvideo.assemble import FPS, Shot, assemble, frame_index
from abebeats_lab.musicvideo.beats import BeatAnalysis, analyze
from abebeats_lab.musicvideo.plan import TARGET_BEATS, PlannedShot, common_settings, plan_shots
from abebeats_lab.run import api as runner
from abebeats_lab.run.plan import new_run_id
from abebeats_lab.store import DB_NAME, JobRow, RunStore
from abebeats_lab.waiting import WaitPolicy

__all__ = [
    "DEFAULT_ROUTES",
    "MusicVideo",
    "ShotRecord",
    "generate_from_prompt",
    "make_music_video",
]

DEFAULT_ROUTES = ("local:procedural",)
RUNS_DIR = "abebeats-runs"  # one default folder for every entry point (gitignored)
DEFAULT_OUT = "music_video.mp4"
"""The video's name in the run folder when no ``out`` is given."""
DEFAULT_ASPECT_RATIO = "16:9"
"""Every shot shares one frame, so a ratio left unset is this one, not each route's own."""
SHOT_CONCURRENCY = 3
"""Clips generated at once; each route's own caps still apply inside the runner."""
RUN_KIND = "music-video"
"""The stored run's kind; a run of this kind in the run folder may be continued."""
MUSIC_VIDEO_KEY = "music_video"
"""The run spec's entry that says which video the run makes (see `_video_key`)."""
HASH_BLOCK = 1 << 20
"""Bytes read at a time when hashing the audio track."""

ATTEMPT_FIELDS = (
    "run_id", "route", "state", "error", "job_id", "emulated", "seed",
    "submit_s", "queue_s", "run_s", "detect_lag_s", "download_s", "total_s", "polls",
    "cost_usd", "cost_estimate_usd", "cost_note",
    "output_path", "duration_s", "width", "height", "fps", "codec",
    "submitted_at", "finished_at",
)  # fmt: skip
"""What the shot list keeps of each attempt's stored row (the store holds the rest)."""

UpdateCallback = Callable[[runner.JobEvent], None]


@dataclass(frozen=True, slots=True)
class ShotRecord:
    """One shot after generation: its plan, the clip that filled it and every attempt."""

    shot: PlannedShot
    route: str
    clip: str
    attempts: tuple[dict[str, Any], ...]
    """Every route tried for this shot, in order: state, error and figures."""
    held_frames: int = 0
    """Frames that repeat the clip's last frame because the clip came back short."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (the shot list's entry)."""
        values = asdict(self.shot)
        values.update(route=self.route, clip=self.clip, held_frames=self.held_frames)
        values["attempts"] = [dict(a) for a in self.attempts]
        return values


@dataclass(frozen=True, slots=True)
class MusicVideo:
    """The finished video, its shot list, and the analysis it was cut to."""

    path: Path
    shot_list: Path
    run_dir: Path
    analysis: BeatAnalysis
    shots: tuple[ShotRecord, ...]
    width: int
    height: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def cuts_s(self) -> list[float]:
        """Output times of the cuts between shots."""
        return [record.shot.start_frame / FPS for record in self.shots[1:]]

    def to_dict(self) -> dict[str, Any]:
        """The shot list document."""
        return {
            "video": str(self.path),
            "run_dir": str(self.run_dir),
            "width": self.width,
            "height": self.height,
            "fps": FPS,
            **self.settings,
            "analysis": self.analysis.to_dict(),
            "shots": [record.to_dict() for record in self.shots],
        }


# ---------------------------------------------------------------------------- generation


def _derived_seed(prompt: str, low: int, high: int) -> int:
    """A seed that follows from the prompt, so a rerun gives the same clips."""
    digest = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    return low + digest % (high - low + 1)


def _attempt(row: JobRow) -> dict[str, Any]:
    values = row.to_dict()
    return {name: values.get(name) for name in ATTEMPT_FIELDS}


async def _generate_all(
    shots: Sequence[PlannedShot],
    settings: Sequence[Settings],
    chain: Sequence[Route],
    directory: Path,
    options: _Options,
) -> list[ShotRecord]:
    """Every shot's clip through the fallback chain, all shots one run (see the module doc).

    The first shot that fails (every route, or a missing key) cancels the others and its
    error is raised, tagged with the shot.
    """
    key = options.key
    continuing = _run_to_continue(directory, key)
    if continuing is not None:
        await _settle(directory, continuing, options)
    results = await runner.generate_many(
        [s.prompt for s in shots], chain, settings, fallback=True, run_dir=directory,
        emulate=options.emulate, on_update=options.on_update, policy=options.policy,
        concurrency=options.route_concurrency, parallel=options.shot_concurrency,
        labels=[f"shot {s.index}" for s in shots], kind=RUN_KIND, spec={MUSIC_VIDEO_KEY: key},
        continue_run=continuing, run_id=None if continuing else options.run_id,
    )  # fmt: skip
    return [
        ShotRecord(
            shot, r.row.route, str(r.output_path), tuple(map(_attempt, [*r.failures, r.row]))
        )
        for shot, r in zip(shots, results, strict=True)
    ]


async def _settle(directory: Path, run_id: str, options: _Options) -> None:
    """Finish what an interrupt or a kill left of the run, as ``abebeats-lab resume
    --rerun-cancelled`` does (one rule, one place): a job that may still finish is
    re-attached and collected, and only a job that never existed or that its provider
    cancelled is sent again, so continuing never pays twice for a shot."""
    if runner.load_run(directory, run_id).rows:
        await runner.resume(
            directory, run_id=run_id, emulate=options.emulate, on_update=options.on_update,
            policy=options.policy, rerun_cancelled=True,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Options:
    """What the generation of every shot shares, and what identifies the video asked for."""

    key: dict[str, Any]
    """What a stored music-video run must match to be continued (see `_video_key`)."""
    emulate: bool
    on_update: UpdateCallback | None
    policy: WaitPolicy | None
    shot_concurrency: int
    route_concurrency: Mapping[str, int] | None
    run_id: str | None
    """The id of the run, when one is started (default: a fresh one)."""


def _video_key(settings: dict[str, Any], audio_sha256: str, target_beats: int) -> dict[str, Any]:
    """Everything that decides the shots and their clips, as stored JSON values: the audio
    by content (a copied or moved track still matches), not by path."""
    fields = {k: v for k, v in settings.items() if k != "audio"}
    document = {**fields, "audio_sha256": audio_sha256, "target_beats": target_beats}
    loaded: dict[str, Any] = json.loads(json.dumps(document))
    return loaded


def _run_to_continue(directory: Path, key: dict[str, Any]) -> str | None:
    """The latest music-video run in ``directory`` if it was asked for the same video."""
    if not (directory / DB_NAME).is_file():
        return None
    with RunStore(directory) as store:
        mine = [r for r in store.runs() if r.kind == RUN_KIND]
    if mine and mine[-1].spec.get(MUSIC_VIDEO_KEY) == key:
        return mine[-1].run_id
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_file(a: Path, b: Path) -> bool:
    """True when writing ``a`` would overwrite ``b``: the same path after symlinks and
    relative parts, or a hard link to it."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist yet: then they are not the same file
        return False


def _default_run_dir(run_id: str) -> Path:
    return Path.cwd() / RUNS_DIR / f"music-video-{run_id}"


async def make_music_video(
    prompt: str,
    audio_path: Path | str,
    routes: Sequence[str | Route] = DEFAULT_ROUTES,
    settings: Settings | None = None,
    *,
    fallback: bool = True,
    style: str | None = None,
    run_dir: Path | str | None = None,
    out: Path | str | None = None,
    emulate: bool = False,
    on_update: UpdateCallback | None = None,
    policy: WaitPolicy | None = None,
    target_beats: int = TARGET_BEATS,
    concurrency: int = SHOT_CONCURRENCY,
    route_concurrency: Mapping[str, int] | None = None,
    run_id: str | None = None,
) -> MusicVideo:
    """Make a video for ``audio_path`` from ``prompt``, cut on its beats; see the module doc.

    ``routes`` are tried in order for every shot (only the first with ``fallback=False``);
    the ``settings`` must suit them all: every shot gets them, with its own clip length
    (so ``duration_s`` stays unset), an aspect ratio of 16:9 unless set, and one seed (derived
    from the prompt unless set). Every request is validated before the first clip is asked
    for. The video goes to ``out`` (default ``<run_dir>/music_video.mp4``) and the shot list
    beside it as ``<name>.shots.json``; clips and the run store go to ``run_dir`` (default:
    ``abebeats-runs/music-video-<run id>``). ``run_id`` names the run when one is started
    (a stored run of the same video in ``run_dir`` is continued instead).
    """
    if not prompt.strip():
        raise ValidationError("prompt", prompt, "a non-empty prompt")
    chain = tuple(Route.parse(r) for r in routes)[: None if fallback else 1]
    if not chain:
        raise ValidationError("routes", [], "at least one route, e.g. local:procedural")
    if run_dir is None:
        run_id = run_id or new_run_id()
        directory = _default_run_dir(run_id)
    else:
        directory = Path(run_dir)
    target = Path(out) if out is not None else directory / DEFAULT_OUT
    if _same_file(target, Path(audio_path)):
        raise ValidationError("out", str(target), "a file other than the audio track (--audio)")
    asked = settings or Settings()
    if asked.duration_s is not None:
        raise ValidationError(
            "duration_s", asked.duration_s, "unset: each shot's clip length follows the beats"
        )
    aspect_ratio = asked.aspect_ratio or DEFAULT_ASPECT_RATIO
    durations, resolution, (seed_low, seed_high) = common_settings(
        chain, aspect_ratio, asked.resolution
    )
    analysis = await asyncio.to_thread(analyze, audio_path)
    if frame_index(analysis.duration_s) < 1:
        raise ValidationError("audio", Path(audio_path).name, "at least one video frame of audio")
    shots = plan_shots(analysis, prompt, durations, style=style, target_beats=target_beats)
    seed = _derived_seed(prompt, seed_low, seed_high) if asked.seed is None else asked.seed
    base = asked.replace(aspect_ratio=aspect_ratio, resolution=resolution, seed=seed)
    per_shot = [base.replace(duration_s=s.clip_duration_s) for s in shots]
    for shot, each in zip(shots, per_shot, strict=True):
        for route in chain:
            capabilities.validate(VideoRequest.of(shot.prompt, each), route)
    shared = {k: v for k, v in base.as_dict().items() if k != "duration_s"}
    described = {
        "prompt": prompt, "audio": str(audio_path), "routes": [str(r) for r in chain],
        "fallback": fallback, "style": style, **shared, "emulate": emulate,
    }  # fmt: skip
    audio_sha256 = await asyncio.to_thread(_sha256, Path(audio_path))
    key = _video_key(described, audio_sha256, target_beats)
    options = _Options(key, emulate, on_update, policy, concurrency, route_concurrency, run_id)
    records = await _generate_all(shots, per_shot, chain, directory, options)
    return await _finish(records, analysis, Path(audio_path), directory, target, described)


async def _finish(
    records: list[ShotRecord],
    analysis: BeatAnalysis,
    audio: Path,
    directory: Path,
    target: Path,
    settings: dict[str, Any],
) -> MusicVideo:
    """Assemble the clips over the audio into ``target`` and write the shot list."""
    width, height = frame_size(settings["aspect_ratio"], settings["resolution"])
    cuts = [Shot(Path(r.clip), r.shot.start_frame, r.shot.end_frame) for r in records]
    made = await asyncio.to_thread(assemble, cuts, audio, target, width=width, height=height)
    held = [
        ShotRecord(r.shot, r.route, r.clip, r.attempts, h)
        for r, h in zip(records, made.held_frames, strict=True)
    ]
    shot_list = target.with_name(f"{target.stem}.shots.json")
    video = MusicVideo(target, shot_list, directory, analysis, tuple(held), width, height, settings)
    shot_list.write_text(json.dumps(video.to_dict(), indent=2), encoding="utf-8")
    return video


async def generate_from_prompt(prompt: str, audio_path: Path | str, **options: Any) -> MusicVideo:
    """The original AbëBEATs entry point: the same as `make_music_video`."""
    return await make_music_video(prompt, audio_path, **options)
