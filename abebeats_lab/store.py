"""The run store: one SQLite database (WAL) per run directory, plus the downloaded outputs.

Layout of a run directory::

    run.sqlite        runs + jobs tables (this module owns the schema)
    outputs/          <route>_<prompt index>_<repeat>_<content hash>.mp4 (a long route:
                      its head and a digest of it)

Every job is a row from the moment it is planned. The runner writes ``submitting`` before
a create call and the provider's job id right after it, before the first status request,
so a crashed process loses nothing: `abebeats_lab.run.api.resume` re-attaches from here.
Rows are `JobRow` frozen dataclasses; ``settings``, ``handles`` and ``adjusted`` are dicts
(stored as JSON), times are UTC ISO-8601 strings, output paths are relative to the run dir.
A row's `Timing` is stored flat, one column per figure plus ``<figure>_source`` for each
measured one (``submit_s``, ``submit_s_source``, ..., ``polls``), derived from `Timing`'s own
fields: a new timing figure is a new column with no change here.

The schema carries a version (``PRAGMA user_version``; 0 is the unversioned store of the first
releases). Opening a run folder brings it up to date: any `JobRow` field the table lacks is
added as a column with the field's default, so adding a field needs no migration code; a
change older code would misread (a rename, a new meaning) bumps `SCHEMA_VERSION` with a step in
``_MIGRATIONS``. A store from a newer abebeats-lab is refused with one line, never guessed at.
Writes never wait on the caller's thread (an event loop): one writer thread per store commits
them in the order asked (``synchronous=FULL``, a few ms each), `RunStore.save_soon` returns at
once, and reads on the store's other connection (WAL) first wait for the writes asked before.
One module: the row type, its columns, the migrations, the codec and the writer change together.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from abebeats_lab._types import JobState, Timing
from abebeats_lab.errors import LabError

__all__ = [
    "DB_NAME",
    "OUTPUTS_DIR",
    "SCHEMA_VERSION",
    "SOURCE_SUFFIX",
    "JobRow",
    "RunInfo",
    "RunStore",
    "timing_columns",
]

DB_NAME = "run.sqlite"
OUTPUTS_DIR = "outputs"
BUSY_TIMEOUT_S = 10.0
"""Another process (a report, a second notebook) may hold the write lock briefly."""
WAL_RETRY_INTERVAL_S = 0.01
"""Pause before asking again for WAL mode while another process is switching a fresh file."""
SCHEMA_VERSION = 1
"""The store layout this code writes; see ``_MIGRATIONS`` for when to bump it."""
MAD_TO_SD = 1.4826
"""Scales a median absolute deviation to a normal standard deviation."""
MIN_HISTORY = 2
"""Run times needed before the history replaces the capability prior."""
WAL_SUFFIX = "-wal"
WAL_HEADER_BYTES = 32
"""SQLite's WAL header: its salts change whenever a writer starts the log over."""
SNAPSHOT_ATTEMPTS = 3
"""Copies of a read-only folder's store tried while a live writer keeps starting its log over."""


@dataclass(frozen=True)
class JobRow:
    """One job of a run: what was asked, where, what happened, and the figures.

    ``state`` is a `JobState`: any of them, the runner's own (``planned``, ``submitting``,
    ``downloading``, ``ambiguous``: a create whose answer was lost, never resubmitted
    silently) included. A ``queued`` or ``running`` row with an ``error`` after a run is a
    job whose status could not be read (the job was left running, its id kept); `resume`
    asks again.
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
    state: JobState = JobState.PLANNED
    error: str | None = None
    progress: float | None = None
    timing: Timing = field(default_factory=Timing)
    """The figures of DESIGN.md "Timing"; flat columns in the store and in `to_dict`."""
    cost_usd: float | None = None
    """What this job is expected to be charged: 0 for emulated and local routes."""
    cost_estimate_usd: float | None = None
    """The price table's estimate for this request on the real route (would-be, if emulated)."""
    usage: dict[str, float] = field(default_factory=dict)
    """What the provider reported the job used, under its documented names (Replicate's
    ``predict_time``/``total_time``, fal's ``inference_time``: seconds); empty where none."""
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

    def __post_init__(self) -> None:
        # A plain word (a stored row, ``evolve(state="queued")``) becomes the enum; an unknown
        # one is refused here rather than stored.
        object.__setattr__(self, "state", JobState(self.state))

    @property
    def key(self) -> tuple[int, str, int]:
        """(prompt_index, route, repeat): unique within a run."""
        return (self.prompt_index, self.route, self.repeat)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, dicts included (for pandas and JSON): the state as its plain word,
        the timing as its flat columns (``submit_s``, ``submit_s_source``, ..., ``polls``)."""
        values: dict[str, Any] = {}
        for name, value in asdict(self).items():
            if name == "timing":
                values.update(timing_columns(self.timing))
            else:
                values[name] = value
        values["state"] = str(self.state)
        return values

    def evolve(self, **changes: Any) -> JobRow:
        """A copy with some fields changed."""
        return replace(self, **changes)


SOURCE_SUFFIX = "_source"
"""A measured figure's column of who measured it: ``run_s`` -> ``run_s_source``."""
_TIMING_FIELDS = {f.name: f for f in fields(Timing) if f.name != "sources"}
_SOURCED = tuple(name for name, f in _TIMING_FIELDS.items() if str(f.type).startswith("float"))
"""Timing figures that carry a source (``provider``, ``client``...): the measured seconds."""


def timing_columns(timing: Timing) -> dict[str, Any]:
    """``timing`` as flat columns, in `Timing`'s field order: each figure, then its source."""
    values: dict[str, Any] = {}
    for name in _TIMING_FIELDS:
        values[name] = getattr(timing, name)
        if name in _SOURCED:
            values[name + SOURCE_SUFFIX] = timing.sources.get(name)
    return values


def _timing_of(values: Mapping[str, Any]) -> Timing:
    """The `Timing` stored in flat columns; a column an older store lacks takes the default."""
    figures = {name: values[name] for name in _TIMING_FIELDS if values.get(name) is not None}
    sources = {n: values[n + SOURCE_SUFFIX] for n in _SOURCED if values.get(n + SOURCE_SUFFIX)}
    return Timing(**figures, sources=sources)


_TIMING_HINTS = {
    **{name: str(f.type) for name, f in _TIMING_FIELDS.items()},
    **{name + SOURCE_SUFFIX: "str | None" for name in _SOURCED},
}
_TIMING_COLUMNS = tuple(timing_columns(Timing()))
_COLUMNS = tuple(
    column
    for f in fields(JobRow)
    for column in (_TIMING_COLUMNS if f.name == "timing" else (f.name,))
)
"""Every column of the jobs table, in `to_dict`'s order."""
_KEY_COLUMNS = ("run_id", "prompt_index", "route", "repeat")


def _hint(name: str) -> str:
    """The annotation of a column's value (a `JobRow` field, or a timing column)."""
    if name in _TIMING_HINTS:
        return _TIMING_HINTS[name]
    return str(JobRow.__dataclass_fields__[name].type)


def _default(name: str) -> object:
    """The value a row stored before column ``name`` existed gets."""
    if name in _TIMING_HINTS:
        return timing_columns(Timing())[name]
    spec = JobRow.__dataclass_fields__[name]
    if spec.default is not MISSING:
        return spec.default
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    raise TypeError(f"JobRow.{name} needs a default: rows stored before it existed lack it")


# Derived from the annotations, so a new field is stored right without touching this module.
_JSON_FIELDS = tuple(n for n in _COLUMNS if _hint(n).startswith(("dict", "list")))
_BOOL_FIELDS = tuple(n for n in _COLUMNS if _hint(n).startswith("bool"))

_MIGRATIONS: tuple[tuple[str, ...], ...] = ((),)
"""``_MIGRATIONS[v]``: the SQL that takes a version ``v`` store to ``v + 1``.

0 -> 1 only starts counting: the unversioned store already had today's tables. Missing
columns are added after the steps, from `JobRow` itself, so a step is needed only when old
data must change (a renamed column, a state that now means something else).
"""


@dataclass(frozen=True)
class RunInfo:
    """One run: its id, when it started, and what was asked (prompts, routes, options)."""

    run_id: str
    created_at: str
    kind: str
    spec: dict[str, Any]


def _column_type(name: str) -> str:
    hint = _hint(name)
    for token, sql in (("int", "INTEGER"), ("float", "REAL"), ("bool", "INTEGER")):
        if hint.startswith(token):
            return sql
    return "TEXT"


def _sql_literal(value: object) -> str:
    """A constant for a column DEFAULT (values come from JobRow's own defaults, never input)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {value!r}")


def _added_column(name: str) -> str:
    """The definition of a column added to an older store: rows it already holds get the default."""
    default = _default(name)
    if name in _JSON_FIELDS:
        default = json.dumps(default, sort_keys=True)
    return f"{name} {_column_type(name)} DEFAULT {_sql_literal(default)}"


_CREATE_RUNS = """CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, kind TEXT NOT NULL, spec TEXT NOT NULL
)"""
_CREATE_JOBS = (
    f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(f'{n} {_column_type(n)}' for n in _COLUMNS)}, "
    f"PRIMARY KEY ({', '.join(_KEY_COLUMNS)}))"
)


# Column names come from JobRow's own fields, never from input; values are always bound.
_KEY = " AND ".join(f"{name} = :{name}" for name in _KEY_COLUMNS)
_ORDER = "ORDER BY run_id, prompt_index, route, repeat"
_INSERT = (
    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(':' + n for n in _COLUMNS)})"
)
_UPDATE = f"UPDATE jobs SET {', '.join(f'{n} = :{n}' for n in _COLUMNS)} WHERE {_KEY}"  # noqa: S608
_SELECT_ALL = f"SELECT * FROM jobs {_ORDER}"  # noqa: S608
_SELECT_RUN = f"SELECT * FROM jobs WHERE run_id = ? {_ORDER}"  # noqa: S608


def _encode(row: JobRow) -> dict[str, Any]:
    values = {f.name: getattr(row, f.name) for f in fields(JobRow) if f.name != "timing"}
    values.update(timing_columns(row.timing))
    for name in _JSON_FIELDS:
        values[name] = json.dumps(values[name], sort_keys=True)
    return values


def _decode(record: sqlite3.Row) -> JobRow:
    """A row from any schema version: unknown columns are ignored, missing ones take defaults."""
    stored = set(record.keys())
    values = {name: record[name] for name in _COLUMNS if name in stored}
    for name in _JSON_FIELDS:
        if name in values:
            if values[name]:
                values[name] = json.loads(values[name])
            else:
                del values[name]
    for name in _BOOL_FIELDS:
        if values.get(name) is not None:
            values[name] = bool(values[name])
    timing = _timing_of(values)
    for name in _TIMING_COLUMNS:
        values.pop(name, None)
    return JobRow(**values, timing=timing)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _open(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with a busy timeout, the schema brought up to date."""
    # ``timeout`` is SQLite's busy_timeout, set before the first statement touches the file.
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        db.row_factory = sqlite3.Row
        _enable_wal(db)
        # FULL: a row written just before a create call must survive a power cut too.
        db.execute("PRAGMA synchronous=FULL")
        _upgrade(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _open_read_only(
    path: Path,
) -> tuple[sqlite3.Connection, tempfile.TemporaryDirectory[str] | None]:
    """A connection that never writes, and the private copy it reads when there is one.

    Where the folder cannot be written, SQLite cannot build the WAL index it needs to read
    ``run.sqlite-wal``, and ``immutable`` ignores that log. A log with rows in it (a writer
    killed before its checkpoint) is therefore read from a copy of both files, so no row is
    missing or stale; without one the database file alone is the whole store.
    """
    wal = path.with_name(path.name + WAL_SUFFIX)
    if os.access(path.parent, os.W_OK):
        return _connect_read_only(f"{path.absolute().as_uri()}?mode=ro"), None
    if not _has_frames(wal):
        return _connect_read_only(f"{path.absolute().as_uri()}?mode=ro&immutable=1"), None
    scratch = tempfile.TemporaryDirectory(prefix="abebeats-store-")
    try:
        copy = _snapshot(path, wal, Path(scratch.name))
        return _connect_read_only(f"{copy.as_uri()}?mode=ro"), scratch
    except BaseException:
        scratch.cleanup()
        raise


def _connect_read_only(uri: str) -> sqlite3.Connection:
    db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
    db.row_factory = sqlite3.Row
    return db


def _has_frames(wal: Path) -> bool:
    try:
        return wal.stat().st_size > WAL_HEADER_BYTES
    except FileNotFoundError:
        return False


def _snapshot(path: Path, wal: Path, into: Path) -> Path:
    """Copies of the database and then its log, taken again if a live writer started the log
    over meanwhile (its checkpoint would pair the copied file with a log meant for a newer one)."""
    copy = into / path.name
    try:
        for _ in range(SNAPSHOT_ATTEMPTS):
            header = _wal_header(wal)
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, copy.with_name(wal.name))
            if _wal_header(copy.with_name(wal.name)) == header:
                return copy
        reason = "another process keeps writing it"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    raise LabError(
        f"run store: {path.parent} is not writable and rows of a run that did not close are "
        f"still in {wal.name}, which cannot be read here ({reason}): run any abebeats-lab "
        "command on it once as a user who can write the folder, or copy the folder elsewhere"
    )


def _wal_header(wal: Path) -> bytes:
    with wal.open("rb") as handle:
        return handle.read(WAL_HEADER_BYTES)


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL, asking again while another process switches the same fresh file.

    That switch answers SQLITE_BUSY without calling the busy handler, so two processes
    opening a new run folder at the same instant would otherwise fail one of them.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
        time.sleep(WAL_RETRY_INTERVAL_S)


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _missing_columns(db: sqlite3.Connection) -> list[str]:
    stored = {r["name"] for r in db.execute("SELECT name FROM pragma_table_info('jobs')")}
    return [name for name in _COLUMNS if name not in stored]


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise LabError(
            f"{path} was written by a newer abebeats-lab (store schema {version}; this version "
            f"reads up to {SCHEMA_VERSION}): upgrade abebeats-lab to open it"
        )


def _upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Create or migrate the schema in one IMMEDIATE transaction; no write when up to date."""
    version = _user_version(db)
    _refuse_newer(version, path)
    if version == SCHEMA_VERSION and not _missing_columns(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(db)  # again under the write lock: another process may have won
        _refuse_newer(version, path)
        db.execute(_CREATE_RUNS)
        if len(_missing_columns(db)) == len(_COLUMNS):  # a new store: today's layout at once
            db.execute(_CREATE_JOBS)
        else:
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            for name in _missing_columns(db):
                db.execute(f"ALTER TABLE jobs ADD COLUMN {_added_column(name)}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        db.rollback()
        raise
    db.commit()


T = TypeVar("T")


class _Writer:
    """One thread that makes every write of a store, in the order asked, on its own connection.

    Commits wait for the disk (``synchronous=FULL``), a few ms each; here they never block
    the caller's event loop. Reads use the store's other connection, which WAL never makes
    wait for a writer.
    """

    def __init__(self, path: Path) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="abebeats-store")
        self._db = self._thread.submit(_write_connection, path).result()

    def submit(self, work: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Run ``work`` in one transaction after every write asked before it."""
        return self._thread.submit(_in_transaction, self._db, work)

    def close(self) -> None:
        """Finish every write asked, then close."""
        self._thread.submit(self._db.close).result()
        self._thread.shutdown()


def _write_connection(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    # FULL: a row written just before a create call must survive a power cut too.
    db.execute("PRAGMA synchronous=FULL")
    return db


def _in_transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    with db:
        return work(db)


def _update(values: dict[str, Any], key: tuple[int, str, int], run_id: str) -> Callable[..., None]:
    def update(db: sqlite3.Connection) -> None:
        if db.execute(_UPDATE, values).rowcount != 1:
            raise KeyError(f"no stored job {key} in run {run_id}")

    return update


class RunStore:
    """The SQLite database of one run directory.

    Writes go, in order, through one writer thread (`save_soon` returns at once; `save` and
    the others wait for the commit); reads first wait for the writes asked before them.
    """

    def __init__(self, run_dir: Path | str, *, read_only: bool = False) -> None:
        self.run_dir = Path(run_dir)
        if read_only:  # never writes; where nobody can write, not even SQLite's WAL index
            self._db, self._scratch = _open_read_only(self.run_dir / DB_NAME)
            try:
                _refuse_newer(_user_version(self._db), self.run_dir / DB_NAME)
            except BaseException:
                self.close()
                raise
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.outputs_dir.mkdir(exist_ok=True)
        self._db = _open(self.run_dir / DB_NAME)
        try:
            self._writer = _Writer(self.run_dir / DB_NAME)
        except BaseException:
            self._db.close()
            raise

    @property
    def outputs_dir(self) -> Path:
        """Where verified outputs are placed."""
        return self.run_dir / OUTPUTS_DIR

    _writer: _Writer | None = None
    _scratch: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        """Commit every write asked, then close the database connections (once; closing
        again does nothing, and a closed store refuses reads and writes as SQLite does)."""
        writer, self._writer = self._writer, None
        scratch, self._scratch = self._scratch, None
        try:
            if writer is not None:
                writer.close()
        finally:
            self._db.close()
            if scratch is not None:
                scratch.cleanup()

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> Future[T]:
        if self._writer is not None:
            return self._writer.submit(work)
        done: Future[T] = Future()  # read-only: SQLite itself refuses, as it always did
        try:
            done.set_result(_in_transaction(self._db, work))
        except Exception as exc:
            done.set_exception(exc)
        return done

    def flush(self) -> None:
        """Wait until every write asked so far is committed."""
        if self._writer is not None:
            self._writer.submit(lambda db: None).result()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ----------------------------------------------------------------------

    def add_run(self, run_id: str, created_at: str, kind: str, spec: Mapping[str, Any]) -> None:
        """Record a new run and what it was asked to do."""
        values = (run_id, created_at, kind, json.dumps(dict(spec), sort_keys=True, default=str))
        sql = "INSERT INTO runs (run_id, created_at, kind, spec) VALUES (?, ?, ?, ?)"
        self._write(lambda db: db.execute(sql, values)).result()

    def runs(self) -> list[RunInfo]:
        """Every run in this directory, oldest first."""
        self.flush()
        cursor = self._db.execute("SELECT * FROM runs ORDER BY created_at, run_id")
        return [
            RunInfo(r["run_id"], r["created_at"], r["kind"], json.loads(r["spec"])) for r in cursor
        ]

    def latest_run(self, *, with_jobs: bool = False) -> RunInfo | None:
        """The most recent run, or None. ``with_jobs``: the most recent that has jobs (what
        `load_run`, `report` and `score` default to: a run that failed before planning
        anything must not hide the one before it)."""
        runs = self.runs()
        if with_jobs:
            planned = {r[0] for r in self._db.execute("SELECT DISTINCT run_id FROM jobs")}
            runs = [info for info in runs if info.run_id in planned]
        return runs[-1] if runs else None

    # -- jobs ----------------------------------------------------------------------

    def insert(self, rows: list[JobRow]) -> None:
        """Add planned rows in one transaction."""
        values = [_encode(r) for r in rows]
        self._write(lambda db: db.executemany(_INSERT, values)).result()

    def save_soon(self, row: JobRow) -> Future[None]:
        """Write every field of ``row`` (matched on its key) after the writes asked before;
        returns at once. The future is done once the row is committed (a `KeyError` if no
        such job is stored)."""
        return self._write(_update(_encode(row), row.key, row.run_id))

    def save(self, row: JobRow) -> None:
        """Write every field of ``row`` (matched on its key) and wait for the commit."""
        self.save_soon(row).result()

    def rows(self, run_id: str | None = None) -> list[JobRow]:
        """Rows of one run (default: every run), in plan order, every write asked included."""
        self.flush()
        if run_id is None:
            cursor = self._db.execute(_SELECT_ALL)
        else:
            cursor = self._db.execute(_SELECT_RUN, (run_id,))
        return [_decode(r) for r in cursor]

    def job_ids_soon(self, run_id: str) -> Future[set[str]]:
        """The provider job ids stored for one run, read after the writes asked before
        (on the writer's thread: a caller on an event loop awaits it without blocking)."""
        sql = "SELECT job_id FROM jobs WHERE run_id = ?"
        return self._write(lambda db: {r[0] for r in db.execute(sql, (run_id,)) if r[0]})

    def unfinished(self, run_id: str) -> Iterator[JobRow]:
        """Rows of a run that `resume` must act on."""
        return (r for r in self.rows(run_id) if r.state.unfinished)

    def run_time_prior(
        self, route: str, *, emulated: bool | None = None
    ) -> tuple[float, float] | None:
        """Median and MAD-based spread of past run times of ``route`` here, if enough were seen.

        The per-user `abebeats_lab.history` comes first; this folder's own rows stand in when
        it has too few (a folder from before it existed). ``emulated`` keeps emulated and real
        rows apart (None: both).
        """
        query = "SELECT run_s FROM jobs WHERE route = ? AND state = ? AND run_s IS NOT NULL"
        params: tuple[object, ...] = (route, JobState.SUCCEEDED)
        if emulated is not None:
            query += " AND emulated = ?"
            params += (int(emulated),)
        values = [float(r[0]) for r in self._db.execute(query, params)]
        if len(values) < MIN_HISTORY:
            return None
        median = statistics.median(values)
        mad = statistics.median(abs(v - median) for v in values)
        return median, mad * MAD_TO_SD
