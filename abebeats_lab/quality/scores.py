"""A run's scores: `measure` every succeeded output, kept in the run folder's ``quality.sqlite``.

`score(run_dir)` measures every succeeded row of a run through a
`concurrent.futures.Executor` (a process pool by default) and keeps the figures in
``quality.sqlite`` (not in ``run.sqlite``), keyed by run id and job key, with each metric's
version, so a later pass measures only what is missing or stale. `load_scores` reads them
back without measuring; `quality.auto` stores through the same `MetricsStore`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from abebeats_lab._types import JobState, VideoRequest
from abebeats_lab.quality import clip as _clip
from abebeats_lab.quality.catalogue import METRICS, Value
from abebeats_lab.quality.measure import measure

if TYPE_CHECKING:
    import pandas as pd

    from abebeats_lab.store import JobRow

__all__ = [
    "QUALITY_DB",
    "MetricsStore",
    "load_scores",
    "measure_job",
    "prepare_clip",
    "score",
    "score_async",
]

log = logging.getLogger(__name__)

QUALITY_DB = "quality.sqlite"
"""The run folder's metrics store; ``run.sqlite`` is left to the runner."""

_KEY_COLUMNS = ("run_id", "prompt_index", "route", "repeat")


def score(
    run_dir: Path | str,
    *,
    run_id: str | None = None,
    executor: Executor | None = None,
    refresh: bool = False,
    clip: bool = True,
) -> pd.DataFrame:
    """`measure` every succeeded row of a run (default: the latest), store and return them.

    Clips go through ``executor`` (yours is used and left open; a Dask
    ``Client().get_executor()`` works too). Without one, several clips use a process pool
    of ``os.cpu_count()`` workers and a single clip runs in this process. Figures already
    in ``quality.sqlite`` for the same file (hash) and metric versions are reused unless
    ``refresh``. A clip that cannot be read gets an ``error`` and no figures. Blocks until
    done; on an event loop use `score_async`.

    ``clip_score`` is measured with ``clip=True`` when the ``[metrics]`` extra is installed;
    its weights are fetched here at first use (`quality.clip.prepare`). Where that is not
    possible, one line says why (a warning in the log, and ``frame.attrs["notes"]``) and
    every other metric is measured as usual.
    """
    plan = _Plan(Path(run_dir), run_id, refresh, clip)
    pool, own = _pool(executor, len(plan.jobs))
    try:
        if pool is None:
            results = [measure_job(*job) for job in plan.jobs]
        else:
            results = [f.result() for f in [pool.submit(measure_job, *j) for j in plan.jobs]]
    finally:
        if own and pool is not None:
            pool.shutdown(wait=True)
    return plan.finish(results)


async def score_async(
    run_dir: Path | str,
    *,
    run_id: str | None = None,
    executor: Executor | None = None,
    refresh: bool = False,
    clip: bool = True,
) -> pd.DataFrame:
    """`score` for code on an event loop: clips run in the executor (or a thread), the loop
    only awaits them, so the next job of a run is never delayed."""
    plan = await asyncio.to_thread(_Plan, Path(run_dir), run_id, refresh, clip)
    pool, own = _pool(executor, len(plan.jobs))
    try:
        if pool is None:
            results = [await asyncio.to_thread(measure_job, *job) for job in plan.jobs]
        else:
            futures: list[Future[dict[str, Any]]] = [
                pool.submit(measure_job, *job) for job in plan.jobs
            ]
            results = list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
    finally:
        if own and pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True)
    return plan.finish(results)


class _Plan:
    """Which rows of a run to measure (the rest are stored and current), and their storage.

    A stored clip is current when it has every metric this pass can measure at its version:
    without CLIP weights, ``clip_score`` is not asked for, and a later pass with them
    measures the clips again.
    """

    def __init__(
        self, directory: Path, run_id: str | None, refresh: bool, clip: bool = True
    ) -> None:
        self.directory = directory
        self.notes: list[str] = []
        self.run_id, self.rows = _succeeded_rows(directory, run_id)
        with MetricsStore(directory) as store:
            stored = {} if refresh else store.read(self.run_id)
        wanted = set(METRICS) if clip else set(METRICS) - {_CLIP_METRIC}
        self.todo = [r for r in self.rows if not _current(stored.get(r.key), r.sha256, wanted)]
        self.clip_dir: str | None = None
        if self.todo and clip:
            self.clip_dir = prepare_clip(self.notes)
        if self.clip_dir is None and _CLIP_METRIC in wanted:
            wanted.discard(_CLIP_METRIC)
            self.todo = [r for r in self.rows if not _current(stored.get(r.key), r.sha256, wanted)]
        self.jobs = [
            (str(directory / str(r.output_path)), dict(r.settings), self.clip_dir)
            for r in self.todo
        ]

    def finish(self, results: Sequence[dict[str, Any]]) -> pd.DataFrame:
        with MetricsStore(self.directory) as store:
            store.write(self.run_id, list(zip(self.todo, results, strict=True)))
            frame = _frame(self.rows, store.read(self.run_id))
        frame.attrs["notes"] = list(self.notes)
        return frame


def prepare_clip(notes: list[str]) -> str | None:
    """The CLIP weights folder (fetched at first use and loaded once to check it), or None
    with the one-line reason appended to ``notes`` and logged. Blocks: call it off the loop."""
    from abebeats_lab.errors import LabError

    try:
        folder = str(_clip.prepare())
        _clip.load(folder)  # a file that does not load fails here, once, not per clip
    except LabError as exc:  # MissingExtraError, WeightsUnavailable: one line each
        line = str(exc)
    except Exception as exc:  # onnxruntime's and tokenizers' own errors
        line = (
            "clip_score not measured: the CLIP files could not be loaded "
            f"({type(exc).__name__}: {_first_line(exc)})"
        )
    else:
        return folder
    notes.append(line)
    log.warning("%s", line)
    return None


def _pool(executor: Executor | None, clips: int) -> tuple[Executor | None, bool]:
    """The executor to use, and whether it is ours to shut down (None: in this process)."""
    if executor is not None or clips <= 1:
        return executor, False
    # spawn: a fork of a threaded process (an event loop, an emulator) can deadlock.
    pool = ProcessPoolExecutor(
        max_workers=min(clips, os.cpu_count() or 1),
        mp_context=multiprocessing.get_context("spawn"),
    )
    return pool, True


_CLIP_METRIC = "clip_score"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _current(record: _Stored | None, sha256: str | None, wanted: set[str]) -> bool:
    if record is None or record.sha256 != sha256:
        return False
    return all(record.versions.get(name) == METRICS[name].version for name in wanted)


def measure_job(
    path: str, settings: Mapping[str, Any], clip_dir: str | None = None
) -> dict[str, Any]:
    """One clip in a worker: figures, or an ``error`` line (never an exception to pickle)."""
    from abebeats_lab.errors import LabError

    known = {f.name for f in fields(VideoRequest)}
    try:
        request = VideoRequest(**{k: v for k, v in settings.items() if k in known})
        values = measure(path, request, clip=Path(clip_dir) if clip_dir else None)
        if clip_dir is None:
            del values[_CLIP_METRIC]  # not measured: not stored, so a later pass measures it
        return {"values": values, "error": None}
    except (LabError, OSError, ValueError, TypeError) as exc:
        return {"values": {}, "error": f"{type(exc).__name__}: {exc}"}


def _frame(rows: Sequence[JobRow], stored: Mapping[tuple[int, str, int], _Stored]) -> pd.DataFrame:
    import pandas as pd

    records = []
    for row in rows:
        record = stored.get(row.key)
        values = record.values if record is not None else {}
        records.append(
            {
                "run_id": row.run_id,
                "prompt_index": row.prompt_index,
                "route": row.route,
                "repeat": row.repeat,
                "output_path": row.output_path,
                **{name: values.get(name) for name in METRICS},
                "error": record.error if record is not None else None,
            }
        )
    columns = [*_KEY_COLUMNS, "output_path", *METRICS, "error"]
    return pd.DataFrame(records, columns=columns)


def load_scores(run_dir: Path | str, run_id: str | None = None) -> pd.DataFrame:
    """The stored figures of a run (default: the latest) without measuring anything."""
    directory = Path(run_dir)
    found_id, rows = _succeeded_rows(directory, run_id)
    with MetricsStore(directory) as store:
        return _frame(rows, store.read(found_id))


def _succeeded_rows(directory: Path, run_id: str | None) -> tuple[str, list[JobRow]]:
    """The run's id (default: the latest run with jobs, as `load_run` picks it) and its rows
    with a verified output, read from the run store.

    Read through `RunStore` rather than ``runner.load_run``: quality sits below run/ in
    DESIGN.md's layers. A run that failed before planning anything has no jobs; as the
    default it would hide the run before it, so it is passed over.
    """
    from abebeats_lab.errors import LabError, ValidationError
    from abebeats_lab.store import DB_NAME, RunStore

    if not (directory / DB_NAME).is_file():
        raise LabError(f"no run store in {directory} (expected {DB_NAME})")
    with RunStore(directory) as store:
        runs = {info.run_id: info for info in store.runs()}
        info = store.latest_run(with_jobs=True) if run_id is None else runs.get(run_id)
        if info is None and run_id is not None:  # a wrong --run: bad input, as in run.folder
            known = ", ".join(runs) or "none yet"
            raise ValidationError("run_id", run_id, f"a run of {directory}: {known}")
        if info is None:
            raise LabError(f"no run with jobs in {directory}")
        rows = store.rows(info.run_id)
    return info.run_id, [r for r in rows if r.state is JobState.SUCCEEDED and r.output_path]


@dataclass(frozen=True, slots=True)
class _Stored:
    sha256: str | None
    values: dict[str, Value]
    versions: dict[str, int]
    error: str | None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (
  run_id TEXT NOT NULL, prompt_index INTEGER NOT NULL, route TEXT NOT NULL,
  repeat INTEGER NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, value REAL,
  sha256 TEXT, error TEXT, measured_at TEXT NOT NULL,
  PRIMARY KEY (run_id, prompt_index, route, repeat, name)
);
"""
_BUSY_TIMEOUT_S = 10.0
_ERROR_NAME = "error"
"""A clip that could not be measured is one row under this name, with its message."""


class MetricsStore:
    """``quality.sqlite``: one row per (run, job key, metric), with the metric's version."""

    def __init__(self, run_dir: Path) -> None:
        self._db = sqlite3.connect(run_dir / QUALITY_DB, timeout=_BUSY_TIMEOUT_S)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.executescript(_SCHEMA)

    def __enter__(self) -> MetricsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def write(self, run_id: str, results: Sequence[tuple[JobRow, dict[str, Any]]]) -> None:
        now = datetime.now(UTC).isoformat()
        with self._db:
            for row, result in results:
                key = (run_id, *row.key)
                self._db.execute(
                    "DELETE FROM metrics WHERE run_id=? AND prompt_index=? AND route=? "
                    "AND repeat=?",
                    key,
                )
                entries = [
                    (name, METRICS[name].version, _to_real(value), None)
                    for name, value in result["values"].items()
                ]
                if result["error"]:
                    entries = [(_ERROR_NAME, 0, None, result["error"])]
                self._db.executemany(
                    "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*key, *entry[:3], row.sha256, entry[3], now) for entry in entries],
                )

    def read(self, run_id: str) -> dict[tuple[int, str, int], _Stored]:
        found: dict[tuple[int, str, int], _Stored] = {}
        query = (
            "SELECT prompt_index, route, repeat, name, version, value, sha256, error "
            "FROM metrics WHERE run_id=?"
        )
        for index, route, repeat, name, version, value, sha256, error in self._db.execute(
            query, (run_id,)
        ):
            record = found.setdefault((index, route, repeat), _Stored(sha256, {}, {}, None))
            if name == _ERROR_NAME:
                found[(index, route, repeat)] = _Stored(sha256, {}, {}, error)
            elif name in METRICS:
                record.values[name] = _from_real(name, value)
                record.versions[name] = version
        return found


def _to_real(value: Value) -> float | None:
    return None if value is None else float(value)


def _from_real(name: str, value: float | None) -> Value:
    if value is None:
        return None
    return bool(value) if METRICS[name].unit == "bool" else float(value)
