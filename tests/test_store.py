"""The run store: rows survive round trips and other connections, WAL is on, history feeds waits,
runs written by older (and newer) versions open, and two processes can open one fresh folder."""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
from contextlib import closing
from dataclasses import fields
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from _runner_support import run_cli

from abebeats_lab._types import JobState, Timing
from abebeats_lab.errors import LabError
from abebeats_lab.run.api import load_run
from abebeats_lab.store import DB_NAME, OUTPUTS_DIR, SCHEMA_VERSION, JobRow, RunStore


def _row(**changes: object) -> JobRow:
    base = JobRow(
        run_id="r1",
        prompt_index=0,
        route="local:procedural",
        repeat=0,
        provider="local",
        model="procedural",
        prompt="a kite",
        settings={"prompt": "a kite", "extras": {"k": [1]}},
    )
    return base.evolve(**changes)


def test_rows_round_trip_with_json_bool_and_none(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.add_run(
            "r1", "2026-11-21T00:00:00+00:00", "compare", {"routes": ["local:procedural"]}
        )
        row = _row(handles={"task_url": "http://127.0.0.1/x"}, adjusted={"duration_s": [3, 4]})
        store.insert([row])
        timing = Timing(run_s=1.25, polls=3, sources={"run_s": "provider"})
        done = row.evolve(state="succeeded", has_audio=False, duration_ok=True, timing=timing)
        store.save(done)
        assert store.rows("r1") == [done]
        assert store.rows() == [done]
        assert store.runs()[0].spec == {"routes": ["local:procedural"]}
    assert (tmp_path / DB_NAME).is_file()
    assert (tmp_path / OUTPUTS_DIR).is_dir()


def test_a_committed_row_is_visible_to_another_process_connection(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.add_run("r1", "2026-11-21T00:00:00+00:00", "compare", {})
        store.insert([_row()])
        store.save(_row(state="queued", job_id="job-42"))
        with sqlite3.connect(tmp_path / DB_NAME) as other:
            mode = other.execute("PRAGMA journal_mode").fetchone()[0]
            stored = other.execute("SELECT job_id, state FROM jobs").fetchall()
    assert mode == "wal"
    assert stored == [("job-42", "queued")]


def test_saving_an_unknown_job_is_an_error(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store, pytest.raises(KeyError):
        store.save(_row(route="local:other"))
    with RunStore(tmp_path) as store, pytest.raises(KeyError):
        store.save_soon(_row(route="local:other")).result()


def test_a_write_waiting_for_the_database_never_blocks_the_caller(tmp_path: Path) -> None:
    """While another program holds the write lock, `save_soon` returns at once; the writes
    land in the order asked once it lets go, and the store's own reads include them."""
    with RunStore(tmp_path) as store:
        store.add_run("r1", "2026-11-21T00:00:00+00:00", "compare", {})
        store.insert([_row()])
        other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, as a report or a second notebook
        first = store.save_soon(_row(state="submitting"))
        second = store.save_soon(_row(state="queued", job_id="job-42"))
        assert not first.done() and not second.done()
        other.execute("ROLLBACK")
        other.close()
        assert [(r.state, r.job_id) for r in store.rows("r1")] == [("queued", "job-42")]
        assert first.done() and second.done()
    assert _sql(tmp_path, "SELECT state, job_id FROM jobs") == [("queued", "job-42")]


def test_unfinished_lists_only_rows_resume_must_act_on(tmp_path: Path) -> None:
    states = [
        "planned",
        "submitting",
        "queued",
        "running",
        "downloading",
        "succeeded",
        "failed",
        "canceled",
        "ambiguous",
    ]
    with RunStore(tmp_path) as store:
        store.add_run("r1", "2026-11-21T00:00:00+00:00", "compare", {})
        store.insert([_row(repeat=i, state=s) for i, s in enumerate(states)])
        left = [row.state for row in store.unfinished("r1")]
        stored = [row.state for row in store.rows("r1")]
    assert left == ["planned", "submitting", "queued", "running", "downloading"]
    assert stored == [JobState(s) for s in states] and len(stored) == len(JobState)
    assert [s for s in stored if s.terminal] == ["succeeded", "failed", "canceled", "ambiguous"]


def test_providers_speak_five_of_the_states_and_an_unknown_word_is_refused() -> None:
    provider_words = {s for s in JobState if s.from_provider}
    assert provider_words == {"queued", "running", "succeeded", "failed", "canceled"}
    assert {s for s in JobState if not s.from_provider} == {
        "planned",
        "submitting",
        "downloading",
        "ambiguous",
    }
    assert _row(state="queued").state is JobState.QUEUED
    with pytest.raises(ValueError, match="archived"):
        _row(state="archived")


def test_run_time_prior_is_median_and_scaled_mad_of_successes(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.add_run("r1", "2026-11-21T00:00:00+00:00", "compare", {})
        assert store.run_time_prior("local:procedural") is None
        times = [10.0, 12.0, 14.0, 100.0]
        rows = [
            _row(repeat=i, state="succeeded", timing=Timing(run_s=t)) for i, t in enumerate(times)
        ]
        rows.append(_row(repeat=9, state="failed", timing=Timing(run_s=1.0)))
        store.insert(rows)
        median, spread = store.run_time_prior("local:procedural") or (0.0, 0.0)
    assert median == 13.0
    assert spread == pytest.approx(2.0 * 1.4826)


def test_latest_run_is_the_newest(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        assert store.latest_run() is None
        store.add_run("a", "2026-11-21T00:00:00+00:00", "compare", {})
        store.add_run("b", "2026-11-21T00:00:01+00:00", "generate", {})
        latest = store.latest_run()
        assert store.latest_run(with_jobs=True) is None  # neither has planned a job
        store.insert([_row(run_id="a")])
        with_jobs = store.latest_run(with_jobs=True)
    assert latest is not None and (latest.run_id, latest.kind) == ("b", "generate")
    assert with_jobs is not None and with_jobs.run_id == "a"  # "b" has no jobs


# -- runs written by other versions --------------------------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0" / DB_NAME
"""A run folder's database written by main before the schema had a version (see its README)."""
FIXTURE_LATEST = "20261205T114037Z-42fa7b"
FIXTURE_FIRST = "20261205T114037Z-f321e5"
LOCAL, RUNWAY = "local:procedural", "runway:gen4.5"
FIXTURE_ROWS = [
    (0, LOCAL, 0, "succeeded"),
    (0, LOCAL, 1, "planned"),
    (0, RUNWAY, 0, "failed"),
    (1, LOCAL, 0, "succeeded"),
    (1, RUNWAY, 0, "failed"),
]
"""(prompt_index, route, repeat, state) of the fixture's latest run, in plan order."""
ADDED_LATER = {"adjusted": {}, "cost_note": "", "polls": 0, "emulated": False}
"""Fields (one per kind of column) a run is made to predate, with the defaults it must load."""


def _copy_of_fixture(folder: Path) -> Path:
    folder.mkdir()
    shutil.copyfile(FIXTURE, folder / DB_NAME)
    return folder


def _sql(folder: Path, *statements: str) -> list[tuple[object, ...]]:
    """Run statements through a plain connection (another program, or an older abebeats-lab)."""
    with closing(sqlite3.connect(folder / DB_NAME)) as db, db:
        return [row for s in statements for row in db.execute(s).fetchall()]


def _columns(folder: Path) -> list[str]:
    return [str(r[0]) for r in _sql(folder, "SELECT name FROM pragma_table_info('jobs')")]


def test_a_new_store_records_the_schema_version(tmp_path: Path) -> None:
    RunStore(tmp_path).close()
    assert _sql(tmp_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_timing_is_stored_as_one_column_per_figure_and_per_source(tmp_path: Path) -> None:
    """A `Timing` field is a store column and a `to_dict` key by itself (no list to extend),
    named as the store has always named them, so older folders and SQL readers still read."""
    sources = {"submit_s": "client", "run_s": "provider"}
    timing = Timing(submit_s=0.5, run_s=2.0, polls=4, sources=sources)
    with RunStore(tmp_path) as store:
        store.add_run("r1", "2026-11-21T00:00:00+00:00", "compare", {})
        store.insert([_row(timing=timing)])
        assert store.rows("r1")[0].timing == timing
    query = "SELECT submit_s, submit_s_source, run_s, run_s_source, queue_s, polls FROM jobs"
    assert _sql(tmp_path, query) == [(0.5, "client", 2.0, "provider", None, 4)]
    figures = [f.name for f in fields(Timing) if f.name != "sources"]
    plain = _row(timing=timing).to_dict()
    assert "timing" not in plain and set(figures) <= set(_columns(tmp_path)) & set(plain)
    assert (plain["run_s"], plain["run_s_source"], plain["queue_s_source"]) == (
        2.0,
        "provider",
        None,
    )


def test_a_run_written_before_versions_loads_and_is_upgraded(tmp_path: Path) -> None:
    old = _copy_of_fixture(tmp_path / "old")
    assert _sql(old, "PRAGMA user_version") == [(0,)]
    comparison = load_run(old)
    assert comparison.run_id == FIXTURE_LATEST
    rows = comparison.rows
    assert [(r.prompt_index, r.route, r.repeat, r.state) for r in rows] == FIXTURE_ROWS
    assert all(isinstance(r.state, JobState) for r in rows)
    assert rows[0].timing.run_s == 2.3695 and rows[0].timing.polls == 30
    assert rows[0].timing.sources["run_s"] == "provider" and rows[1].timing == Timing()
    assert {r.prompt for r in rows} == {"a paper boat", "a red kite"}
    assert rows[0].settings["duration_s"] == 5 and rows[0].output_path
    assert not (old / rows[0].output_path).exists()  # outputs are not part of the fixture
    assert "failed" in (rows[2].error or "")
    assert [r.route for r in load_run(old, FIXTURE_FIRST).rows] == [LOCAL]
    assert _sql(old, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "current-version"])
def test_a_run_written_before_a_field_existed_gets_the_column_with_its_default(
    tmp_path: Path, versioned: bool
) -> None:
    old = _copy_of_fixture(tmp_path / "old")
    if versioned:  # a field added later without a version bump takes the same path
        RunStore(old).close()
    _sql(old, *(f"ALTER TABLE jobs DROP COLUMN {name}" for name in ADDED_LATER))
    assert not set(ADDED_LATER) & set(_columns(old))
    rows = load_run(old).rows
    assert [(r.prompt_index, r.route, r.repeat, r.state) for r in rows] == FIXTURE_ROWS
    for row in rows:
        assert {name: row.to_dict()[name] for name in ADDED_LATER} == ADDED_LATER
    assert set(ADDED_LATER) <= set(_columns(old))
    stored = _sql(old, "SELECT DISTINCT adjusted, cost_note, polls, emulated FROM jobs")
    assert stored == [("{}", "", 0, 0)]


def test_report_of_a_run_written_before_versions(tmp_path: Path) -> None:
    old = _copy_of_fixture(tmp_path / "old")
    done = run_cli("report", str(old), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = Path(done.stdout.strip().splitlines()[-1])
    assert report.is_file() and report.parent == old
    html = report.read_text(encoding="utf-8")
    assert FIXTURE_LATEST in html and "a red kite" in html and RUNWAY in html


def test_resume_of_a_run_written_before_versions_submits_its_planned_row(tmp_path: Path) -> None:
    old = _copy_of_fixture(tmp_path / "old")
    done = run_cli("resume", str(old), cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # its two failed rows stay failed (issue 17)
    assert done.stdout.strip().splitlines()[-1].startswith("2 of 5 job(s) did not succeed")
    rows = load_run(old).rows
    states = [(r.prompt_index, r.route, r.repeat, r.state) for r in rows]
    assert states == [(*key, "succeeded" if s == "planned" else s) for *key, s in FIXTURE_ROWS]
    resumed = rows[1]
    assert resumed.job_id and resumed.output_path and (old / resumed.output_path).is_file()


def test_a_column_this_version_does_not_know_is_ignored_and_kept(tmp_path: Path) -> None:
    plain = _copy_of_fixture(tmp_path / "plain")
    future = _copy_of_fixture(tmp_path / "future")
    _sql(future, "ALTER TABLE jobs ADD COLUMN from_the_future TEXT NOT NULL DEFAULT 'kept'")
    assert load_run(future).rows == load_run(plain).rows
    with RunStore(future) as store:
        (planned,) = (r for r in store.rows(FIXTURE_LATEST) if r.state == "planned")
        store.save(planned.evolve(state="queued", job_id="job-1"))
        store.insert([planned.evolve(repeat=2)])
        assert len(store.rows(FIXTURE_LATEST)) == len(FIXTURE_ROWS) + 1
    assert _sql(future, "SELECT DISTINCT from_the_future FROM jobs") == [("kept",)]


def test_a_run_from_a_newer_version_is_refused_in_one_line_and_left_alone(
    tmp_path: Path,
) -> None:
    newer = _copy_of_fixture(tmp_path / "newer")
    _sql(newer, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LabError, match="newer abebeats-lab"):
        load_run(newer)
    done = run_cli("report", str(newer), cwd=tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "newer abebeats-lab" in line and "upgrade" in line
    assert not (newer / "report.html").exists()
    assert _sql(newer, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]


# -- several processes, one fresh folder ---------------------------------------------

PROCESSES = 3
FOLDERS = 200
"""Each folder is new and opened by every process at once. The race is narrow: before the fix,
a few of 200 folders failed per run (16 of 20 when each process was new)."""
BARRIER_TIMEOUT_S = 120.0


def _open_at_once(folders: list[Path], start: Barrier, name: str) -> None:
    """Child process: for each folder, wait for the others, then open it and write to it."""
    for folder in folders:
        start.wait(BARRIER_TIMEOUT_S)
        try:
            with RunStore(folder) as store:
                store.add_run(name, "2026-11-21T00:00:00+00:00", "compare", {})
        except BaseException:
            start.abort()  # the others stop waiting for a process that is gone
            raise


@pytest.mark.slow
def test_processes_opening_one_fresh_folder_at_once_all_succeed(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")  # fork would copy pytest's threads
    folders = [tmp_path / f"fresh-{i}" for i in range(FOLDERS)]
    start = spawn.Barrier(PROCESSES)
    names = [f"p{i}" for i in range(PROCESSES)]
    children = [spawn.Process(target=_open_at_once, args=(folders, start, n)) for n in names]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=BARRIER_TIMEOUT_S * FOLDERS)
    assert [child.exitcode for child in children] == [0] * PROCESSES
    for folder in folders:
        with RunStore(folder) as store:
            assert sorted(r.run_id for r in store.runs()) == names


def test_closing_twice_is_harmless_and_a_closed_store_refuses_as_sqlite_does(
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path)
    store.close()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        store.rows("any")
