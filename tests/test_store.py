"""The run store: rows survive round trips and other connections, WAL is on, history feeds waits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from abebeats_lab.store import DB_NAME, OUTPUTS_DIR, JobRow, RunStore


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
        done = row.evolve(state="succeeded", has_audio=False, duration_ok=True, run_s=1.25, polls=3)
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
    assert left == ["planned", "submitting", "queued", "running", "downloading"]


def test_run_time_prior_is_median_and_scaled_mad_of_successes(tmp_path: Path) -> None:
    with RunStore(tmp_path) as store:
        store.add_run("r1", "2026-11-21T00:00:00+00:00", "compare", {})
        assert store.run_time_prior("local:procedural") is None
        times = [10.0, 12.0, 14.0, 100.0]
        rows = [_row(repeat=i, state="succeeded", run_s=t) for i, t in enumerate(times)]
        rows.append(_row(repeat=9, state="failed", run_s=1.0))
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
    assert latest is not None and (latest.run_id, latest.kind) == ("b", "generate")
