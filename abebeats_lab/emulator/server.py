"""Serve emulator apps on 127.0.0.1 with uvicorn in a background thread.

Port 0 lets the OS choose; the real port is read back once the socket is bound. Only
loopback is ever bound. Servers stop on `stop()` or at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = ["LOOPBACK", "RunningServer", "serve"]

LOOPBACK = "127.0.0.1"
_START_TIMEOUT_S = 15.0


@dataclass
class RunningServer:
    """A uvicorn server running in its own thread and event loop."""

    url: str
    port: int
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(app: Any, *, port: int = 0, host: str = LOOPBACK) -> RunningServer:
    """Start ``app`` on loopback; returns once it accepts connections."""
    if host not in (LOOPBACK, "localhost", "::1"):
        raise ValueError("emulators bind loopback only")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="critical",  # injected faults are not server errors worth a traceback
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=1,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        server_task = loop.create_task(server.serve(sockets=[sock]))
        loop.call_soon(ready.set)
        loop.run_until_complete(server_task)
        loop.close()

    thread = threading.Thread(target=run, name=f"emulator-{bound}", daemon=True)
    thread.start()
    ready.wait(_START_TIMEOUT_S)
    _wait_listening(host, bound)
    running = RunningServer(f"http://{host}:{bound}", bound, server, thread)
    atexit.register(running.stop)
    return running


def _wait_listening(host: str, port: int) -> None:
    for _ in range(int(_START_TIMEOUT_S / 0.02)):
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        threading.Event().wait(0.02)
    raise RuntimeError(f"emulator on {host}:{port} did not start")


@contextlib.contextmanager
def serving(app: Any) -> Iterator[RunningServer]:
    """Context manager form of `serve`."""
    server = serve(app)
    try:
        yield server
    finally:
        server.stop()
