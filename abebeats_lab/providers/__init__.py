"""Provider registry: names to classes, imported only when first used.

`import abebeats_lab` must stay light, so every provider module (and the SDK it wraps) is
imported the first time its name is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from abebeats_lab.errors import UnknownRouteError
from abebeats_lab.providers.base import Provider

__all__ = ["Provider", "available_providers", "get_provider", "provider_class", "register"]

_REGISTRY: dict[str, str] = {}


def register(name: str, target: str) -> None:
    """Register ``name`` -> ``"module:Class"``. A name may be registered once."""
    if name in _REGISTRY:
        raise TypeError(f"provider {name!r} is already registered ({_REGISTRY[name]})")
    _REGISTRY[name] = target


for _name, _target in {
    "fal": "abebeats_lab.providers.fal:FalProvider",
    "gemini": "abebeats_lab.providers.gemini:GeminiProvider",
    "local": "abebeats_lab.providers.local:LocalProvider",
    "pika": "abebeats_lab.providers.fal:PikaProvider",
    "replicate": "abebeats_lab.providers.replicate:ReplicateProvider",
    "runway": "abebeats_lab.providers.runway:RunwayProvider",
    "veo": "abebeats_lab.providers.veo:VeoProvider",
}.items():
    register(_name, _target)


def available_providers() -> list[str]:
    """Registered provider names, sorted."""
    return sorted(_REGISTRY)


def provider_class(name: str) -> type[Provider]:
    """The class registered under ``name``, importing its module now."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise UnknownRouteError(name, known=_REGISTRY) from None
    module_name, _, class_name = target.partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


def get_provider(name: str, **options: Any) -> Provider:
    """A new client for ``name``; options go to its constructor (api_key=, base_url=, ...)."""
    return provider_class(name)(**options)
