"""What each fal app accepts, as the emulated queue checks it: input schemas and validation.

One `AppSpec` per app id in `MODELS` (its model page's input schema); `validated` fills the
defaults or raises `BadInput`, which answers 422 in fal's ``detail`` shape; `render_shape`
says what the output is rendered at. An app id not in the table is `ANY_APP`: every input
accepted. Adding an app touches only this table; the queue protocol is `fal.py`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["ANY_APP", "MODELS", "AppSpec", "BadInput", "render_shape", "validated"]

_RATIOS = ("16:9", "9:16", "1:1", "4:5", "5:4", "3:2", "2:3")
_SEED_MAX = 4_294_967_295
_RENDER_DEFAULTS = {"duration": 5.0, "aspect_ratio": "16:9", "resolution": "720p"}
"""What an app's output is rendered as where its input does not say."""
_MAX_RENDER_S = 30.0
"""A free-form duration past this is rendered at the default (an unchecked app's input)."""
_ADAPTIVE = frozenset({"auto", "adaptive"})
"""Ratio words meaning "the app chooses": rendered at the default ratio."""


@dataclass(frozen=True, slots=True)
class AppSpec:
    """What one fal app accepts (its model page's input schema), as the queue checks it.

    ``enums`` are typed: an app that takes ``duration`` as ``"5"`` refuses ``5`` with 422,
    as fal does. ``free`` inputs take any value of their type; any other name is refused.
    ``schema=False`` is an app this emulator has no schema for: every input is accepted.
    """

    enums: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    free: frozenset[str] = frozenset({"prompt", "seed", "negative_prompt"})
    required: frozenset[str] = frozenset({"prompt"})
    render: Mapping[str, Any] = field(default_factory=dict)
    """How the output is rendered where no input says (e.g. Kling Pro's fixed 1080p)."""
    schema: bool = True


def _pika(**more: Any) -> AppSpec:
    resolutions = more.pop("resolutions", ("720p", "1080p"))
    negative_default = more.pop("negative_default", "ugly, bad, terrible")
    image = more.pop("image", False)
    return AppSpec(
        enums={"aspect_ratio": _RATIOS, "resolution": resolutions, "duration": (5, 10)},
        defaults={
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
            "negative_prompt": negative_default,
        },
        free=frozenset({"prompt", "seed", "negative_prompt", *(("image_url",) if image else ())}),
        required=frozenset({"prompt", *(("image_url",) if image else ())}),
    )


def _texts(values: range | tuple[int, ...], suffix: str = "") -> tuple[str, ...]:
    return tuple(f"{v}{suffix}" for v in values)


_VEO = AppSpec(
    enums={
        "aspect_ratio": ("16:9", "9:16"),
        "duration": _texts((4, 6, 8), "s"),
        "resolution": ("720p", "1080p"),
    },
    defaults={"aspect_ratio": "16:9", "duration": "8s", "resolution": "720p"},
    free=frozenset({"prompt", "seed", "negative_prompt", "generate_audio", "auto_fix"}),
)


def _kling(resolution: str) -> AppSpec:
    """Kling v3 / O3 on fal: duration as text "3".."15", no seed (provider-apis.md)."""
    return AppSpec(
        enums={"duration": _texts(range(3, 16)), "aspect_ratio": ("16:9", "9:16", "1:1")},
        defaults={"duration": "5", "aspect_ratio": "16:9"},
        free=frozenset(
            {"prompt", "multi_prompt", "negative_prompt", "generate_audio", "cfg_scale"}
        ),
        render={"resolution": resolution},
    )


def _ltx(durations: tuple[int, ...]) -> AppSpec:
    return AppSpec(
        enums={"aspect_ratio": ("16:9", "9:16"), "resolution": ("1080p",), "duration": durations},
        defaults={"aspect_ratio": "16:9", "resolution": "1080p", "duration": durations[0]},
        free=frozenset({"prompt", "seed", "generate_audio"}),
    )


_SEEDANCE = AppSpec(
    enums={
        "duration": _texts(range(4, 16)),
        "aspect_ratio": ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16"),
        "resolution": ("480p", "720p"),
    },
    defaults={"duration": "5", "aspect_ratio": "16:9", "resolution": "720p"},
    free=frozenset({"prompt", "seed", "generate_audio"}),
)
MODELS: dict[str, AppSpec] = {
    "fal-ai/pika/v2.2/text-to-video": _pika(),
    "fal-ai/pika/v2.2/image-to-video": _pika(image=True),
    "fal-ai/pika/v2.1/text-to-video": _pika(),
    "fal-ai/pika/v2/turbo/text-to-video": _pika(negative_default=""),
    "fal-ai/pika/v2.5/text-to-video": _pika(resolutions=("480p", "720p", "1080p")),
    "fal-ai/veo3.1": _VEO,
    "fal-ai/veo3.1/fast": _VEO,
    "fal-ai/kling-video/v3/pro/text-to-video": _kling("1080p"),
    "fal-ai/kling-video/v3/standard/text-to-video": _kling("720p"),
    "fal-ai/kling-video/o3/pro/text-to-video": _kling("1080p"),
    "bytedance/seedance-2.0/text-to-video": _SEEDANCE,
    "bytedance/seedance-2.0/fast/text-to-video": _SEEDANCE,
    "fal-ai/minimax/hailuo-2.3/pro/text-to-video": AppSpec(
        free=frozenset({"prompt", "prompt_optimizer"}),
        render={"duration": 6.0, "resolution": "1080p"},
    ),
    "fal-ai/minimax/hailuo-2.3/standard/text-to-video": AppSpec(
        enums={"duration": ("6", "10")},
        defaults={"duration": "6"},
        free=frozenset({"prompt", "prompt_optimizer"}),
        render={"resolution": "768p"},
    ),
    "alibaba/wan-3.0/text-to-video": AppSpec(
        enums={
            "resolution": ("480p", "720p", "1080p"),
            "aspect_ratio": ("adaptive", "16:9", "4:3", "1:1", "3:4", "9:16"),
            "duration": (5, 10, 15),
        },
        defaults={"resolution": "1080p", "aspect_ratio": "adaptive", "duration": 5},
        free=frozenset({"prompt"}),
    ),
    "lightricks/ltx-2.5/text-to-video/fast": _ltx(tuple(range(6, 21, 2))),
    "lightricks/ltx-2.5/text-to-video/pro": _ltx((6, 8, 10)),
}
"""The apps with a declared schema: Pika's, and the apps capabilities/fal.toml lists (the
emulator keeps its own copy: it checks our client, it does not share its data)."""
ANY_APP = AppSpec(schema=False)
"""Any other app id: served, every input accepted (the caller's extras), prompt required."""


class BadInput(Exception):
    """Input fal would reject with 422; ``loc`` names the field."""

    def __init__(self, loc: str, msg: str, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.loc, self.msg, self.kind = loc, msg, kind

    def response(self) -> JSONResponse:
        detail = [{"loc": ["body", self.loc], "msg": self.msg, "type": self.kind}]
        return JSONResponse({"detail": detail}, status_code=422)


def _enum(body: dict[str, Any], name: str, allowed: tuple[Any, ...], default: Any) -> Any:
    value = body.get(name, default)
    if value not in allowed or type(value) is not type(allowed[0]):
        raise BadInput(name, f"must be one of {', '.join(map(str, allowed))}", "enum")
    return value


def validated(spec: AppSpec, body: Any) -> dict[str, Any]:
    """The full input with defaults filled in, or `BadInput`."""
    if not isinstance(body, dict):
        raise BadInput("body", "expected a JSON object", "type_error")
    allowed = spec.free | set(spec.enums)
    for name in body:
        if spec.schema and name not in allowed:
            raise BadInput(name, "extra inputs are not permitted", "extra_forbidden")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInput("prompt", "field required: a non-empty string", "missing")
    for name in sorted(spec.required - {"prompt"}):
        if not isinstance(body.get(name), str):
            raise BadInput(name, "field required", "missing")
    if "seed" in allowed or "seed" in body:
        seed = body.get("seed", 0)
        if type(seed) is not int or not 0 <= seed <= _SEED_MAX:
            raise BadInput("seed", f"must be an integer in 0..{_SEED_MAX}")
    if "generate_audio" in body and not isinstance(body["generate_audio"], bool):
        raise BadInput("generate_audio", "must be a boolean", "bool_type")
    filled = {**spec.defaults, **body}
    for name, values in spec.enums.items():
        filled[name] = _enum(body, name, values, spec.defaults.get(name))
    return filled


def _seconds(value: Any) -> float | None:
    """An app's duration input (``5``, ``"5"``, ``"8s"``) in seconds, if it reads as one."""
    try:
        seconds = float(str(value).removesuffix("s"))
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 < seconds <= _MAX_RENDER_S else None


def render_shape(spec: AppSpec, payload: Mapping[str, Any]) -> tuple[float, str, str]:
    """Duration, ratio and resolution the output is rendered at, from the app's inputs."""
    shape = {**_RENDER_DEFAULTS, **spec.render}
    duration = _seconds(payload.get("duration"))
    if duration is not None:
        shape["duration"] = duration
    ratio = payload.get("aspect_ratio")
    if isinstance(ratio, str) and ":" in ratio and ratio not in _ADAPTIVE:
        shape["aspect_ratio"] = ratio
    if isinstance(payload.get("resolution"), str):
        shape["resolution"] = payload["resolution"]
    return float(shape["duration"]), str(shape["aspect_ratio"]), str(shape["resolution"])
