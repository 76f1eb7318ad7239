"""Prompt alignment: the CLIP score of a video against its prompt, through ONNX Runtime.

The model is CLIP ViT-B/32 (Radford et al., ICML 2021) as two ONNX graphs, an image tower
and a text tower, with CLIP's byte-level BPE tokenizer (``tokenizer.json``, read by the
``tokenizers`` library) and its image preprocessing (``preprocessor_config.json``): the
exports fastembed uses, from Hugging Face ``Qdrant/clip-ViT-B-32-vision`` and
``Qdrant/clip-ViT-B-32-text``. No PyTorch: ``pip install 'abebeats-lab[metrics]'`` adds
``onnxruntime`` and ``tokenizers`` only.

Weights are fetched at first use (`prepare`), with a progress bar, from
``$ABEBEATS_LAB_WEIGHTS_URL`` (default ``https://huggingface.co``, in Hugging Face's
``REPO/resolve/REVISION/FILE`` layout, so a mirror or a local server works) into
``models/clip-ViT-B-32/`` under the per-user cache folder (``$ABEBEATS_LAB_CACHE_DIR``
moves it), and kept there. Where they are absent and cannot be fetched, `prepare` raises
`WeightsUnavailable` with one line saying so; `metrics.score` reports that line and measures
everything else.

The score follows CLIPScore (Hessel et al., EMNLP 2021) on the scale torchmetrics'
``CLIPScore`` uses: per frame ``100 × max(cos(image, text), 0)``, averaged over `CLIP_FRAMES`
frames sampled uniformly through the clip (as CLIPSIM, Wu et al. 2021, averages over frames).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abebeats_lab import config
from abebeats_lab.errors import LabError, MissingExtraError

__all__ = [
    "CLIP_FRAMES",
    "DEFAULT_WEIGHTS_URL",
    "MODEL_FILES",
    "WEIGHTS_URL_ENV",
    "ClipModel",
    "FrameSampler",
    "WeightsUnavailable",
    "load",
    "models_dir",
    "prepare",
    "require_extra",
]

WEIGHTS_URL_ENV = "ABEBEATS_LAB_WEIGHTS_URL"
"""Base URL the CLIP files are fetched from (a mirror, or a loopback server in tests)."""
DEFAULT_WEIGHTS_URL = "https://huggingface.co"
REVISION = "main"
"""Not pinned to a commit: the Qdrant repositories' commit hashes could not be checked here."""
MODEL_NAME = "clip-ViT-B-32"
CLIP_FRAMES = 8
"""Frames scored per clip, one at the middle of each of 8 equal spans of the clip."""
CONTEXT_LENGTH = 77
"""CLIP's text tower has 77 positions: longer prompts are cut (end token kept)."""
SCORE_SCALE = 100.0
"""torchmetrics' CLIPScore weight (Hessel et al. use 2.5: multiply by 0.025 to compare)."""
EXTRA = "metrics"


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of the model: its place in the cache folder and where it is published."""

    tower: str
    """Subfolder in the cache: ``vision`` or ``text``."""
    repo: str
    name: str
    size: int | None = None
    sha256: str | None = None
    """Known size and digest of the published file; None where it could not be confirmed."""

    @property
    def path(self) -> str:
        return f"{self.tower}/{self.name}"


VISION_REPO = "Qdrant/clip-ViT-B-32-vision"
TEXT_REPO = "Qdrant/clip-ViT-B-32-text"
MODEL_FILES = (
    ModelFile("vision", VISION_REPO, "model.onnx"),
    ModelFile("vision", VISION_REPO, "preprocessor_config.json"),
    ModelFile("text", TEXT_REPO, "model.onnx"),
    ModelFile("text", TEXT_REPO, "tokenizer.json"),
)
"""What the score reads. fastembed names ``model.onnx`` in both repositories and reads the
JSON files from them (about 0.34 GB and 0.25 GB of weights by its model list); their sizes
and digests are not recorded because they could not be checked from here."""

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_CLIP_SIDE = 224
_LEVELS = 255.0


class WeightsUnavailable(LabError):
    """The CLIP files are not in the cache and could not be fetched (one line says why)."""


def models_dir() -> Path:
    """Where the CLIP files live: ``models/clip-ViT-B-32`` in the per-user cache folder."""
    return config.cache_dir() / "models" / MODEL_NAME


def weights_url() -> str:
    """The base URL files are fetched from: ``$ABEBEATS_LAB_WEIGHTS_URL`` or Hugging Face."""
    return (os.environ.get(WEIGHTS_URL_ENV, "").strip() or DEFAULT_WEIGHTS_URL).rstrip("/")


def require_extra() -> None:
    """Raise `MissingExtraError` (one line: what to install) without the ``[metrics]`` extra."""
    for module in ("onnxruntime", "tokenizers"):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtraError("the CLIP score", EXTRA, module) from None


def prepare(*, fetch: bool = True, progress: bool = True) -> Path:
    """The folder holding every CLIP file, fetching what is missing (``fetch=False``: none).

    Raises `MissingExtraError` without the ``[metrics]`` extra and `WeightsUnavailable`
    when a file is missing and cannot be fetched; both say so in one line.
    """
    require_extra()
    from abebeats_lab.errors import DownloadError
    from abebeats_lab.media.weights import WeightFile
    from abebeats_lab.media.weights import fetch as fetch_file

    folder = models_dir()
    missing = [f for f in MODEL_FILES if not (folder / f.path).is_file()]
    if missing and not fetch:
        raise WeightsUnavailable(_absent(folder, missing, "fetching is off"))
    base = weights_url()
    for item in missing:
        url = f"{base}/{item.repo}/resolve/{REVISION}/{item.name}"
        try:
            fetch_file(
                WeightFile(item.path, url, item.size, item.sha256), folder, progress=progress
            )
        except (DownloadError, OSError) as exc:
            raise WeightsUnavailable(_absent(folder, missing, f"fetching failed: {exc}")) from None
    return folder


def _absent(folder: Path, missing: Sequence[ModelFile], why: str) -> str:
    names = ", ".join(f.path for f in missing)
    return (
        f"clip_score not measured: {names} not in {folder} and {why} "
        f"(set {WEIGHTS_URL_ENV} to a mirror, or copy the files there)"
    )


@dataclass(frozen=True, slots=True)
class Preprocess:
    """CLIP's image preprocessing, as its ``preprocessor_config.json`` states it."""

    short_side: int = _CLIP_SIDE
    crop: tuple[int, int] = (_CLIP_SIDE, _CLIP_SIDE)
    """(height, width) of the centre crop."""
    rescale: float = 1 / _LEVELS
    mean: tuple[float, ...] = _CLIP_MEAN
    std: tuple[float, ...] = _CLIP_STD

    @classmethod
    def read(cls, path: Path) -> Preprocess:
        """From a Hugging Face ``CLIPImageProcessor`` config (CLIP's defaults where silent)."""
        found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        size = found.get("size", _CLIP_SIDE)
        short = int(size.get("shortest_edge", _CLIP_SIDE) if isinstance(size, dict) else size)
        crop = found.get("crop_size", short)
        if isinstance(crop, dict):
            crop_hw = (int(crop.get("height") or short), int(crop.get("width") or short))
        else:
            crop_hw = (int(crop), int(crop))
        return cls(
            short_side=short,
            crop=crop_hw,
            rescale=float(found.get("rescale_factor", 1 / _LEVELS)),
            mean=tuple(found.get("image_mean", _CLIP_MEAN)),
            std=tuple(found.get("image_std", _CLIP_STD)),
        )

    def crop_frame(self, frame: Any) -> np.ndarray:
        """A decoded PyAV frame as RGB, short side scaled (bicubic) then centre-cropped."""
        width, height = int(frame.width), int(frame.height)
        scale = self.short_side / min(width, height)
        size = (max(self.crop[1], round(width * scale)), max(self.crop[0], round(height * scale)))
        rgb = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="BICUBIC")
        image = rgb.to_ndarray()
        top = (image.shape[0] - self.crop[0]) // 2
        left = (image.shape[1] - self.crop[1]) // 2
        cropped: np.ndarray = image[top : top + self.crop[0], left : left + self.crop[1]]
        return cropped

    def tensor(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Crops (H×W×3, uint8) as the image tower's input: N×3×H×W float32, normalised."""
        scaled = np.stack(crops).astype(np.float32) * np.float32(self.rescale)
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return np.ascontiguousarray(((scaled - mean) / std).transpose(0, 3, 1, 2))


class ClipModel:
    """The two towers and the tokenizer, loaded from a folder laid out as `MODEL_FILES`."""

    def __init__(self, folder: Path) -> None:
        require_extra()
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        # One thread: a process pool already spreads clips over the cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        cpu = ["CPUExecutionProvider"]
        self.vision = onnxruntime.InferenceSession(
            str(folder / "vision" / "model.onnx"), options, providers=cpu
        )
        self.text = onnxruntime.InferenceSession(
            str(folder / "text" / "model.onnx"), options, providers=cpu
        )
        self.tokenizer = Tokenizer.from_file(str(folder / "text" / "tokenizer.json"))
        self.tokenizer.no_padding()  # one prompt at a time: nothing to pad to
        self.tokenizer.enable_truncation(CONTEXT_LENGTH)
        self.preprocess = Preprocess.read(folder / "vision" / "preprocessor_config.json")

    def text_embedding(self, prompt: str) -> np.ndarray:
        """The prompt's unit-length embedding."""
        encoded = self.tokenizer.encode(prompt)
        ids = np.asarray([encoded.ids], dtype=np.int64)
        feeds = {"input_ids": ids}
        if "attention_mask" in {i.name for i in self.text.get_inputs()}:
            feeds["attention_mask"] = np.asarray([encoded.attention_mask], dtype=np.int64)
        embedding: np.ndarray = _unit(np.asarray(self.text.run(None, feeds)[0]).reshape(1, -1))[0]
        return embedding

    def image_embeddings(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Unit-length embeddings of preprocessed crops (`Preprocess.crop_frame`), one a row."""
        name = self.vision.get_inputs()[0].name
        output = self.vision.run(None, {name: self.preprocess.tensor(crops)})[0]
        return _unit(np.asarray(output).reshape(len(crops), -1))

    def score(self, crops: Sequence[np.ndarray], prompt: str) -> float | None:
        """Mean over frames of ``100 × max(cos, 0)``; None without frames."""
        if not crops:
            return None
        text = self.text_embedding(prompt)
        images = self.image_embeddings(crops)
        if images.shape[1] != text.shape[0]:
            raise LabError(
                f"CLIP towers disagree: image embeddings of {images.shape[1]} values, "
                f"text of {text.shape[0]}"
            )
        cosines = images @ text
        return float(np.mean(SCORE_SCALE * np.maximum(cosines, 0.0)))


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = rows / np.maximum(norms, np.finfo(np.float32).tiny)
    return unit


@functools.lru_cache(maxsize=2)
def load(folder: str) -> ClipModel:
    """The model of ``folder``, loaded once per process (a worker scores many clips)."""
    return ClipModel(Path(folder))


class FrameSampler:
    """Keeps `CLIP_FRAMES` frames spread uniformly through a clip while it is decoded.

    With the frame count known (``frames``), the frame in the middle of each of the equal
    spans is kept; without it, every offered frame is kept and `crops` thins them evenly.
    """

    def __init__(self, preprocess: Preprocess, frames: int) -> None:
        self._preprocess = preprocess
        self._wanted = (
            {min(frames - 1, int((k + 0.5) * frames / CLIP_FRAMES)) for k in range(CLIP_FRAMES)}
            if frames > 0
            else None
        )
        self._kept: list[np.ndarray] = []

    def offer(self, index: int, frame: Any) -> None:
        """Look at decoded frame number ``index``; keep it when it is one of the samples."""
        if self._wanted is None or index in self._wanted:
            self._kept.append(self._preprocess.crop_frame(frame))

    def crops(self) -> list[np.ndarray]:
        """The kept frames, at most `CLIP_FRAMES`, evenly spread."""
        if len(self._kept) <= CLIP_FRAMES:
            return list(self._kept)
        picks = np.linspace(0, len(self._kept) - 1, CLIP_FRAMES).round().astype(int)
        return [self._kept[i] for i in picks]
