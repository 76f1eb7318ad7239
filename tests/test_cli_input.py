"""Bad input on the command line: exit 2 with one line that names the mistake and where it came
from, nothing sent (a misspelt price, flag, run id or route, repeats 0, a missing key, a cost
over --max-cost); help that says only what applies; a summary that never cuts a route mid-word.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _runner_support import LOCAL, REPLICATE, RUNWAY, run_cli

from abebeats_lab.run.api import list_runs

EXIT_BAD_INPUT = 2
TERMINAL_COLUMNS = 100
LONG_ROUTES = (
    "fal:fal-ai/kling-video/v3/standard/text-to-video",
    "fal:fal-ai/minimax/hailuo-2.3/standard/text-to-video",
    "replicate:wan-video/wan-2.5-t2v",
)
"""Routes long enough that the summary's route column must wrap, none with a known price."""
COMMANDS = ("demo", "generate", "compare", "resume", "report", "score", "runs", "routes",
            "emulate", "history", "music-video")  # fmt: skip
JOB_FOOTER = "0    success: every job of the run succeeded"


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a command refused as bad input."""
    assert done.returncode == EXIT_BAD_INPUT, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    return line


def user_prices(text: str) -> Path:
    folder = Path(os.environ["ABEBEATS_LAB_CONFIG_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- prices -------------------------------------------------------------------------------


def test_a_price_for_no_route_of_the_run_is_refused_naming_the_option(tmp_path: Path) -> None:
    typo = "replicate:google/veo-3-fsat"
    args = ("compare", "a kite", "--route", REPLICATE, "--dry-run", "--emulate")
    line = refused(run_cli(*args, "--price", f"{typo}=0.15", cwd=tmp_path))
    assert "--price" in line and typo in line and REPLICATE in line
    fixed = run_cli(*args, "--price", f"{REPLICATE}=0.15", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    made = run_cli(
        "generate", "a kite", "--route", LOCAL, "--price", f"{typo}=0.1", "--run-dir", "run",
        cwd=tmp_path,
    )  # fmt: skip
    assert typo in refused(made) and not (tmp_path / "run").exists()  # nothing ran


def test_a_price_for_a_route_that_cannot_exist_names_its_source(tmp_path: Path) -> None:
    option = refused(
        run_cli(
            "compare", "a kite", "--route", RUNWAY, "--price", "runway:gen45=0.3", "--dry-run",
            cwd=tmp_path,
        )
    )  # fmt: skip
    assert "--price runway:gen45=0.3" in option and RUNWAY in option  # the close, real one
    # prices.toml is a catalogue that may outlive a route: its line is named, and ignored
    path = user_prices(f'"runway:gen45" = 0.2\n"{RUNWAY}" = 0.2\n')
    for command in (("compare", "a kite", "--route", RUNWAY, "--dry-run"), ("routes",)):
        done = run_cli(*command, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        [line] = [line for line in done.stderr.splitlines() if "runway:gen45" in line]
        assert str(path) in line and RUNWAY in line and "ignored" in line
        assert "$0.200/s" in done.stdout  # the file's other price still applies


def test_prices_toml_may_price_routes_the_run_does_not_use(tmp_path: Path) -> None:
    user_prices(f'"{RUNWAY}" = 0.2\n"replicate:someone/any-model" = 0.1\n"fal:*" = 0.3\n')
    done = run_cli("compare", "a kite", "--route", LOCAL, "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    user_prices('"runwya:*" = 0.2\n')  # no such provider: named, ignored
    done = run_cli("routes", cwd=tmp_path)
    assert done.returncode == 0 and "runwya:*" in done.stderr, done.stderr


# -- exit codes ---------------------------------------------------------------------------


def test_repeats_0_names_the_allowed_range(tmp_path: Path) -> None:
    line = refused(run_cli("compare", "a kite", "--route", LOCAL, "--repeats", "0", cwd=tmp_path))
    assert "repeats=0" in line and "1 or more" in line
    assert not (tmp_path / "abebeats-runs").exists()


def test_a_missing_key_exits_2_by_route_and_by_model(tmp_path: Path) -> None:
    by_route = refused(run_cli("compare", "a kite", "--route", RUNWAY, cwd=tmp_path))
    assert "RUNWAYML_API_SECRET" in by_route and "--emulate" in by_route
    by_model = refused(run_cli("compare", "a kite", "--model", "veo-3.1-fast", cwd=tmp_path))
    assert "veo-3.1-fast" in by_model and "FAL_KEY" in by_model and "--emulate" in by_model
    assert not (tmp_path / "abebeats-runs").exists()


def test_a_cost_over_max_cost_exits_2(tmp_path: Path) -> None:
    line = refused(
        run_cli("compare", "a kite", "--route", RUNWAY, "--max-cost", "0.01", cwd=tmp_path)
    )
    assert "over the limit $0.01" in line and "nothing was submitted" in line


def test_a_misspelt_flag_shows_its_command_usage_and_the_close_flag(tmp_path: Path) -> None:
    done = run_cli("compare", "a kite", "--route", LOCAL, "--duraton", "4", cwd=tmp_path)
    assert done.returncode == EXIT_BAD_INPUT
    assert done.stderr.startswith("usage: abebeats-lab compare ")
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == [
        "abebeats-lab compare: error: unrecognized arguments: --duraton 4 "
        "(did you mean --duration?)"
    ]
    stray = run_cli("runs", "run", "--jsno", cwd=tmp_path)
    assert stray.returncode == EXIT_BAD_INPUT and "usage: abebeats-lab runs " in stray.stderr
    assert stray.stderr.strip().splitlines()[-1].endswith("unrecognized arguments: --jsno")


def test_history_refuses_a_route_that_is_not_one(tmp_path: Path) -> None:
    for extra in ((), ("--clear",)):
        line = refused(run_cli("history", *extra, "--route", "runway:gen45", cwd=tmp_path))
        assert "runway:gen45" in line and RUNWAY in line
    known = run_cli("history", "--route", RUNWAY, cwd=tmp_path)
    assert known.returncode == 0, known.stderr
    assert f"no run times recorded for {RUNWAY} yet" in known.stdout


# -- help ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_empty_default_and_only_the_exit_codes_that_apply(
    tmp_path: Path, command: str
) -> None:
    done = run_cli(command, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(default: [])" not in done.stdout
    footer = done.stdout[done.stdout.index("exit codes:") :]
    submits = command in ("demo", "generate", "compare", "resume", "music-video")
    assert (JOB_FOOTER in footer) == submits, footer


# -- the summary --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An emulated run of three long-named, unpriced routes: (folder, its stdout)."""
    home = tmp_path_factory.mktemp("wide")
    routes = [a for r in LONG_ROUTES for a in ("--route", r)]
    done = run_cli("compare", "a kite", *routes, "--emulate", "--run-dir", "run", cwd=home)
    assert done.returncode == 0, done.stderr[-2000:]
    return home / "run", done.stdout


def test_the_summary_wraps_a_long_route_between_its_parts(wide_run: tuple[Path, str]) -> None:
    _, out = wide_run
    lines = out.splitlines()
    assert all(len(line) <= TERMINAL_COLUMNS for line in lines), max(lines, key=len)
    table = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("median, p90"))]
    for route in LONG_ROUTES:
        first = next(i for i, line in enumerate(table) if route.startswith(line.split()[0]))
        cell = table[first].split()[0]
        if cell != route:  # wrapped: after a "/", the rest on the next line, alone
            assert cell.endswith("/") and table[first + 1].split() == [route[len(cell) :], "*"]
    assert "at least $0.00" not in out
    assert "would cost an unknown amount (no price known for" in " ".join(out.split())


def test_a_run_id_that_is_not_there_lists_the_ids(wide_run: tuple[Path, str]) -> None:
    run_dir, _ = wide_run
    (run,) = list_runs(run_dir)
    for command in (("report",), ("score", "--no-clip"), ("resume",)):
        done = run_cli(*command, str(run_dir), "--run", "nope", cwd=run_dir.parent)
        line = refused(done)
        assert "'nope'" in line and run.run_id in line.partition("allowed:")[2], line
