"""Run-time history per user: how long each route's jobs ran, for the wait schedule.

The wait schedule of a route without progress (Vertex Veo) aims its polls at the run times the
route has shown before. Those belong to the user, not to one run folder: every succeeded job of
every run folder adds its run time to one SQLite file in the user's cache directory
(``platformdirs.user_cache_dir("abebeats-lab")``, or ``$ABEBEATS_LAB_CACHE_DIR``), which keeps
the last `KEEP` per route. Emulated and real runs of a route are kept apart, so an emulator's
scripted times never train the schedule for the real provider.

The history only makes waiting cheaper: a file that cannot be read or written is logged and
the schedule falls back (to the run folder's own rows, then the route's typical run time); it
never fails a run. `clear` (``abebeats-lab history --clear``) forgets it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import sqlite3
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from abebeats_lab.config import CACHE_DIR_ENV, cache_dir
from abebeats_lab.errors import LabError

if TYPE_CHECKING:
    from abebeats_lab.waiting import WaitResult

__all__ = [
    "CACHE_DIR_ENV",
    "HISTORY_FILE",
    "KEEP",
    "RouteHistory",
    "cache_dir",
    "clear",
    "history_path",
    "median_spread",
    "record",
    "run_time_prior",
    "run_time_sample",
    "summaries",
]

log = logging.getLogger(__name__)

HISTORY_FILE = "run-times.sqlite"
KEEP = 50
"""Run times kept per (route, emulated): recent enough to follow a provider that got faster."""
MIN_HISTORY = 2
"""Run times needed before the history replaces the route's typical run time."""
MAD_TO_SD = 1.4826
"""Scales a median absolute deviation to a normal standard deviation."""
BUSY_TIMEOUT_S = 10.0
"""Several runs (processes) may record at once; SQLite serialises the writes."""
SCHEMA_VERSION = 1
PROVIDER_SOURCE = "provider"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_times (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  route TEXT NOT NULL,
  emulated INTEGER NOT NULL,
  run_s REAL NOT NULL,
  recorded_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS run_times_key ON run_times (route, emulated, id);
"""
_TRIM = """
DELETE FROM run_times WHERE route = :route AND emulated = :emulated AND id NOT IN (
  SELECT id FROM run_times WHERE route = :route AND emulated = :emulated
  ORDER BY id DESC LIMIT :keep
)
"""
_SUMMARY = """
SELECT route, emulated, COUNT(*) AS samples, MAX(recorded_at) AS last
FROM run_times GROUP BY route, emulated ORDER BY route, emulated
"""


@dataclass(frozen=True, slots=True)
class RouteHistory:
    """What the history holds for one route, real or emulated."""

    route: str
    emulated: bool
    samples: int
    median_s: float
    spread_s: float
    last_recorded_at: str


def history_path() -> Path:
    """The SQLite file holding every route's run times."""
    return cache_dir() / HISTORY_FILE


@contextlib.contextmanager
def _connect(*, create: bool) -> Iterator[sqlite3.Connection | None]:
    """The history database, or None when it does not exist and ``create`` is False."""
    path = history_path()
    if not create and not path.is_file():
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            with db:
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        yield db
    finally:
        db.close()


def median_spread(values: Sequence[float]) -> tuple[float, float] | None:
    """Median and MAD-based spread of ``values``; None below `MIN_HISTORY` values."""
    if len(values) < MIN_HISTORY:
        return None
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return median, mad * MAD_TO_SD


def run_time_sample(
    result: WaitResult | None, run_s: float | None, source: str | None
) -> float | None:
    """The run time one succeeded job teaches the schedule, on the schedule's own clock.

    A provider's own times are exact, and so is an end a stream pushed. A run time the client
    measured from polls ends at the poll that saw the end, so it carries that poll's lag: a
    history learnt from a coarse schedule would stay coarse. The end lies between the last
    poll that saw the job unfinished and the first that saw it done; a draw uniform across
    that interval is unbiased where the run times' density is flat across it and, unlike its
    midpoint, keeps the spread when many jobs ended between the same two polls.
    """
    if source == PROVIDER_SOURCE or result is None or result.running_seen_at is None:
        return run_s
    end = result.done_seen_at
    pending = result.last_pending_at
    if pending is not None and result.running_seen_at <= pending < end:
        end = random.uniform(pending, end)
    return end - result.running_seen_at


def record(route: str, run_s: float | None, *, emulated: bool) -> None:
    """Add one succeeded job's run time (seconds); keeps the last `KEEP` per key."""
    if run_s is None or not math.isfinite(run_s) or run_s <= 0:
        return
    values = {"route": route, "emulated": int(emulated), "run_s": run_s, "keep": KEEP}
    values["recorded_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        with _connect(create=True) as db:
            assert db is not None
            with db:
                db.execute(
                    "INSERT INTO run_times (route, emulated, run_s, recorded_at) "
                    "VALUES (:route, :emulated, :run_s, :recorded_at)",
                    values,
                )
                db.execute(_TRIM, values)
    except (sqlite3.Error, OSError) as exc:
        log.warning("run-time history not updated (%s: %s): %s", type(exc).__name__, exc, route)


def _times(db: sqlite3.Connection, route: str, emulated: bool) -> list[float]:
    cursor = db.execute(
        "SELECT run_s FROM run_times WHERE route = ? AND emulated = ? ORDER BY id DESC LIMIT ?",
        (route, int(emulated), KEEP),
    )
    return [float(row[0]) for row in cursor]


def run_time_prior(route: str, *, emulated: bool) -> tuple[float, float] | None:
    """Median and spread of ``route``'s recorded run times (real or emulated), if enough."""
    try:
        with _connect(create=False) as db:
            return None if db is None else median_spread(_times(db, route, emulated))
    except (sqlite3.Error, OSError) as exc:
        log.warning("run-time history not read (%s: %s)", type(exc).__name__, exc)
        return None


def summaries(routes: Iterable[str] | None = None) -> list[RouteHistory]:
    """Per route and emulated flag: how many run times are kept, their median and spread."""
    wanted = set(routes) if routes else None
    found: list[RouteHistory] = []
    with _user_errors(), _connect(create=False) as db:
        if db is None:
            return []
        for route, emulated, samples, last in db.execute(_SUMMARY).fetchall():
            if wanted is not None and route not in wanted:
                continue
            times = _times(db, route, bool(emulated))
            median, spread = median_spread(times) or (statistics.median(times), 0.0)
            found.append(RouteHistory(route, bool(emulated), samples, median, spread, last))
    return found


def clear(routes: Iterable[str] | None = None) -> int:
    """Forget the run times of ``routes`` (default: every route); returns how many went."""
    chosen = list(routes or ())
    with _user_errors(), _connect(create=False) as db:
        if db is None:
            return 0
        with db:
            if not chosen:
                return db.execute("DELETE FROM run_times").rowcount
            marks = ", ".join("?" for _ in chosen)
            query = f"DELETE FROM run_times WHERE route IN ({marks})"  # noqa: S608 - marks only
            return db.execute(query, chosen).rowcount


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """An unreadable history file, as the one line a user needs."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise LabError(f"cannot read the run-time history {history_path()}: {exc}") from exc
