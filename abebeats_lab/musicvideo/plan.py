"""Pure shot planning for a music video: where the cuts go and what each shot asks for.

From a `BeatAnalysis` and the routes' shared settings, `plan_shots` tiles the track with shots
cut on detected beats (section changes first), each within the longest clip every route allows,
and writes one prompt per shot (`shot_prompt`: a rotating framing and a mood from the section's
energy). Nothing here calls a provider or writes a file: `pipeline.py` runs the plan.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from abebeats_lab import capabilities
from abebeats_lab._types import Route
from abebeats_lab.errors import ValidationError
from abebeats_lab.musicvideo.assemble import FPS, frame_index
from abebeats_lab.musicvideo.beats import BeatAnalysis

__all__ = [
    "FRAMINGS",
    "MIN_SHOT_S",
    "MOODS",
    "PREFERRED_RESOLUTION",
    "TARGET_BEATS",
    "PlannedShot",
    "common_settings",
    "plan_cuts",
    "plan_shots",
    "shot_prompt",
]

TARGET_BEATS = 8
"""A shot lasts about two bars of 4/4 when the routes allow it."""
MIN_SHOT_S = 1.0
"""Cuts closer together than this flicker; the planner avoids them where the beats allow."""
PREFERRED_RESOLUTION = "720p"
FRAMINGS = ("wide establishing shot", "medium shot", "close-up", "tracking shot", "aerial view")
MOODS = (
    (0.34, "calm, slow drifting camera, soft light"),
    (0.67, "steady movement, warm light"),
    (1.01, "energetic, fast camera moves, vivid saturated light"),
)
"""(upper energy bound, mood) from the quietest sections to the loudest."""


@dataclass(frozen=True, slots=True)
class PlannedShot:
    """One shot before generation: where it sits in the output and what it asks for."""

    index: int
    start_frame: int
    end_frame: int
    start_s: float
    """The beat (or 0) the shot starts on, in seconds; ``start_frame`` is its nearest frame."""
    end_s: float
    section: int
    prompt: str
    clip_duration_s: int
    """The clip length requested: the shortest allowed duration that covers the shot."""

    @property
    def frames(self) -> int:
        """Output frames the shot fills."""
        return self.end_frame - self.start_frame


def common_settings(
    routes: Sequence[Route], aspect_ratio: str, resolution: str | None
) -> tuple[tuple[int, ...], str, tuple[int, int]]:
    """Durations every route allows, the resolution to ask for, and the seed range they share.

    The fallback chain sends one request to each route in turn, so every setting must suit
    them all; anything that cannot is a `ValidationError` before any clip is paid for.
    """
    caps = [capabilities.capabilities_for(route) for route in routes]
    names = ", ".join(str(r) for r in routes)
    durations = tuple(sorted(set.intersection(*(set(c.durations) for c in caps))))
    if not durations:
        raise ValidationError("routes", names, "routes sharing at least one clip duration")
    shared = [r for r in caps[0].resolutions if all(r in c.resolutions for c in caps)]
    if resolution is None:
        resolution = PREFERRED_RESOLUTION if PREFERRED_RESOLUTION in shared else (shared or [""])[0]
    if resolution not in shared:
        raise ValidationError(
            "resolution", resolution, ", ".join(shared) or "none shared", route=names
        )
    if not all(aspect_ratio in c.aspect_ratios for c in caps):
        raise ValidationError(
            "aspect_ratio", aspect_ratio, "a ratio every route allows", route=names
        )
    seeds = (max(c.seed_min for c in caps), min(c.seed_max for c in caps))
    return durations, resolution, seeds


def _cut_candidates(analysis: BeatAnalysis, total: int) -> list[int]:
    """Frames of the detected beats strictly inside the video, one per frame."""
    return sorted({f for f in (frame_index(b) for b in analysis.beats) if 0 < f < total})


def _shots_left(frames: int, max_frames: int, target: int) -> int:
    """How many shots the rest should be: enough to fit, about the target length each."""
    return max(-(-frames // max_frames), round(frames / max(1, target)), 1)


def _next_cut(start: int, end: int, beats: list[int], max_frames: int, shots: int) -> int:
    """The beat to cut on after ``start`` when ``shots`` shots remain before ``end``: the one
    nearest an even split, leaving no shot too long and, where possible, none too short."""
    shortest = round(MIN_SHOT_S * FPS)
    rest_max = (shots - 1) * max_frames
    reach = [b for b in beats if start < b <= start + max_frames and b < end]
    reach = [b for b in reach if end - b <= rest_max] or reach
    comfortable = [b for b in reach if b - start >= shortest and end - b >= shortest] or reach
    if not comfortable:
        return min(end, start + max_frames)  # no beat within reach (silence): an off-beat cut
    aim = start + (end - start) / shots
    return min(comfortable, key=lambda b: (abs(b - aim), -b))


def plan_cuts(
    analysis: BeatAnalysis, max_clip_s: int, target_beats: int = TARGET_BEATS
) -> list[int]:
    """Shot boundaries in frames from 0 to the last frame: every section change, then beats
    that split each section into shots of about ``target_beats`` within the longest clip."""
    total = max(1, frame_index(analysis.duration_s))
    beats = _cut_candidates(analysis, total)
    changes = sorted({frame_index(s.start_s) for s in analysis.sections[1:]} & set(beats))
    max_frames = max_clip_s * FPS
    period = 60 / analysis.tempo_bpm if analysis.tempo_bpm > 0 else max_clip_s
    target = min(max_frames, round(target_beats * period * FPS))
    cuts = [0]
    for end in [*changes, total]:
        while (shots := _shots_left(end - cuts[-1], max_frames, target)) > 1:
            cut = _next_cut(cuts[-1], end, beats, max_frames, shots)
            if cut >= end:
                break
            cuts.append(cut)
        cuts.append(end)
    return cuts


def shot_prompt(prompt: str, index: int, energy: float, style: str | None = None) -> str:
    """The base prompt plus a framing that rotates per shot and a mood from section energy."""
    mood = next(text for bound, text in MOODS if energy < bound)
    parts = [prompt.strip().rstrip("."), FRAMINGS[index % len(FRAMINGS)], mood]
    if style:
        parts.append(style.strip())
    return ", ".join(parts)


def plan_shots(
    analysis: BeatAnalysis,
    prompt: str,
    durations: Sequence[int],
    *,
    style: str | None = None,
    target_beats: int = TARGET_BEATS,
) -> list[PlannedShot]:
    """Shots that tile the track, cut on beats, each within the longest allowed clip."""
    cuts = plan_cuts(analysis, max(durations), target_beats)
    beat_at = {frame_index(b): b for b in analysis.beats}
    shots = []
    for index, (start, end) in enumerate(itertools.pairwise(cuts)):
        start_s = 0.0 if start == 0 else beat_at.get(start, start / FPS)
        section = _section_at(analysis, start_s)
        energy = analysis.sections[section].energy if analysis.sections else 0.5
        length_s = (end - start) / FPS
        clip_s = min((d for d in durations if d >= length_s - 1e-9), default=max(durations))
        end_s = analysis.duration_s if end == cuts[-1] else beat_at.get(end, end / FPS)
        text = shot_prompt(prompt, index, energy, style)
        shots.append(PlannedShot(index, start, end, start_s, end_s, section, text, clip_s))
    return shots


def _section_at(analysis: BeatAnalysis, seconds: float) -> int:
    starts = [s.start_s for s in analysis.sections]
    return max(0, sum(1 for s in starts if s <= seconds + 1e-6) - 1)
