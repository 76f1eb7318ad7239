"""Does an output match its request? Conformance, and the store columns of a verified output.

Every run row gets these from the probe (`media.probe`) of its file; the quality metrics
reuse `conformance` so the two never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from abebeats_lab._types import Output, Probe, VideoRequest

__all__ = ["conformance", "output_fields"]

DURATION_TOLERANCE_S = 0.5
RATIO_TOLERANCE = 0.02
RESOLUTION_TOLERANCE = 0.02
"""How far an output may stray from the request and still conform (seconds, fractions)."""
_LINES = {
    "240p": 240,
    "360p": 360,
    "480p": 480,
    "540p": 540,
    "720p": 720,
    "1080p": 1080,
    "1440p": 1440,
    "2160p": 2160,
    "4k": 2160,
}


def conformance(probe: Probe, request: VideoRequest) -> tuple[bool, bool, bool]:
    """Did the output match the requested duration, aspect ratio and resolution?"""
    shape = request.shape()
    duration_ok = abs(probe.duration_s - shape.duration_s) <= DURATION_TOLERANCE_S
    width_part, _, height_part = shape.aspect_ratio.partition(":")
    asked = float(width_part) / float(height_part)
    ratio_ok = (
        probe.height > 0 and abs(probe.width / probe.height - asked) <= RATIO_TOLERANCE * asked
    )
    lines = _LINES.get(shape.resolution.lower())
    short = min(probe.width, probe.height)
    resolution_ok = lines is not None and abs(short - lines) <= RESOLUTION_TOLERANCE * lines
    return duration_ok, bool(ratio_ok), resolution_ok


def output_fields(output: Output, run_dir: Path, request: VideoRequest) -> dict[str, Any]:
    """The store columns describing a verified output: path, hash, probe, conformance."""
    probe = output.probe
    duration_ok, ratio_ok, resolution_ok = conformance(probe, request)
    return {
        "output_path": output.path.relative_to(run_dir).as_posix(),
        "sha256": output.sha256,
        "duration_s": probe.duration_s,
        "width": probe.width,
        "height": probe.height,
        "fps": probe.fps,
        "codec": probe.codec,
        "has_audio": probe.has_audio,
        "bytes": probe.bytes,
        "duration_ok": duration_ok,
        "ratio_ok": ratio_ok,
        "resolution_ok": resolution_ok,
    }
