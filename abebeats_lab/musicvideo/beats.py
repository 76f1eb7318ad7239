"""Audio analysis for the music-video pipeline: tempo, beat times and section boundaries.

Audio is decoded with PyAV (wav, mp3, m4a, flac; anything libav reads) to mono float, then
analysed with numpy alone: a spectral-flux onset envelope, an autocorrelation tempo estimate
with a log-normal prior around 120 BPM, dynamic-programming beat tracking (Ellis 2007), and
section boundaries from Foote novelty on a beat-synchronous self-similarity matrix.

Why not a library: librosa (with numba, llvmlite, scipy, scikit-learn) adds well over 100 MB
to the install for what is a few hundred lines of numpy here, and scipy is not installed;
nothing below needs it (FFTs and convolutions come from numpy).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from abebeats_lab.errors import ValidationError

__all__ = [
    "ANALYSIS_RATE",
    "AudioInfo",
    "BeatAnalysis",
    "Section",
    "analyze",
    "analyze_samples",
    "estimate_tempo",
    "load_audio",
    "onset_envelope",
    "probe_audio",
    "track_beats",
]

Floats = npt.NDArray[np.float64]

ANALYSIS_RATE = 22_050
"""Audio is resampled to this rate for analysis: beats live well below 11 kHz."""
N_FFT = 512
"""A 23 ms window: onsets are found at most a quarter window (about 6 ms) early."""
HOP = 128
"""5.8 ms between onset frames: fine enough that beats land within a video frame."""
MIN_BPM, MAX_BPM = 60.0, 200.0
PRIOR_BPM = 120.0
PRIOR_OCTAVES = 1.0
"""Width (in octaves) of the tempo prior; it only breaks ties between tempo octaves."""
TIGHTNESS = 100.0
"""How strongly beat tracking holds the tempo against onsets that pull it off the grid."""
SMOOTH_DIVISOR = 32.0
"""The onset envelope is smoothed with a Gaussian of one beat period / this."""
WEAK_BEAT = 0.5
"""Beats at the very start or end whose onset is below this share of the mean are dropped."""
N_BANDS = 16
SIMILARITY_DB = 6.0
"""Two beats whose band levels differ by this many dB (RMS) are about 1/e similar."""
KERNEL_BEATS = 8
"""Half-width of the novelty kernel, and the shortest section, in beats (two bars of 4/4)."""
NOVELTY_MIN = 0.25
"""A section boundary needs at least this much novelty (0 = homogeneous, 1 = total change)."""
SILENCE_DB = -80.0
_EPS = 1e-10
_SUPPORTED = "a readable audio file: wav, mp3, m4a (AAC), flac"


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What the first audio stream of a file holds."""

    sample_rate: int
    channels: int
    samples: int
    """Samples per channel, encoder priming and padding excluded where the container says so."""
    codec: str

    @property
    def duration_s(self) -> float:
        """Exact duration from the sample count."""
        return self.samples / self.sample_rate


@dataclass(frozen=True, slots=True)
class Section:
    """A stretch of the track that sounds alike (verse, chorus, break...)."""

    start_s: float
    end_s: float
    loudness_db: float
    """Mean RMS level in dBFS."""
    energy: float
    """0 for the quietest section of the track, 1 for the loudest."""


@dataclass(frozen=True, slots=True)
class BeatAnalysis:
    """Tempo, beats and sections of one track."""

    duration_s: float
    tempo_bpm: float
    """0.0 when no beat was found (silence, no rhythm)."""
    beats: tuple[float, ...]
    """Beat times in seconds from the start, ascending."""
    sections: tuple[Section, ...]
    """Cover the whole track, in order; the first starts at 0."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values."""
        return asdict(self)


def _open(path: Path) -> Any:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValidationError("audio", path.name, _SUPPORTED) from exc
    if not container.streams.audio:
        container.close()
        raise ValidationError("audio", path.name, _SUPPORTED + " (this file has no audio stream)")
    return container


def probe_audio(path: Path | str) -> AudioInfo:
    """Rate, channels and exact length of the first audio stream (decodes only if it must)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.channels
        if stream.duration is not None and stream.time_base is not None:
            samples = round(float(stream.duration * stream.time_base) * rate)
        else:
            samples = sum(frame.samples for frame in container.decode(stream))
        return AudioInfo(rate, channels, samples, stream.codec_context.name)


def load_audio(path: Path | str, *, sample_rate: int = ANALYSIS_RATE) -> npt.NDArray[np.float32]:
    """Decode the first audio stream to mono float32 at ``sample_rate``, exact length."""
    import av

    path = Path(path)
    info = probe_audio(path)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[npt.NDArray[np.float32]] = []
    try:
        with _open(path) as container:
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(f.to_ndarray()[0] for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray()[0] for f in resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise ValidationError("audio", path.name, _SUPPORTED) from exc
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    # AAC pads its last frame; the container's duration is the truth.
    wanted = round(info.duration_s * sample_rate)
    return np.pad(samples[:wanted], (0, max(0, wanted - len(samples))))


def _stft_power(samples: npt.NDArray[np.float32]) -> Floats:
    """Power spectrogram with frames centred on ``t * HOP`` (frames x bins)."""
    padded = np.pad(samples.astype(np.float64), (N_FFT // 2, N_FFT // 2))
    count = 1 + max(0, len(padded) - N_FFT) // HOP
    window = np.hanning(N_FFT)
    blocks = []
    # Blocks bound the memory of long tracks.
    for first in range(0, count, 2048):
        index = np.arange(first, min(count, first + 2048))[:, None] * HOP + np.arange(N_FFT)
        blocks.append(np.abs(np.fft.rfft(padded[index] * window, axis=1)) ** 2)
    return np.concatenate(blocks) if blocks else np.zeros((0, N_FFT // 2 + 1))


def onset_envelope(power: Floats) -> Floats:
    """Spectral flux on log power: how much louder each frame got, summed over frequency."""
    log_power = 10 * np.log10(power + _EPS)
    log_power = np.maximum(log_power, log_power.max(initial=SILENCE_DB) + SILENCE_DB)
    flux = np.maximum(0.0, np.diff(log_power, axis=0)).mean(axis=1)
    envelope = np.concatenate([[0.0], flux])
    # Remove the slowly varying part so only onsets remain.
    local = np.convolve(envelope, np.ones(9) / 9, mode="same")
    return np.asarray(np.maximum(0.0, envelope - local), dtype=np.float64)


def _frames_per_s() -> float:
    return ANALYSIS_RATE / HOP


def estimate_tempo(envelope: Floats, fps: float) -> float:
    """Tempo in BPM from the autocorrelation of the onset envelope, weighted by the prior."""
    centred = envelope - envelope.mean()
    size = 1 << int(np.ceil(np.log2(2 * len(centred) + 1)))
    spectrum = np.fft.rfft(centred, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[: len(centred)]
    lags = np.arange(len(acf), dtype=np.float64)
    valid = (lags >= 60 * fps / MAX_BPM) & (lags <= 60 * fps / MIN_BPM)
    if acf[0] <= 0 or not valid.any():
        return 0.0
    bpm = 60 * fps / np.maximum(lags, 1)
    prior = np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    weighted = np.where(valid, np.maximum(acf, 0) * prior, 0.0)
    best = int(np.argmax(weighted))
    if weighted[best] <= 0:
        return 0.0
    return float(60 * fps / (best + _parabola(acf, best)))


def _parabola(values: Floats, index: int) -> float:
    """Sub-sample offset of the peak at ``index`` from a parabola through three points."""
    if index <= 0 or index >= len(values) - 1:
        return 0.0
    left, mid, right = values[index - 1], values[index], values[index + 1]
    curve = left - 2 * mid + right
    return float(0.5 * (left - right) / curve) if curve < 0 else 0.0


def track_beats(envelope: Floats, fps: float, bpm: float) -> Floats:
    """Beat times (s) by dynamic programming: onsets where they are, the tempo in between."""
    if bpm <= 0 or not envelope.any():
        return np.zeros(0)
    period = 60 * fps / bpm
    score = _local_score(envelope, period)
    cumulative, backlink = _accumulate(score, period)
    beats = _backtrack(cumulative, backlink, score, period)
    frames = np.array([b + _parabola(score, b) for b in beats], dtype=np.float64)
    return frames / fps


def _local_score(envelope: Floats, period: float) -> Floats:
    offsets = np.arange(-round(period), round(period) + 1)
    kernel = np.exp(-0.5 * (offsets * SMOOTH_DIVISOR / period) ** 2)
    spread = envelope.std()
    normalised = envelope / spread if spread > 0 else envelope
    return np.convolve(normalised, kernel, mode="same")


def _accumulate(score: Floats, period: float) -> tuple[Floats, npt.NDArray[np.int64]]:
    offsets = np.arange(-round(2 * period), -round(period / 2) + 1)
    penalty = -TIGHTNESS * np.log(-offsets / period) ** 2
    cumulative = score.copy()
    backlink = np.full(len(score), -1, dtype=np.int64)
    for frame in range(len(score)):
        previous = frame + offsets
        # Before the start counts as a beat scoring 0, so the first real beat is not pulled
        # towards the first frames to find a predecessor.
        candidates = np.where(previous >= 0, cumulative[np.maximum(previous, 0)], 0.0) + penalty
        best = int(np.argmax(candidates))
        cumulative[frame] = score[frame] + candidates[best]
        backlink[frame] = max(-1, int(previous[best]))
    return cumulative, backlink


def _backtrack(
    cumulative: Floats, backlink: npt.NDArray[np.int64], score: Floats, period: float
) -> list[int]:
    # The last beat: the best-scoring frame within the final beat period.
    tail = max(0, len(cumulative) - round(period))
    frame = tail + int(np.argmax(cumulative[tail:]))
    beats = []
    while frame >= 0:
        beats.append(frame)
        frame = int(backlink[frame])
    beats.reverse()
    strength = score[beats]
    floor = WEAK_BEAT * strength.mean()
    first = next(i for i, s in enumerate(strength) if s >= floor)
    last = len(beats) - next(i for i, s in enumerate(strength[::-1]) if s >= floor)
    return beats[first:last]


def _refine_tempo(beats: Floats, fallback: float) -> float:
    """The tempo that best fits all beat times (least squares), finer than any lag grid."""
    if len(beats) < 4:
        return fallback
    slope = np.polyfit(np.arange(len(beats), dtype=np.float64), beats, 1)[0]
    return float(60 / slope) if slope > 0 else fallback


def _band_levels(power: Floats, edges_s: Floats, fps: float) -> Floats:
    """Mean level (dB) in log-spaced bands over each stretch between consecutive edges."""
    bins = np.unique(np.geomspace(2, power.shape[1], N_BANDS + 1).astype(int))
    bands = np.stack([power[:, a:b].mean(axis=1) for a, b in itertools.pairwise(bins)], 1)
    frames = np.clip(np.round(edges_s * fps).astype(int), 0, len(power))
    levels = [bands[a : max(b, a + 1)].mean(axis=0) for a, b in itertools.pairwise(frames)]
    decibels = 10 * np.log10(np.array(levels) + _EPS)
    floor = decibels.max(initial=SILENCE_DB) + SILENCE_DB
    return np.asarray(np.maximum(decibels, floor), dtype=np.float64)


def _novelty(levels: Floats) -> Floats:
    """Foote novelty at each edge between stretches: ~0 inside a section, ~1 at a full change."""
    distance = np.sqrt(((levels[:, None, :] - levels[None, :, :]) ** 2).mean(axis=2))
    similar = np.exp(-((distance / SIMILARITY_DB) ** 2))
    novelty = np.zeros(len(levels) + 1)
    half = KERNEL_BEATS // 2
    for edge in range(half, len(levels) - half + 1):
        before = slice(max(0, edge - KERNEL_BEATS), edge)
        after = slice(edge, min(len(levels), edge + KERNEL_BEATS))
        within = 0.5 * (similar[before, before].mean() + similar[after, after].mean())
        novelty[edge] = within - similar[before, after].mean()
    return novelty


def _boundaries(novelty: Floats) -> list[int]:
    """Edges that are the strongest within a kernel either side and novel enough."""
    picked: list[int] = []
    for edge in np.argsort(novelty)[::-1]:
        if novelty[edge] < NOVELTY_MIN:
            break
        if all(abs(int(edge) - other) >= KERNEL_BEATS for other in picked):
            picked.append(int(edge))
    return sorted(picked)


def _sections(
    samples: Floats, power: Floats, beats: Floats, duration_s: float
) -> tuple[Section, ...]:
    edges = np.unique(
        np.concatenate([[0.0], beats[(beats > 0) & (beats < duration_s)], [duration_s]])
    )
    starts = [0.0]
    if len(edges) > 2 * KERNEL_BEATS:
        starts += [
            float(edges[i])
            for i in _boundaries(_novelty(_band_levels(power, edges, _frames_per_s())))
        ]
    ends = [*starts[1:], duration_s]
    loudness = []
    for start, end in zip(starts, ends, strict=True):
        part = samples[round(start * ANALYSIS_RATE) : max(round(end * ANALYSIS_RATE), 1)]
        loudness.append(float(10 * np.log10(np.mean(part**2) + _EPS)) if len(part) else SILENCE_DB)
    low, high = min(loudness), max(loudness)
    return tuple(
        Section(
            round(s, 4),
            round(e, 4),
            round(db, 2),
            round((db - low) / (high - low), 3) if high > low else 0.5,
        )
        for s, e, db in zip(starts, ends, loudness, strict=True)
    )


def analyze_samples(samples: npt.NDArray[np.floating[Any]]) -> BeatAnalysis:
    """Analyse mono samples at `ANALYSIS_RATE`."""
    mono = np.asarray(samples, dtype=np.float64)
    duration = len(mono) / ANALYSIS_RATE
    power = _stft_power(mono.astype(np.float32))
    envelope = onset_envelope(power)
    fps = _frames_per_s()
    coarse = estimate_tempo(envelope, fps)
    beats = track_beats(envelope, fps, coarse)
    beats = beats[(beats >= 0) & (beats <= duration)]
    tempo = _refine_tempo(beats, coarse)
    sections = _sections(mono, power, beats, duration)
    return BeatAnalysis(
        round(duration, 6), round(tempo, 3), tuple(round(float(b), 4) for b in beats), sections
    )


def analyze(path: Path | str) -> BeatAnalysis:
    """Decode ``path`` and find its tempo, beats and sections."""
    return analyze_samples(load_audio(path))
