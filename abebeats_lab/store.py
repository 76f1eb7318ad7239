"""The run store: one SQLite database (WAL) per run directory, plus the downloaded outputs.

Layout of a run directory::

    run.sqlite        runs + jobs tables (this module owns the schema)
    outputs/          <route>_<prompt index>_<repeat>_<content hash>.mp4

Every job is a row from the moment it is planned. The runner writes ``submitting`` before
a create call and the provider's job id right after it, before the first status request,
so a crashed process loses nothing: `abebeats_lab.runner.resume` re-attaches from here.
Rows are `JobRow` frozen dataclasses; ``settings``, ``handles`` and ``adjusted`` are dicts
(stored as JSON), times are UTC ISO-8601 strings, output paths are relative to the run dir.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["DB_NAME", "OUTPUTS_DIR", "UNFINISHED_STATES", "JobRow", "RunInfo", "RunStore"]

DB_NAME = "run.sqlite"
OUTPUTS_DIR = "outputs"
BUSY_TIMEOUT_S = 10.0
"""Another process (a report, a second notebook) may hold the write lock briefly."""
MAD_TO_SD = 1.4826
"""Scales a median absolute deviation to a normal standard deviation."""
MIN_HISTORY = 2
"""Run times needed before the history replaces the capability prior."""

UNFINISHED_STATES = ("planned", "submitting", "queued", "running", "downloading")
"""Row states `resume` acts on; everything else is final."""
_JSON_FIELDS = ("settings", "handles", "adjusted")
_BOOL_FIELDS = ("has_audio", "duration_ok", "ratio_ok", "resolution_ok", "emulated")


@dataclass(frozen=True)
class JobRow:
    """One job of a run: what was asked, where, what happened, and the figures.

    ``state`` is ``planned``, ``submitting``, a `JobState` value, ``downloading`` or
    ``ambiguous`` (a create whose answer was lost; never resubmitted silently). A ``queued``
    or ``running`` row with an ``error`` after a run is a job whose status could not be read
    (the job was left running, its id kept); `resume` asks again.
    """

    run_id: str
    prompt_index: int
    route: str
    repeat: int
    provider: str
    model: str
    prompt: str
    settings: dict[str, Any] = field(default_factory=dict)
    """The request sent to the route (after any adjustment), as JSON-friendly values."""
    seed: int | None = None
    client_ref: str = ""
    """A client-side id for this attempt, offered to a provider's ``reconcile``."""
    job_id: str | None = None
    handles: dict[str, str] = field(default_factory=dict)
    state: str = "planned"
    error: str | None = None
    progress: float | None = None
    submit_s: float | None = None
    submit_s_source: str | None = None
    queue_s: float | None = None
    queue_s_source: str | None = None
    run_s: float | None = None
    run_s_source: str | None = None
    detect_lag_s: float | None = None
    detect_lag_s_source: str | None = None
    download_s: float | None = None
    download_s_source: str | None = None
    total_s: float | None = None
    total_s_source: str | None = None
    polls: int = 0
    cost_usd: float | None = None
    """What this job is expected to be charged: 0 for emulated and local routes."""
    cost_estimate_usd: float | None = None
    """The price table's estimate for this request on the real route (would-be, if emulated)."""
    cost_note: str = ""
    """How to read the cost: ``estimate``, ``emulated: not charged``, ``local: free``."""
    price_source: str | None = None
    price_date: str | None = None
    output_path: str | None = None
    sha256: str | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    codec: str | None = None
    has_audio: bool | None = None
    bytes: int | None = None
    duration_ok: bool | None = None
    ratio_ok: bool | None = None
    resolution_ok: bool | None = None
    emulated: bool = False
    submitted_at: str | None = None
    finished_at: str | None = None
    adjusted: dict[str, Any] = field(default_factory=dict)
    """``{field: [asked, used]}`` where ``adapt=True`` changed the common settings."""

    @property
    def key(self) -> tuple[int, str, int]:
        """(prompt_index, route, repeat): unique within a run."""
        return (self.prompt_index, self.route, self.repeat)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, dicts included (for pandas and JSON)."""
        return asdict(self)

    def evolve(self, **changes: Any) -> JobRow:
        """A copy with some fields changed."""
        return replace(self, **changes)


_COLUMNS = tuple(f.name for f in fields(JobRow))


@dataclass(frozen=True)
class RunInfo:
    """One run: its id, when it started, and what was asked (prompts, routes, options)."""

    run_id: str
    created_at: str
    kind: str
    spec: dict[str, Any]


def _column_type(name: str) -> str:
    hint = str(JobRow.__dataclass_fields__[name].type)
    for token, sql in (("int", "INTEGER"), ("float", "REAL"), ("bool", "INTEGER")):
        if hint.startswith(token):
            return sql
    return "TEXT"


def _schema() -> str:
    columns = ",\n  ".join(f"{name} {_column_type(name)}" for name in _COLUMNS)
    return f"""
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, kind TEXT NOT NULL, spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  {columns},
  PRIMARY KEY (run_id, prompt_index, route, repeat)
);
"""


# Column names come from JobRow's own fields, never from input; values are always bound.
_KEY = "run_id = :run_id AND prompt_index = :prompt_index AND route = :route AND repeat = :repeat"
_ORDER = "ORDER BY run_id, prompt_index, route, repeat"
_INSERT = (
    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(':' + n for n in _COLUMNS)})"
)
_UPDATE = f"UPDATE jobs SET {', '.join(f'{n} = :{n}' for n in _COLUMNS)} WHERE {_KEY}"  # noqa: S608
_SELECT_ALL = f"SELECT * FROM jobs {_ORDER}"  # noqa: S608
_SELECT_RUN = f"SELECT * FROM jobs WHERE run_id = ? {_ORDER}"  # noqa: S608


def _encode(row: JobRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _COLUMNS}
    for name in _JSON_FIELDS:
        values[name] = json.dumps(values[name], sort_keys=True)
    return values


def _decode(record: sqlite3.Row) -> JobRow:
    values = {name: record[name] for name in _COLUMNS}
    for name in _JSON_FIELDS:
        values[name] = json.loads(values[name] or "{}")
    for name in _BOOL_FIELDS:
        if values[name] is not None:
            values[name] = bool(values[name])
    return JobRow(**values)


class RunStore:
    """The SQLite database of one run directory. Every write is committed at once."""

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.outputs_dir.mkdir(exist_ok=True)
        self._db = sqlite3.connect(self.run_dir / DB_NAME, timeout=BUSY_TIMEOUT_S)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a row written just before a create call must survive a power cut too.
        self._db.execute("PRAGMA synchronous=FULL")
        with self._db:
            self._db.executescript(_schema())

    @property
    def outputs_dir(self) -> Path:
        """Where verified outputs are placed."""
        return self.run_dir / OUTPUTS_DIR

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------

    def add_run(self, run_id: str, created_at: str, kind: str, spec: Mapping[str, Any]) -> None:
        """Record a new run and what it was asked to do."""
        with self._db:
            self._db.execute(
                "INSERT INTO runs (run_id, created_at, kind, spec) VALUES (?, ?, ?, ?)",
                (run_id, created_at, kind, json.dumps(dict(spec), sort_keys=True, default=str)),
            )

    def runs(self) -> list[RunInfo]:
        """Every run in this directory, oldest first."""
        cursor = self._db.execute("SELECT * FROM runs ORDER BY created_at, run_id")
        return [
            RunInfo(r["run_id"], r["created_at"], r["kind"], json.loads(r["spec"])) for r in cursor
        ]

    def latest_run(self) -> RunInfo | None:
        """The most recent run, or None in an empty directory."""
        runs = self.runs()
        return runs[-1] if runs else None

    # -- jobs ----------------------------------------------------------------------

    def insert(self, rows: list[JobRow]) -> None:
        """Add planned rows in one transaction."""
        with self._db:
            self._db.executemany(_INSERT, [_encode(r) for r in rows])

    def save(self, row: JobRow) -> None:
        """Write every field of ``row`` (matched on its key) and commit."""
        with self._db:
            cursor = self._db.execute(_UPDATE, _encode(row))
        if cursor.rowcount != 1:
            raise KeyError(f"no stored job {row.key} in run {row.run_id}")

    def rows(self, run_id: str | None = None) -> list[JobRow]:
        """Rows of one run (default: every run), in plan order."""
        if run_id is None:
            cursor = self._db.execute(_SELECT_ALL)
        else:
            cursor = self._db.execute(_SELECT_RUN, (run_id,))
        return [_decode(r) for r in cursor]

    def unfinished(self, run_id: str) -> Iterator[JobRow]:
        """Rows of a run that `resume` must act on."""
        return (r for r in self.rows(run_id) if r.state in UNFINISHED_STATES)

    def run_time_prior(
        self, route: str, *, emulated: bool | None = None
    ) -> tuple[float, float] | None:
        """Median and MAD-based spread of past run times of ``route`` here, if enough were seen.

        The per-user `abebeats_lab.history` comes first; this folder's own rows stand in when
        it has too few (a folder from before it existed). ``emulated`` keeps emulated and real
        rows apart (None: both).
        """
        query = (
            "SELECT run_s FROM jobs WHERE route = ? AND state = 'succeeded' AND run_s IS NOT NULL"
        )
        params: tuple[object, ...] = (route,)
        if emulated is not None:
            query += " AND emulated = ?"
            params += (int(emulated),)
        values = [float(r[0]) for r in self._db.execute(query, params)]
        if len(values) < MIN_HISTORY:
            return None
        median = statistics.median(values)
        mad = statistics.median(abs(v - median) for v in values)
        return median, mad * MAD_TO_SD
