"""What each automatic metric is: its definition, reference, direction, unit and CPU cost.

`METRICS` is the registry every view lists metrics from, in order; a figure's ``version``
changes when its definition does, so `scores` measures stored clips again. The costs are
``benchmarks/metrics.py``'s measurements per step of `measure.profile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["METRICS", "STAGE_CPU_S_PER_VIDEO_S", "Direction", "Metric", "Value"]

Value = float | bool | None
Direction = Literal["higher", "lower", "neither"]


@dataclass(frozen=True, slots=True)
class Metric:
    """What one figure means: its definition and reference, which way is better, its cost."""

    name: str
    version: int
    definition: str
    reference: str
    direction: Direction
    unit: str
    stage: str
    """The step of `measure` that computes it (metrics of one step share its cost)."""

    @property
    def cpu_s_per_video_s(self) -> float:
        """Measured CPU seconds on one core per second of 720p 24 fps video for this metric's
        step, not counting the shared ``decode`` step (see `STAGE_CPU_S_PER_VIDEO_S`)."""
        return STAGE_CPU_S_PER_VIDEO_S[self.stage]


STAGE_CPU_S_PER_VIDEO_S: dict[str, float] = {
    "decode": 0.25979,
    "flicker": 0.00359,
    "motion": 0.04043,
    "frozen": 0.00255,
    "black": 0.00209,
    "sharpness": 0.00699,
    "exposure": 0.00386,
    "loudness": 0.01202,
    "conformance": 2e-05,
    "clip": 0.2,
}
"""CPU seconds per second of video, per step of `measure`, as ``benchmarks/metrics.py``
measured them on its harder clip (720p 24 fps at 17 Mbit/s, x264 preset fast, AAC stereo;
median of 5 runs on a shared 2-core x86-64): 0.3309 s in all, against
0.0934 s for the ``local`` route's 0.8 Mbit/s render. ``decode`` (demux, decode every frame,
scale the sampled ones) is shared by all video metrics and grows with the bitrate; the rest
hardly moves. ``has_audio`` is listed with the audio step that reads the stream.

``clip`` is an estimate, not a measurement: the real ViT-B/32 weights were not on the machine
the benchmark ran on (no network), so it only timed the pipeline with a tiny stand-in model.
The image tower costs about 4.4 GFLOPs per frame (Radford et al. 2021), and a clip scores
`quality.clip.CLIP_FRAMES` frames whatever its length: at some 30 GFLOP/s on one core, about
1 s per clip, 0.2 s per second of a 5 s clip (less for longer ones)."""


def _metric(*args: Any) -> tuple[str, Metric]:
    record = Metric(*args)
    return record.name, record


METRICS: dict[str, Metric] = dict(
    [
        _metric(
            "flicker",
            1,
            "mean absolute luma difference between consecutive frames, 0–255 levels",
            "VBench temporal_flickering (Huang et al., CVPR 2024), which reports "
            "(255 − this) / 255 and applies it to static scenes only",
            "lower",
            "levels",
            "flicker",
        ),
        _metric(
            "motion",
            1,
            "mean over frame pairs of the largest 5 % block-matching displacements, in "
            "short sides of the frame per second",
            "VBench dynamic_degree's top-5 % flow magnitude, with block matching (Jain & "
            "Jain 1981) in place of RAFT optical flow",
            "neither",
            "short sides/s",
            "motion",
        ),
        _metric(
            "dynamic_degree",
            1,
            "fraction of frame pairs whose top-5 % motion exceeds 0.1875 short sides/s",
            "VBench dynamic_degree threshold (6 px at 256 px, 8 fps); VBench calls a video "
            "dynamic when this is at least 0.25",
            "neither",
            "fraction",
            "motion",
        ),
        _metric(
            "frozen_fraction",
            1,
            "fraction of consecutive frame pairs in which no 16×16 block changed by more "
            "than one luma level",
            "after FFmpeg freezedetect, per frame pair instead of per 2 s span",
            "lower",
            "fraction",
            "frozen",
        ),
        _metric(
            "black_fraction",
            1,
            "fraction of sampled frames with 98 % of pixels at most 10 % luma",
            "FFmpeg blackdetect defaults (pix_th 0.10, picture_black_ratio_th 0.98)",
            "lower",
            "fraction",
            "black",
        ),
        _metric(
            "sharpness",
            1,
            "median over sampled frames of the variance of the 4-neighbour Laplacian of "
            "luma at a 360 px short side",
            "variance of Laplacian (Pech-Pacheco et al., ICPR 2000)",
            "higher",
            "levels²",
            "sharpness",
        ),
        _metric(
            "mean_luma",
            1,
            "mean luma of sampled frames, 0 (black) to 1 (white)",
            "full-range luma as swscale converts it",
            "neither",
            "fraction",
            "exposure",
        ),
        _metric(
            "rms_contrast",
            1,
            "mean over sampled frames of the standard deviation of luma, 0–1",
            "RMS contrast (Peli, JOSA A 1990)",
            "neither",
            "fraction",
            "exposure",
        ),
        _metric(
            "clipped_fraction",
            1,
            "fraction of sampled pixels at luma ≤ 2 or ≥ 253 of 255 (crushed or blown)",
            "highlight/shadow clipping as in a waveform monitor",
            "lower",
            "fraction",
            "exposure",
        ),
        _metric(
            "has_audio",
            1,
            "the file has an audio stream",
            "container streams as PyAV reads them",
            "neither",
            "bool",
            "loudness",
        ),
        _metric(
            "loudness_lufs",
            1,
            "integrated loudness of the whole audio track (gated; −70 for silence); None "
            "without audio",
            "EBU R128 / ITU-R BS.1770-4, metered by FFmpeg's ebur128 filter",
            "neither",
            "LUFS",
            "loudness",
        ),
        _metric(
            "clip_score",
            1,
            "mean over 8 uniformly sampled frames of 100 × max(cos(image, prompt), 0), CLIP "
            "ViT-B/32 embeddings through ONNX Runtime; None without weights or a prompt",
            "CLIPScore (Hessel et al., EMNLP 2021) at torchmetrics' ×100 scale (w = 2.5 in the "
            "paper), averaged over frames as CLIPSIM (Wu et al., 2021)",
            "higher",
            "score 0–100",
            "clip",
        ),
        _metric(
            "conforms",
            1,
            "duration, aspect ratio and resolution all match the request; None without one",
            "the run's own check (media.conformance), the same every run row gets",
            "higher",
            "bool",
            "conformance",
        ),
    ]
)
