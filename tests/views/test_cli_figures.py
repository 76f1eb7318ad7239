"""The CLI's figures as a user reads them: a summary that fits, prices that agree, user prices."""

from __future__ import annotations

import os
import re
from pathlib import Path

from _runner_support import run_cli
from test_figures import summary_cells

from abebeats_lab.run.api import load_run

LOCAL, RUNWAY = "local:procedural", "runway:gen4.5"
PIKA = "pika:fal-ai/pika/v2.2/text-to-video"
REPLICATE = "replicate:google/veo-3-fast"
VEO = "veo:veo-3.1-fast-generate-001"
TERMINAL_COLUMNS = 100
PRICE = re.compile(r"\$\d+\.\d{3}/s|unknown|\bfree\b")
FREE_LINE = "emulated runs are free"


def _price_in(line: str) -> str:
    found = PRICE.findall(line)
    assert len(found) == 1, line
    return found[0]


def _line_of(route: str, lines: list[str]) -> str:
    return next(line for line in lines if line.startswith(route))


def test_compare_summary_fits_100_columns_and_agrees_with_the_report(tmp_path: Path) -> None:
    routes = [LOCAL, RUNWAY, REPLICATE, VEO, PIKA]
    done = run_cli(
        "compare", "a kite", "a boat", *(a for r in routes for a in ("--route", r)),
        "--duration", "4", "--emulate", "--adapt", "--max-cost", "0.5", "--run-dir", "run",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= TERMINAL_COLUMNS for line in lines), max(lines, key=len)
    assert not re.search(r"\bnan\b|\bNaN\b|\bNone\b", done.stdout, flags=re.I)
    cli = {route: _price_in(_line_of(route, lines)) for route in routes}
    assert cli[PIKA] == "$0.040/s"  # 5 s asked (adapted from 4) at $0.20 per 5 s
    assert (cli[RUNWAY], cli[REPLICATE], cli[LOCAL]) == ("$0.120/s", "unknown", "free")
    # --max-cost with --emulate: one line that says why it does not apply, and the real cost.
    (note,) = [line for line in done.stderr.splitlines() if FREE_LINE in line]
    assert "$0.50" in note and "would cost at least $" in note and REPLICATE in note
    assert "at least $0.00" not in done.stdout + done.stderr

    report = run_cli("report", "run", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    in_report = summary_cells(Path(report.stdout.strip()))
    for route in routes:
        assert _price_in(in_report[route][6]) == cli[route], route
    medians = load_run(tmp_path / "run").summary()["median_total_s"]
    for route in routes:
        assert f"{medians[route]:.2f}s" in _line_of(route, lines)


def test_a_price_option_lets_max_cost_bound_an_unpriced_route(tmp_path: Path) -> None:
    args = ("compare", "a kite", "--route", REPLICATE, "--duration", "4", "--max-cost", "5")
    refused = run_cli(*args, "--dry-run", cwd=tmp_path)
    assert refused.returncode == 2  # nothing was submitted: bad input
    (line,) = refused.stderr.strip().splitlines()
    assert f"no price known for {REPLICATE}" in line and "--price" in line
    priced = run_cli(*args, "--price", f"{REPLICATE}=0.1", "--dry-run", cwd=tmp_path)
    assert priced.returncode == 0, priced.stderr
    assert "$0.40" in priced.stdout and "user price" in priced.stdout
    assert "estimated cost $0.40" in priced.stdout


def test_prices_in_the_user_config_file_are_used_and_shown(tmp_path: Path) -> None:
    folder = Path(os.environ["ABEBEATS_LAB_CONFIG_DIR"])
    folder.mkdir(parents=True)
    (folder / "prices.toml").write_text(f'"{REPLICATE}" = 0.05\n', encoding="utf-8")
    routes = run_cli("routes", cwd=tmp_path)
    assert routes.returncode == 0, routes.stderr
    assert "$0.050/s" in _line_of(REPLICATE + " ", routes.stdout.splitlines())
    assert f"your price (prices.toml or --price): {REPLICATE}" in routes.stdout
    plan = run_cli(
        "compare", "a kite", "--route", REPLICATE, "--duration", "4", "--dry-run", cwd=tmp_path
    )
    assert plan.returncode == 0, plan.stderr
    assert "$0.20" in plan.stdout and "$0.050/s (user price)" in plan.stdout
    wins = run_cli(
        "compare", "a kite", "--route", REPLICATE, "--duration", "4", "--dry-run",
        "--price", f"{REPLICATE}=0.1", cwd=tmp_path,
    )  # fmt: skip
    assert "$0.40" in wins.stdout and "$0.100/s (user price)" in wins.stdout
    (folder / "prices.toml").write_text(f'"{REPLICATE}" = "cheap"\n', encoding="utf-8")
    broken = run_cli("routes", cwd=tmp_path)
    assert broken.returncode == 2
    (line,) = broken.stderr.strip().splitlines()
    assert "prices.toml" in line and REPLICATE in line


def test_a_bad_price_option_is_one_line(tmp_path: Path) -> None:
    done = run_cli(
        "compare", "a kite", "--route", LOCAL, "--price", f"{REPLICATE}=lots", cwd=tmp_path
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "ROUTE=USD_PER_S" in line


def test_generate_records_a_user_price(tmp_path: Path) -> None:
    done = run_cli(
        "generate", "a kite", "--route", REPLICATE, "--emulate", "--duration", "4",
        "--price", f"{REPLICATE}=0.1", "--run-dir", "run", "--out", "kite.mp4", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = load_run(tmp_path / "run").rows
    assert (row.price_source, row.cost_estimate_usd, row.cost_usd) == ("user", 0.4, 0.0)
