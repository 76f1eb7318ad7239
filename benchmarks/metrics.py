"""CPU cost of the weight-free quality metrics per second of 720p video (issue 15's target).

``python benchmarks/metrics.py [--quick]`` makes two 720p 24 fps clips with AAC audio (the
``local`` route's procedural render, x264 ultrafast; and panning detail under fresh grain,
x264 preset fast with CABAC and B-frames at a high bitrate, harder to decode than a typical
provider output), runs `abebeats_lab.quality.measure.profile` on each
several times in this process, and prints CPU seconds (user + system, all threads; the
decoder runs one thread) per second of video for every step, next to the goal of 0.5 s per
second of video on one core. The ``clip`` step (the CLIP score) is timed only where the real
ViT-B/32 weights are already in the user cache (it never fetches them); elsewhere it shows 0
and the output says the weights were absent. Writes ``benchmarks/results/metrics-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import report
from _common import BENCH_DIR

from abebeats_lab._types import VideoRequest
from abebeats_lab.errors import LabError
from abebeats_lab.media.render import render_video
from abebeats_lab.quality import clip as clip_model
from abebeats_lab.quality.catalogue import METRICS
from abebeats_lab.quality.measure import profile

GOAL_CPU_S_PER_VIDEO_S = 0.5
WIDTH, HEIGHT, FPS = 1280, 720, 24
_NOISE_CRF = "18"
_NOISE_PRESET = "fast"
"""CABAC, B-frames and deblocking, as real providers encode: slower to decode than ultrafast."""
_PAN_PX_PER_FRAME = 4
_AUDIO_RATE = 48_000
_TONE_HZ = 440.0
_AUDIO_CHUNK = 1024
_TILE = 8
_GRAIN = 10
"""Fresh luma grain every frame: motion compensation cannot predict it, so bits stay high."""


def procedural_clip(path: Path, seconds: int) -> Path:
    """What the ``local`` route renders: gradients, moving discs, a caption."""
    path.write_bytes(
        render_video(
            prompt="a red fox runs through fresh snow at dusk",
            duration_s=seconds,
            width=WIDTH,
            height=HEIGHT,
            audio=True,
        )
    )
    return path


def detailed_clip(path: Path, seconds: int) -> Path:
    """Fine noise panning 4 px a frame under fresh grain, preset fast at CRF 18: many bits."""
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, size=(HEIGHT // _TILE * 2, WIDTH // _TILE * 2, 3), dtype=np.uint8)
    canvas = np.repeat(np.repeat(tiles, _TILE, axis=0), _TILE, axis=1)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"preset": _NOISE_PRESET, "crf": _NOISE_CRF}
        audio = container.add_stream("aac", rate=_AUDIO_RATE, layout="stereo")
        for index in range(seconds * FPS):
            shift = index * _PAN_PX_PER_FRAME
            grain = rng.integers(-_GRAIN, _GRAIN + 1, size=(HEIGHT, WIDTH, 1), dtype=np.int16)
            frame = np.clip(canvas[:HEIGHT, shift : shift + WIDTH] + grain, 0, 255).astype(np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        _tone(container, audio, seconds)
    return path


def _tone(container: Any, stream: Any, seconds: int) -> None:
    samples = seconds * _AUDIO_RATE
    t = np.arange(samples) / _AUDIO_RATE
    pcm = np.repeat((0.2 * np.sin(2 * np.pi * _TONE_HZ * t)).astype(np.float32)[None], 2, axis=0)
    for start in range(0, samples, _AUDIO_CHUNK):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm[:, start : start + _AUDIO_CHUNK]),
            format="fltp",
            layout="stereo",
        )
        frame.sample_rate, frame.pts = _AUDIO_RATE, start
        frame.time_base = Fraction(1, _AUDIO_RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


CLIPS: dict[str, Callable[[Path, int], Path]] = {
    "procedural": procedural_clip,
    "detailed": detailed_clip,
}


PROMPT = "a red fox runs through fresh snow at dusk"


def clip_weights() -> Path | None:
    """The real CLIP weights when they are already cached (never fetched here), else None."""
    try:
        return clip_model.prepare(fetch=False)
    except (LabError, ImportError):
        return None


def measure_clip(path: Path, seconds: int, runs: int, weights: Path | None) -> dict[str, Any]:
    """Median CPU seconds per video second for every step, and their sum."""
    request = VideoRequest(PROMPT)
    profile(path, request, clip=weights)  # warm: imports, model load; not counted
    spent = [profile(path, request, clip=weights)[1] for _ in range(runs)]
    stages = {
        stage: round(statistics.median(run.get(stage, 0.0) for run in spent) / seconds, 5)
        for stage in spent[0]
    }
    total = round(statistics.median(sum(run.values()) for run in spent) / seconds, 4)
    return {
        "cpu_s_per_video_s": stages,
        "total_cpu_s_per_video_s": total,
        "verdict": "PASS" if total <= GOAL_CPU_S_PER_VIDEO_S else "MISS",
        "bytes": path.stat().st_size,
    }


def _table(results: dict[str, dict[str, Any]]) -> list[str]:
    names = list(results)
    stages = list(results[names[0]]["cpu_s_per_video_s"])
    lines = [
        "| step | metrics | " + " | ".join(f"{n} CPU s / video s" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for stage in stages:
        shown = ", ".join(m.name for m in METRICS.values() if m.stage == stage)
        shown = shown or "shared by every video metric"
        figures = " | ".join(f"{results[n]['cpu_s_per_video_s'][stage]:.5f}" for n in names)
        lines.append(f"| {stage} | {shown} | {figures} |")
    totals = " | ".join(
        f"{results[n]['total_cpu_s_per_video_s']:.3f} {results[n]['verdict']}" for n in names
    )
    lines.append(f"| total (goal ≤ {GOAL_CPU_S_PER_VIDEO_S}) | all | {totals} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Make the clips, profile them, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each clip")
    parser.add_argument("--runs", type=int, default=5, help="profiled runs per clip (median)")
    parser.add_argument("--quick", action="store_true", help="2 s clips, one run: a smoke test")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="JSON folder")
    args = parser.parse_args(argv)
    seconds, runs = (2, 1) if args.quick else (args.seconds, args.runs)
    weights = clip_weights()
    with tempfile.TemporaryDirectory() as folder:
        results = {
            name: measure_clip(make(Path(folder) / f"{name}.mp4", seconds), seconds, runs, weights)
            for name, make in CLIPS.items()
        }
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "config": {"seconds": seconds, "runs": runs, "width": WIDTH, "height": HEIGHT, "fps": FPS},
        "goal_cpu_s_per_video_s": GOAL_CPU_S_PER_VIDEO_S,
        "machine": report.machine(),
        "versions": {"av": av.__version__, "numpy": np.__version__},
        "clip_weights": str(weights) if weights else None,
        "results": results,
    }
    print("\n".join(_table(results)))
    if weights is None:
        print(f"clip: not timed, no CLIP weights in {clip_model.models_dir()} (never fetched here)")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "metrics-latest-quick.json" if args.quick else "metrics-latest.json"
    (args.out / name).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
