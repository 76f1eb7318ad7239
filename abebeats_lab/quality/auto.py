"""Scoring while a run goes on: each output measured as soon as its job succeeds, off the loop.

`AutoScorer` is an ``on_update`` handler: when a job reaches ``succeeded`` it hands the clip to
a `concurrent.futures.Executor` (a process pool of one worker per core by default; any
Executor works, e.g. a Dask ``Client().get_executor()``) and returns at once, so the run's
next job is never delayed. The event loop only awaits the futures. `AutoScorer.finish` waits
for the clips still being measured and stores every figure in ``quality.sqlite`` (as
`scores.score` does); `AutoScorer.close` gives up on them (an interrupted run). CLIP weights,
when the ``[metrics]`` extra is installed, are made ready in a thread at the first success.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from abebeats_lab.quality import scores

__all__ = ["AutoScorer", "JobUpdate"]

log = logging.getLogger(__name__)

SUCCEEDED = "succeeded"


class JobUpdate(Protocol):
    """What the scorer reads of a run's job event (``run.job.JobEvent`` has it)."""

    @property
    def run_id(self) -> str: ...
    @property
    def key(self) -> tuple[int, str, int]: ...
    @property
    def state(self) -> Any: ...
    @property
    def output_path(self) -> str | None: ...


class AutoScorer:
    """Measures each succeeded output of a run in ``run_dir`` through ``executor``.

    ``executor=None`` makes a process pool on the first success (spawned workers, one per
    core) and shuts it down in `finish`; an executor you pass is used and left open.
    ``forward`` is the caller's own ``on_update``, called first with every event.
    """

    def __init__(
        self,
        run_dir: Path,
        executor: Executor | None = None,
        *,
        forward: Callable[[Any], None] | None = None,
        clip: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.notes: list[str] = []
        self._executor = executor
        self._own = executor is None
        self._forward = forward
        self._clip = clip
        self._clip_dir: asyncio.Task[str | None] | None = None
        self._tasks: list[asyncio.Task[tuple[Any, dict[str, Any]] | None]] = []
        self._seen: set[tuple[int, str, int]] = set()

    def __call__(self, event: JobUpdate) -> None:
        """The ``on_update`` handler: forwards ``event``, and queues a clip that just succeeded."""
        if self._forward is not None:
            self._forward(event)
        if str(event.state) != SUCCEEDED or not event.output_path or event.key in self._seen:
            return
        self._seen.add(event.key)
        if self._clip_dir is None:
            self._clip_dir = asyncio.ensure_future(self._prepare_clip())
        self._tasks.append(asyncio.ensure_future(self._measure(event.run_id, event.key)))

    async def _prepare_clip(self) -> str | None:
        if not self._clip:
            return None
        return await asyncio.to_thread(scores.prepare_clip, self.notes)

    async def _measure(
        self, run_id: str, key: tuple[int, str, int]
    ) -> tuple[Any, dict[str, Any]] | None:
        row = await asyncio.to_thread(_stored_row, self.run_dir, run_id, key)
        if row is None:
            return None
        assert self._clip_dir is not None
        clip_dir = await self._clip_dir
        path = str(self.run_dir / str(row.output_path))
        future = self._executor_now().submit(scores.measure_job, path, dict(row.settings), clip_dir)
        return row, await asyncio.wrap_future(future)

    def _executor_now(self) -> Executor:
        if self._executor is None:
            # spawn: a fork of a process running an event loop and threads can deadlock.
            self._executor = ProcessPoolExecutor(
                max_workers=os.cpu_count() or 1,
                mp_context=multiprocessing.get_context("spawn"),
            )
        return self._executor

    async def finish(self) -> int:
        """Wait for every clip still being measured, store the figures; returns how many."""
        try:
            finished = await asyncio.gather(*self._tasks, return_exceptions=True)
            done = [r for r in finished if isinstance(r, tuple)]
            failures = [r for r in finished if isinstance(r, BaseException)]
            broken = [f for f in failures if isinstance(f, BrokenExecutor)]
            if broken:  # every clip after it fails alike: say it once
                log.warning(
                    "%d clip(s) could not be scored during the run: the scoring workers exited "
                    "(%s); the videos are saved, and `abebeats-lab score %s` measures them later",
                    len(broken),
                    broken[0],
                    self.run_dir,
                )
            for failure in (f for f in failures if not isinstance(f, BrokenExecutor)):
                # The run's outputs are safe; `score(run_dir)` measures what is missing later.
                log.warning("a clip could not be scored during the run: %r", failure)
            if done:
                await asyncio.to_thread(_store, self.run_dir, done)
            return len(done)
        finally:
            await self._shutdown(wait=True)

    async def close(self) -> None:
        """Give up on the clips still queued (an interrupted run) and stop our own pool."""
        for task in self._tasks:
            task.cancel()
        if self._clip_dir is not None:
            self._clip_dir.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._shutdown(wait=False)

    async def _shutdown(self, *, wait: bool) -> None:
        if self._own and self._executor is not None:
            pool, self._executor = self._executor, None
            await asyncio.to_thread(pool.shutdown, wait=wait, cancel_futures=not wait)


def _stored_row(run_dir: Path, run_id: str, key: tuple[int, str, int]) -> Any:
    """The stored row of one job, as the runner saved it when the job succeeded."""
    from abebeats_lab.store import RunStore

    with RunStore(run_dir) as store:
        return next((r for r in store.rows(run_id) if r.key == key), None)


def _store(run_dir: Path, done: list[tuple[Any, dict[str, Any]]]) -> None:
    by_run: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    for row, result in done:
        by_run.setdefault(row.run_id, []).append((row, result))
    with scores.MetricsStore(run_dir) as store:
        for run_id, results in by_run.items():
            store.write(run_id, results)
