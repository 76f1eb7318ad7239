"""Open the provider clients a set of routes needs, for real or against in-process emulators.

Real clients come from `providers.get_provider`, which raises `MissingKeyError` before any
paid call, so opening every client first means a missing key stops a comparison before
anything is submitted. With ``emulate=True`` the needed emulators start on 127.0.0.1 and
each client is pointed at its own; a provider with no emulator (the local renderer) runs as
it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from abebeats_lab.providers import Provider, get_provider

if TYPE_CHECKING:
    from abebeats_lab.emulator import Emulators, Scenario

__all__ = ["Clients", "connect"]


class Clients:
    """Provider clients by name; an async context manager that closes them all."""

    def __init__(
        self, providers: Iterable[str], *, emulate: bool = False, scenario: Scenario | None = None
    ) -> None:
        self.names = tuple(sorted(set(providers)))
        self.emulate = emulate
        self.scenario = scenario
        self.emulators: Emulators | None = None
        self._clients: dict[str, Provider] = {}

    async def open(self) -> Clients:
        """Start emulators if asked, then build every client; on any error, undo it all."""
        try:
            if self.emulate:
                await self._start_emulators()
            for name in self.names:
                self._clients[name] = get_provider(name, **self._options(name))
        except BaseException:
            await self.aclose()
            raise
        return self

    async def _start_emulators(self) -> None:
        from abebeats_lab.emulator import Emulators, can_emulate

        # A provider with no emulator (the local renderer) runs as it is.
        remote = [name for name in self.names if can_emulate(name)]
        if not remote:
            return
        starting = asyncio.ensure_future(asyncio.to_thread(Emulators, remote, self.scenario))
        try:
            self.emulators = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The worker thread cannot be stopped midway: keep what it starts, so `aclose`
            # stops it rather than leaving servers running.
            with contextlib.suppress(Exception):
                self.emulators = await starting
            raise

    def _options(self, name: str) -> dict[str, object]:
        if self.emulators is None or name not in self.emulators.servers:
            return {}
        return self.emulators.client_options(name)

    def __getitem__(self, name: str) -> Provider:
        return self._clients[name]

    def emulated(self, name: str) -> bool:
        """True when this provider's figures come from an emulator."""
        return self._clients[name].emulated

    async def aclose(self) -> None:
        """Close every client, then stop the emulators."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._clients.clear()
        if self.emulators is not None:
            emulators, self.emulators = self.emulators, None
            await asyncio.to_thread(emulators.stop)

    async def __aenter__(self) -> Clients:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def connect(
    providers: Iterable[str], *, emulate: bool = False, scenario: Scenario | None = None
) -> Clients:
    """Clients for ``providers``: ``async with connect({"runway", "local"}) as clients: ...``."""
    return Clients(providers, emulate=emulate, scenario=scenario)
