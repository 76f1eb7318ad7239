"""Several runs in one folder, and exit codes that tell success from failure (issue 17: 6, 9).

A folder that holds a good run and then an empty one (a run that stopped before planning any
job) must still report and resume the good one, list both, and never crash on the empty one.
`compare`, `resume` and `demo` exit 0 only when every job succeeded and say so on the last
line. Everything runs as a user runs it: the CLI as a subprocess, or the public API.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _runner_support import FAST, LOCAL, SMALL, run_cli

from abebeats_lab import compare, generate, load_run, resume, write_report
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.errors import LabError, ValidationError
from abebeats_lab.run.api import list_runs
from abebeats_lab.store import RunStore

RUNWAY = "runway:gen4.5"
PIKA = "pika:fal-ai/pika/v2.2/text-to-video"
EMPTY_RUN = "20991231T235959Z-empty0"
"""Sorts after any real run id: the latest run of the folder, and it has no jobs."""


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    return line


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A folder with a good one-job run, then an empty run after it; returns (folder, good id)."""
    home = tmp_path_factory.mktemp("runs")
    done = run_cli("compare", "a kite", "--route", PIKA, "--emulate", "--run-dir", "run", cwd=home)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "all 1 job(s) succeeded"
    (good,) = list_runs(home / "run")
    with RunStore(home / "run") as store:  # what a compare that failed before planning left
        store.add_run(EMPTY_RUN, "2099-12-31T23:59:59+00:00", "compare", {"prompts": []})
    return home / "run", good.run_id


def test_runs_lists_every_run_with_its_jobs_and_states(two_runs: tuple[Path, str]) -> None:
    run_dir, good = two_runs
    done = run_cli("runs", str(run_dir), cwd=run_dir.parent)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["run", "created", "(UTC)", "kind", "jobs", "states"]
    assert lines[1].split()[0] == good and lines[1].split()[-2:] == ["1", "succeeded"]
    assert lines[2].split()[0] == EMPTY_RUN and lines[2].split()[-2:] == ["0", "-"]
    assert lines[-1].startswith(f"report and resume use {good}")
    listed = list_runs(run_dir)
    assert [(r.run_id, r.jobs, r.states) for r in listed] == [
        (good, 1, {"succeeded": 1}),
        (EMPTY_RUN, 0, {}),
    ]


def test_an_empty_latest_run_does_not_hide_the_good_one(two_runs: tuple[Path, str]) -> None:
    run_dir, good = two_runs
    out = run_dir.parent / "good.html"
    report = run_cli("report", str(run_dir), "--out", str(out), cwd=run_dir.parent)
    assert report.returncode == 0, report.stderr
    assert good in out.read_text(encoding="utf-8")
    again = run_cli("resume", str(run_dir), "--emulate", cwd=run_dir.parent)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == "all 1 job(s) succeeded"
    assert load_run(run_dir).run_id == good


@pytest.mark.parametrize("command", ["report", "resume"])
def test_an_empty_run_or_an_unknown_id_is_one_line(
    two_runs: tuple[Path, str], command: str
) -> None:
    run_dir, good = two_runs
    empty = run_cli(command, str(run_dir), "--run", EMPTY_RUN, cwd=run_dir.parent)
    assert empty.returncode == 1
    assert f"run {EMPTY_RUN}" in one_line(empty) and "has no jobs" in one_line(empty)
    unknown = run_cli(command, str(run_dir), "--run", "nope", cwd=run_dir.parent)
    assert unknown.returncode == 2  # bad input: the ids there are listed
    assert "'nope'" in one_line(unknown) and "abebeats-lab runs" in one_line(unknown)
    assert EMPTY_RUN in one_line(unknown) and good in one_line(unknown)
    assert not (run_dir / "report.html").exists()


def test_the_python_api_takes_a_run_id(two_runs: tuple[Path, str]) -> None:
    run_dir, good = two_runs
    assert len(load_run(run_dir, EMPTY_RUN)) == 0
    assert [r.state for r in load_run(run_dir, good).rows] == ["succeeded"]
    with pytest.raises(LabError, match="has no jobs"):
        write_report(run_dir, run_id=EMPTY_RUN)
    with pytest.raises(LabError, match="has no jobs"):
        asyncio.run(resume(run_dir, run_id=EMPTY_RUN, emulate=True))
    with pytest.raises(ValidationError, match="'nope'.*" + EMPTY_RUN):
        load_run(run_dir, "nope")
    path = write_report(run_dir, run_dir.parent / "api.html", run_id=good)
    assert good in path.read_text(encoding="utf-8")


async def test_a_run_id_given_names_the_run_and_must_be_new_in_its_folder(
    tmp_path: Path,
) -> None:
    first = await compare("a kite", [LOCAL], SMALL, run_id="kite-1", policy=FAST)
    assert first.run_id == "kite-1" and {r.run_id for r in first.rows} == {"kite-1"}
    assert first.run_dir is not None and first.run_dir.name == "kite-1"  # the default folder
    with pytest.raises(ValidationError, match="kite-1"):
        await generate("a kite", [LOCAL], SMALL, run_dir=first.run_dir, run_id="kite-1")
    assert [r.run_id for r in list_runs(first.run_dir)] == ["kite-1"]  # nothing was added
    assert load_run(first.run_dir).rows == first.rows
    made = await generate("a kite", [LOCAL], SMALL, run_dir=first.run_dir, run_id="kite-2")
    assert made.row.run_id == "kite-2"


def test_a_folder_of_empty_runs_says_so_in_one_line(tmp_path: Path) -> None:
    with RunStore(tmp_path / "run") as store:
        store.add_run(EMPTY_RUN, "2099-12-31T23:59:59+00:00", "compare", {})
    for command in ("report", "resume"):
        done = run_cli(command, "run", cwd=tmp_path)
        assert done.returncode == 1 and "no run with jobs" in one_line(done)
    listed = run_cli("runs", "run", cwd=tmp_path)
    assert listed.returncode == 0 and EMPTY_RUN in listed.stdout


# -- exit codes --------------------------------------------------------------------------


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    """A Runway emulator whose jobs all fail, reached as a user reaches a real provider."""
    with Emulators(("runway",), Scenario.fast(fail=True)) as emulators:
        for name, value in emulators.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("RUNWAYML_API_SECRET", "key_" + "0" * 128)
        yield emulators


def test_compare_exits_1_when_a_job_failed_and_says_so(failing: Emulators, tmp_path: Path) -> None:
    done = run_cli("compare", "a kite", "--route", RUNWAY, "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        done.stdout.strip().splitlines()[-1]
        == "1 of 1 job(s) did not succeed (1 failed): exit code 1"
    )
    assert failing.states["runway"].count("create") == 1

    as_json = run_cli(
        "compare", "a kite", "--route", RUNWAY, "--run-dir", "run2", "--json", cwd=tmp_path
    )
    assert as_json.returncode == 1
    assert [row["state"] for row in json.loads(as_json.stdout)] == ["failed"]  # stdout stays JSON
    assert as_json.stderr.strip().splitlines()[-1].startswith("1 of 1 job(s) did not succeed")

    resumed = run_cli("resume", "run", cwd=tmp_path)  # nothing to do, and still not a success
    assert resumed.returncode == 1
    assert resumed.stdout.strip().splitlines()[-1].endswith("exit code 1")
    assert failing.states["runway"].count("create") == 2


def test_a_dry_run_exits_0_and_the_help_lists_the_codes(tmp_path: Path) -> None:
    done = run_cli("compare", "a kite", "--route", RUNWAY, "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    helped = run_cli("compare", "--help", cwd=tmp_path).stdout
    assert "0    success: every job of the run succeeded" in helped
    assert "1    failure: a job failed, was cancelled, is ambiguous or unfinished" in helped


SCRIPT_WITHOUT_MAIN_GUARD = """
from abebeats_lab import Settings, compare, run_sync
run_sync(compare(["a kite"], ["local:procedural"], Settings(duration_s=1, resolution="360p"),
                 run_dir="out", score=True))
print("ran")
"""


def test_a_script_without_a_main_guard_is_not_run_again_by_the_scoring_workers(
    tmp_path: Path,
) -> None:
    """Scoring spawns workers, and spawn imports the main script again in each: without the
    guard, each worker would start (and pay for) the whole comparison once more."""
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT_WITHOUT_MAIN_GUARD)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.stdout.count("ran") == 1, done.stderr
    assert len(list_runs(tmp_path / "out")) == 1  # the workers started no run of their own
    assert "if __name__ ==" in done.stderr  # and the refusal says how to write the script
    refusals = [line for line in done.stderr.splitlines() if "if __name__ ==" in line]
    assert refusals and "Traceback" not in done.stderr, done.stderr  # a line, not a traceback
    assert done.stderr.count("could not be scored") == 1, done.stderr  # said once
