"""What each Runway model accepts, as the emulated API checks a create body.

`MODELS` maps ``(endpoint, model)`` to a `ModelSpec` (ratios, durations, credits, required
and optional fields, as runwayml 5.24.0's create params declare them); `validated` checks a
body against it or raises `BadInput` (the 400's message); `RATIO_SHAPES` says what a pixel
ratio is rendered at. Adding a model touches only this table; the task protocol is `runway.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_SHAPE", "MODELS", "RATIO_SHAPES", "BadInput", "ModelSpec", "validated"]

_SEED_MAX = 4_294_967_295
_T2V, _I2V = "text_to_video", "image_to_video"
_WIDE = ("1280:720", "720:1280", "1104:832", "960:960", "832:1104", "1584:672")
_VEO = ("1280:720", "720:1280", "1080:1920", "1920:1080")
_RANGE_2_10 = tuple(range(2, 11))
DEFAULT_SHAPE = ("16:9", "720p")
"""What a create without a ``ratio`` renders (an image-to-video ratio follows the image)."""

# Runway's pixel ratio -> (aspect ratio, resolution) the rendered output is given.
RATIO_SHAPES = {
    "1280:720": ("16:9", "720p"),
    "720:1280": ("9:16", "720p"),
    "1920:1080": ("16:9", "1080p"),
    "1080:1920": ("9:16", "1080p"),
    "960:960": ("1:1", "720p"),
    "1440:1440": ("1:1", "1080p"),
    "1104:832": ("4:3", "720p"),
    "832:1104": ("3:4", "720p"),
    "1584:672": ("21:9", "720p"),
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What one model accepts on one endpoint (runwayml 5.24.0 create params)."""

    ratios: tuple[str, ...]
    durations: tuple[int, ...]
    credits_per_s: int
    required: frozenset[str]
    optional: frozenset[str]
    default_duration: int | None = None
    audio_credits_per_s: int | None = None
    prompt_max: int = 1000


def _spec(
    ratios: tuple[str, ...],
    durations: tuple[int, ...],
    credits: int,
    required: str,
    optional: str,
    **more: Any,
) -> ModelSpec:
    return ModelSpec(
        ratios, durations, credits, frozenset(required.split()), frozenset(optional.split()), **more
    )


_GEN_OPT = "seed contentModeration outputFormat proresProfile"
_VEO_OPT = "duration seed audio negativePrompt"
_KLING_1080 = ("1920:1080", "1080:1920", "1440:1440")
_KLING_720 = ("1280:720", "720:1280", "960:960")
_SEEDANCE_720 = ("1280:720", "720:1280", "960:960", "1112:834", "834:1112")
_SEEDANCE_1080 = (*_SEEDANCE_720, "1920:1080", "1080:1920", "1440:1440")
_WAN = ("1280:720", "720:1280", "960:960", "1104:832", "832:1104", "1920:1080", "1080:1920")
_RANGE_3_15 = tuple(range(3, 16))
_RANGE_4_15 = tuple(range(4, 16))
_RANGE_3_10 = tuple(range(3, 11))
_STAND_IN_CREDITS = 10
"""Credits per second this emulator bills for resold models whose real rate is in no stored
Runway source (Kling, Seedance, Wan, Omni): a stand-in, never a price."""
_KLING_OPT = "audio cfgScale duration promptText providerSettings"
_KLING_O3_OPT = "audio duration promptText providerSettings"
_SEEDANCE_OPT = "audio duration ratio seed referenceAudio"
_WAN_OPT = "audio duration ratio referenceAudio referenceVideos"


def _resold(
    ratios: tuple[str, ...], durations: tuple[int, ...], t2v: tuple[str, str], i2v: tuple[str, str]
) -> dict[str, ModelSpec]:
    """A resold model's two specs (runwayml 5.24.0 unions): ``(required, optional)`` per
    endpoint, billed at the stand-in rate."""
    return {
        _T2V: _spec(ratios, durations, _STAND_IN_CREDITS, *t2v, prompt_max=_RESOLD_PROMPT_MAX),
        _I2V: _spec(ratios, durations, _STAND_IN_CREDITS, *i2v, prompt_max=_RESOLD_PROMPT_MAX),
    }


_RESOLD_PROMPT_MAX = 3500
"""Seedance's documented promptText limit; the SDK states none for Kling and Wan."""
_RESOLD: dict[str, dict[str, ModelSpec]] = {
    "kling3.0_pro": _resold(
        _KLING_1080, _RANGE_3_15, ("ratio", _KLING_OPT), ("promptImage", _KLING_OPT + " ratio")
    ),
    "kling3.0_standard": _resold(
        _KLING_720, _RANGE_3_15, ("ratio", _KLING_OPT), ("promptImage", _KLING_OPT + " ratio")
    ),
    "klingO3_pro": _resold(
        _KLING_1080,
        _RANGE_3_15,
        ("ratio", _KLING_O3_OPT),
        ("promptImage", _KLING_O3_OPT + " ratio references"),
    ),
    "klingO3_standard": _resold(
        _KLING_720,
        _RANGE_3_15,
        ("ratio", _KLING_O3_OPT),
        ("promptImage", _KLING_O3_OPT + " ratio references"),
    ),
    "seedance2": _resold(
        _SEEDANCE_1080,
        _RANGE_4_15,
        ("promptText", _SEEDANCE_OPT + " references referenceVideos"),
        ("promptImage", _SEEDANCE_OPT + " promptText"),
    ),
    "seedance2_fast": _resold(
        _SEEDANCE_720,
        _RANGE_4_15,
        ("promptText", _SEEDANCE_OPT + " references referenceVideos"),
        ("promptImage", _SEEDANCE_OPT + " promptText"),
    ),
    "seedance2_mini": _resold(
        _SEEDANCE_720,
        _RANGE_4_15,
        ("promptText", _SEEDANCE_OPT + " references referenceVideos"),
        ("promptImage", _SEEDANCE_OPT + " promptText"),
    ),
    "wan3": _resold(
        _WAN,
        (5, 10, 15),
        ("promptText", _WAN_OPT + " references"),
        ("promptImage promptText", _WAN_OPT),
    ),
    "gemini_omni_flash": _resold(
        _VEO[:2],
        _RANGE_3_10,
        ("promptText", "duration ratio"),
        ("promptImage", "duration promptText ratio"),
    ),
}
MODELS: dict[tuple[str, str], ModelSpec] = {
    (_T2V, "gen4.5"): _spec(_VEO[:2], _RANGE_2_10, 12, "promptText ratio duration", _GEN_OPT),
    (_I2V, "gen4.5"): _spec(
        _WIDE, _RANGE_2_10, 12, "promptImage promptText ratio duration", "seed contentModeration"
    ),
    (_I2V, "gen4_turbo"): _spec(
        _WIDE,
        _RANGE_2_10,
        5,
        "promptImage ratio",
        "promptText duration seed contentModeration",
        default_duration=5,
    ),
    (_T2V, "veo3.1"): _spec(
        _VEO,
        (4, 6, 8),
        20,
        "promptText ratio",
        _VEO_OPT,
        default_duration=8,
        audio_credits_per_s=40,
    ),
    (_I2V, "veo3.1"): _spec(
        _VEO,
        (4, 6, 8),
        20,
        "promptImage ratio",
        "promptText " + _VEO_OPT,
        default_duration=8,
        audio_credits_per_s=40,
    ),
    (_T2V, "veo3.1_fast"): _spec(
        _VEO,
        (4, 6, 8),
        10,
        "promptText ratio",
        _VEO_OPT,
        default_duration=8,
        audio_credits_per_s=15,
    ),
    (_I2V, "veo3.1_fast"): _spec(
        _VEO,
        (4, 6, 8),
        10,
        "promptImage ratio",
        "promptText " + _VEO_OPT,
        default_duration=8,
        audio_credits_per_s=15,
    ),
    **{
        (endpoint, model): spec
        for model, specs in _RESOLD.items()
        for endpoint, spec in specs.items()
    },
}


class BadInput(Exception):
    """A create body the real API would answer with 400; the message names the field."""


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _check_fields(body: dict[str, Any], spec: ModelSpec, model: str) -> None:
    allowed = spec.required | spec.optional | {"model"}
    for name in body:
        if name not in allowed:
            raise BadInput(f"{name}: not accepted by model {model}")
    for name in sorted(spec.required):
        if name not in body:
            raise BadInput(f"{name}: required for model {model}")


def _check_values(body: dict[str, Any], spec: ModelSpec) -> int:
    prompt = body.get("promptText")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise BadInput("promptText: must be a non-empty string")
    if isinstance(prompt, str) and _utf16_len(prompt) > spec.prompt_max:
        raise BadInput(f"promptText: must be at most {spec.prompt_max} UTF-16 code units")
    if "ratio" in body and body["ratio"] not in spec.ratios:
        raise BadInput(f"ratio: must be one of {', '.join(spec.ratios)}")
    duration = body.get("duration", spec.default_duration)
    if type(duration) is not int or duration not in spec.durations:
        raise BadInput(f"duration: must be one of {', '.join(map(str, spec.durations))}")
    seed = body.get("seed", 0)
    if type(seed) is not int or not 0 <= seed <= _SEED_MAX:
        raise BadInput(f"seed: must be an integer in 0..{_SEED_MAX}")
    if "audio" in body and not isinstance(body["audio"], bool):
        raise BadInput("audio: must be a boolean")
    image = body.get("promptImage")
    if image is not None and not (isinstance(image, str | list) and image):
        raise BadInput("promptImage: must be a URL, a data URI or a list of {uri, position}")
    return duration


def validated(endpoint: str, body: Any) -> tuple[ModelSpec, int]:
    """The model's spec and the clip duration asked for, or `BadInput`."""
    if not isinstance(body, dict):
        raise BadInput("body: expected a JSON object")
    model = body.get("model")
    spec = MODELS.get((endpoint, model)) if isinstance(model, str) else None
    if spec is None:
        known = sorted(m for e, m in MODELS if e == endpoint)
        raise BadInput(f"model: {model!r} is not available on /v1/{endpoint}; use one of {known}")
    _check_fields(body, spec, str(model))
    return spec, _check_values(body, spec)
