"""`run_sync`: call the async API from a plain script, or from a notebook cell without ``await``.

The API is async-first (notebooks can ``await``; the CLI uses `asyncio.run`). A script with no
event loop gets `asyncio.run`. Inside a running loop (a Jupyter kernel) `asyncio.run` would
fail, so the coroutine runs to completion on its own loop in a worker thread while the caller
waits; the kernel's loop is blocked meanwhile, as any synchronous call blocks it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion and return its result, with or without a running loop.

    ``run_sync(compare(["a red kite"], ["local:procedural"]))`` works in a script and in a
    notebook cell alike. Ctrl-C (or the kernel's stop button) cancels the coroutine.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="abebeats-sync") as pool:
        return pool.submit(asyncio.run, coroutine).result()
