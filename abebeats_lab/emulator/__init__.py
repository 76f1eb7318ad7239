"""Loopback emulators of every provider API, so everything runs offline with no keys.

Each provider module exposes ``create_app(state) -> Starlette``; `Emulators` serves the
ones asked for on 127.0.0.1 (port 0) and tells clients where to find them. Every answer
carries the ``x-abebeats-emulator`` header, so a client pointed here by hand (``abebeats-lab
emulate`` and its exports) still records its rows as emulated and free. This package never
imports ``abebeats_lab.providers``: it checks the clients, it does not copy them.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from abebeats_lab._types import EMULATOR_HEADER
from abebeats_lab.emulator.control import control_routes
from abebeats_lab.emulator.core import EmulatorState
from abebeats_lab.emulator.scenario import Dist, Scenario
from abebeats_lab.emulator.server import RunningServer, serve

__all__ = [
    "EMULATED_PROVIDERS",
    "Dist",
    "EmulatorState",
    "Emulators",
    "Scenario",
    "can_emulate",
    "create_app",
]

_APPS = {
    "fal": "abebeats_lab.emulator.fal:create_app",
    "gemini": "abebeats_lab.emulator.gemini:create_app",
    "pika": "abebeats_lab.emulator.fal:create_app",
    "replicate": "abebeats_lab.emulator.replicate:create_app",
    "runway": "abebeats_lab.emulator.runway:create_app",
    "veo": "abebeats_lab.emulator.veo:create_app",
}
_SAME_AS = {"fal": "pika"}
"""Providers served by another's emulator app: `Emulators()` serves those once, under the
other name (its ``FAL_*`` exports point a `fal` client there too)."""
EMULATED_PROVIDERS = tuple(sorted(set(_APPS) - set(_SAME_AS)))


def can_emulate(provider: str) -> bool:
    """True when an emulator here speaks ``provider``'s API (every remote provider does)."""
    return provider in _APPS


# Fake credentials the emulators accept. Recognisably fake, so a leak scan can find them.
EMULATOR_KEYS = {
    "fal": "emulated-fal-key",
    "runway": "key_" + "e" * 128,
    "replicate": "r8_emulated_token",
    "veo": "emulated-oauth-token",
    "pika": "emulated-fal-key",
    "gemini": "emulated-gemini-api-key",
}
EMULATOR_PROJECT = "emulated-project"
EMULATOR_LOCATION = "us-central1"


def create_app(provider: str, state: EmulatorState | None = None) -> Any:
    """The ASGI app emulating ``provider``, plus the ``/_emulator/*`` control routes."""
    module_name, _, attr = _APPS[provider].partition(":")
    state = state or EmulatorState(provider)
    api = getattr(importlib.import_module(module_name), attr)(state)
    return _Identified(Starlette(routes=[*control_routes(state), Mount("/", app=api)]))


class _Identified:
    """ASGI middleware: every HTTP answer says it comes from an emulator (`EMULATOR_HEADER`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def identified(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (EMULATOR_HEADER.encode(), b"1")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, identified)


class Emulators:
    """A set of emulators served on loopback; use as a context manager or call `stop`."""

    def __init__(
        self,
        providers: Iterable[str] = EMULATED_PROVIDERS,
        scenario: Scenario | None = None,
        *,
        base_port: int = 0,
    ) -> None:
        """Serve each provider on its own loopback port: ``base_port + i``, or OS-chosen (0)."""
        self.states: dict[str, EmulatorState] = {}
        self.servers: dict[str, RunningServer] = {}
        for index, name in enumerate(providers):
            state = EmulatorState(name, scenario)
            server = serve(create_app(name, state), port=base_port + index if base_port else 0)
            state.base_url = server.url
            self.states[name], self.servers[name] = state, server

    def url(self, provider: str) -> str:
        """Base URL of one emulator."""
        return self.servers[provider].url

    def client_options(self, provider: str) -> dict[str, Any]:
        """Constructor options that point a provider client at its emulator."""
        options: dict[str, Any] = {
            "api_key": EMULATOR_KEYS[provider],
            "base_url": self.url(provider),
            "emulated": True,
        }
        if provider == "veo":
            options.update(project=EMULATOR_PROJECT, location=EMULATOR_LOCATION)
        return options

    def env(self) -> dict[str, str]:
        """Environment variables that point the clients (and official SDKs) here."""
        names = {
            "runway": ("RUNWAYML_BASE_URL", "RUNWAYML_API_SECRET"),
            "replicate": ("REPLICATE_BASE_URL", "REPLICATE_API_TOKEN"),
            "veo": ("GOOGLE_VERTEX_BASE_URL", "GOOGLE_OAUTH_ACCESS_TOKEN"),
            "pika": ("FAL_QUEUE_BASE_URL", "FAL_KEY"),
            # `fal` and `pika` read the same variables: either emulator serves every app.
            "fal": ("FAL_QUEUE_BASE_URL", "FAL_KEY"),
            "gemini": ("GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY"),
        }
        env: dict[str, str] = {}
        for provider in self.servers:
            url_var, key_var = names[provider]
            env[url_var], env[key_var] = self.url(provider), EMULATOR_KEYS[provider]
        if "veo" in self.servers:
            env["GOOGLE_CLOUD_PROJECT"] = EMULATOR_PROJECT
            env["GOOGLE_CLOUD_LOCATION"] = EMULATOR_LOCATION
        return env

    def set_scenario(self, scenario: Scenario, *providers: str) -> None:
        """Switch the scenario of some (default: all) emulators."""
        for name in providers or tuple(self.states):
            self.states[name].set_scenario(scenario)

    def stop(self) -> None:
        """Stop every server."""
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> Emulators:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
