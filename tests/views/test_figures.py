"""Figures that agree: the timing chart, the tables, the cost figures and the panel, from real runs.

Every run goes through the real runner: ``local:procedural`` renders on this machine, the other
routes are served by the built-in emulators on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import re
import socket
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from abebeats_lab import Settings
from abebeats_lab.errors import CostLimitError
from abebeats_lab.run.api import compare, load_run
from abebeats_lab.views import plots
from abebeats_lab.views.comparison import Comparison
from abebeats_lab.views.report import write_report
from abebeats_lab.widgets import ControlPanel

LOCAL, RUNWAY = "local:procedural", "runway:gen4.5"
REPLICATE = "replicate:google/veo-3-fast"
PROMPTS = ["a kite over dunes", "a boat at night", "a lamp in the rain"]
FOUR_SECONDS = Settings(duration_s=4)
MAIN_BAR_HEIGHT = 0.8
"""The height of a timing chart's main bars (the thin ones inside a submit are lower)."""


@pytest.fixture(scope="module")
def held_and_local(tmp_path_factory: pytest.TempPathFactory) -> Comparison:
    """Replicate (whose create is held open until the prediction ends) and the local renderer."""
    directory = tmp_path_factory.mktemp("held")
    return asyncio.run(
        compare(PROMPTS, [REPLICATE, LOCAL], FOUR_SECONDS, emulate=True, run_dir=directory)
    )


class _Summary(HTMLParser):
    """The cells of each row of the report's per-route summary table."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._inside = dict(attrs).get("id") == "summary-per-route"
        elif self._inside and tag == "tr":
            self.rows.append([])
        elif self._inside and tag == "td":
            self.rows[-1].append("")

    def handle_data(self, data: str) -> None:
        if self._inside and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def summary_cells(report: Path) -> dict[str, list[str]]:
    """The report's summary cells per route (route, jobs, times..., price, cost)."""
    parser = _Summary()
    parser.feed(report.read_text(encoding="utf-8"))
    return {cells[0].split()[0]: [c.strip() for c in cells] for cells in parser.rows if cells}


def report_summary(run_dir: Path) -> dict[str, str]:
    """Report summary line per route, written from ``run_dir`` as the user's command would."""
    return {
        route: "  ".join(cells) for route, cells in summary_cells(write_report(run_dir)).items()
    }


def drawn_bar_lengths(comparison: Comparison) -> dict[str, float]:
    """What the timing chart draws: the summed width of each label's main bar segments."""
    ax = plots.timing_figure(comparison.to_pandas()).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    lengths = dict.fromkeys(labels, 0.0)
    for patch in ax.patches:
        if patch.get_height() == pytest.approx(MAIN_BAR_HEIGHT):
            lengths[labels[round(patch.get_y() + patch.get_height() / 2)]] += patch.get_width()
    return lengths


def test_a_held_create_is_drawn_inside_its_submit_and_bars_equal_the_tables(
    held_and_local: Comparison,
) -> None:
    replicate = [r for r in held_and_local.rows if r.route == REPLICATE]
    assert all(r.state == "succeeded" for r in held_and_local.rows)
    # The case the issue saw: submit covers queue and run, so stacking them double counts.
    assert all(
        (r.timing.submit_s or 0) >= (r.timing.queue_s or 0) + (r.timing.run_s or 0)
        for r in replicate
    )
    summary = held_and_local.summary()
    stacked = sum(summary.loc[REPLICATE, f"median_{p}_s"] for p in ("queue", "run"))
    assert (
        stacked + min(r.timing.submit_s or 0 for r in replicate)
        > summary.loc[REPLICATE, "median_total_s"]
    )

    drawn = drawn_bar_lengths(held_and_local)
    in_report = report_summary(held_and_local.run_dir or Path())
    cli_text = held_and_local.summary_text()
    for route, emulated in ((REPLICATE, True), (LOCAL, False)):
        median = summary.loc[route, "median_total_s"]
        assert drawn[plots.route_label(route, emulated)] == pytest.approx(median, abs=1e-6)
        assert f"{median:.2f}s" in in_report[route]
        assert any(
            line.startswith(route) and f"{median:.2f}s" in line for line in cli_text.splitlines()
        )

    bars = {bar.label: bar for bar in plots.timing_bars(held_and_local.rows)}
    held = bars[plots.route_label(REPLICATE, True)]
    assert "run_s" in held.inside_submit  # the run is drawn as what it was: inside the create call
    assert held.parts["run_s"] < min(r.timing.run_s or 0 for r in replicate)
    local = bars[LOCAL]
    if all((r.timing.detect_lag_s or 0) > 0 for r in held_and_local.rows if r.route == LOCAL):
        assert local.parts["detect_lag_s"] > 0  # the lag is in the bar, not left out


def test_an_even_number_of_jobs_averages_the_two_middle_ones(held_and_local: Comparison) -> None:
    two = [r for r in held_and_local.rows if r.prompt_index < 2]
    bars = {bar.label: bar for bar in plots.timing_bars(two)}
    for route, emulated in ((REPLICATE, True), (LOCAL, False)):
        totals = [r.timing.total_s or 0 for r in two if r.route == route]
        bar = bars[plots.route_label(route, emulated)]
        assert sum(bar.parts.values()) == pytest.approx(sum(totals) / 2)
        assert bar.total_s == pytest.approx(sum(totals) / 2)


async def test_a_known_price_shows_even_when_every_job_failed(
    tmp_path: Path, failing_runway: None
) -> None:
    result = await compare(PROMPTS[:1], [RUNWAY, LOCAL], FOUR_SECONDS, run_dir=tmp_path / "run")
    runway = next(r for r in result.rows if r.route == RUNWAY)
    assert runway.state == "failed"
    assert result.summary().loc[RUNWAY, "price_usd_per_s"] == pytest.approx(0.12)
    assert "$0.120/s" in report_summary(tmp_path / "run")[RUNWAY]
    chart = plots.cost_figure(result.to_pandas()).axes[0]
    notes = [text.get_text() for text in chart.texts]
    assert "$0.120/s" in notes and "unknown price" not in notes


async def test_an_unknown_price_says_unknown_in_every_view(tmp_path: Path) -> None:
    result = await compare(
        PROMPTS[:1], [REPLICATE, LOCAL], FOUR_SECONDS, emulate=True, run_dir=tmp_path / "run"
    )
    line = next(x for x in result.summary_text().splitlines() if x.startswith(REPLICATE))
    assert "unknown" in line and "$0.000/s" not in line
    assert "no price known for " + REPLICATE in result.summary_text().replace("\n  ", " ")
    report_line = report_summary(tmp_path / "run")[REPLICATE]
    assert "unknown" in report_line and "$0.000" not in report_line
    chart = plots.cost_figure(result.to_pandas()).axes[0]
    assert [t.get_text() for t in chart.texts] == ["free", "unknown price"]  # local, replicate
    assert plots.cost_per_second(result.to_pandas())["usd_per_s"].isna().tolist() == [False, True]


async def test_emulated_runs_skip_the_cost_limit_and_say_what_it_would_cost() -> None:
    with pytest.raises(CostLimitError):
        await compare(PROMPTS[:1], [RUNWAY], FOUR_SECONDS, max_cost_usd=0.01, dry_run=True)
    plan = await compare(
        PROMPTS[:1], [RUNWAY], FOUR_SECONDS, max_cost_usd=0.01, dry_run=True, emulate=True
    )
    (note,) = plan.notes
    assert "emulated runs are free" in note and "$0.48" in note and "over the limit" in note


async def test_a_user_price_lets_the_cost_limit_pass_and_is_recorded(tmp_path: Path) -> None:
    with pytest.raises(CostLimitError, match="--price"):
        await compare(PROMPTS[:1], [REPLICATE], FOUR_SECONDS, max_cost_usd=5.0, dry_run=True)
    plan = await compare(
        PROMPTS[:1],
        [REPLICATE],
        FOUR_SECONDS,
        max_cost_usd=5.0,
        dry_run=True,
        prices={REPLICATE: 0.1},
    )
    (row,) = plan.rows
    assert (row.cost_estimate_usd, row.price_source) == (pytest.approx(0.4), "user")
    assert "$0.40" in plan.describe_plan() and "(user price)" in plan.describe_plan()
    result = await compare(
        PROMPTS[:1], [REPLICATE], FOUR_SECONDS, emulate=True, prices={REPLICATE: 0.1},
        run_dir=tmp_path / "run",
    )  # fmt: skip
    assert "$0.100/s (user price)" in report_summary(tmp_path / "run")[REPLICATE]
    assert result.summary().loc[REPLICATE, "price_source"] == "user"


async def test_the_report_shows_settings_as_columns_and_figures_for_people(tmp_path: Path) -> None:
    pika = "pika:fal-ai/pika/v2.2/text-to-video"
    await compare(
        PROMPTS[:1], [pika, LOCAL], FOUR_SECONDS, emulate=True, adapt=True, run_dir=tmp_path
    )
    text = write_report(tmp_path).read_text(encoding="utf-8")
    settings = text[text.index('id="request-settings"') : text.index('id="summary-per-route"')]
    assert "<th>duration</th><th>ratio</th><th>resolution</th>" in settings
    assert '<td class="adjusted"' in settings and "5s (asked 4s)" in settings
    assert "{" not in settings  # no raw JSON dict
    visible = re.sub(r"<svg.*?</svg>|<[^>]+>|data:[^\"']+", " ", text, flags=re.S)
    assert not re.search(r"\bnan\b|\bNone\b(?!: every)|\d\.0×", visible)
    assert re.search(r"\d+×\d+,", visible)


async def test_the_panel_shows_the_same_price_per_second(tmp_path: Path) -> None:
    routes = (LOCAL, REPLICATE, RUNWAY)
    panel = ControlPanel(
        routes, selected=routes, emulate=True, runs_dir=tmp_path, prompt=PROMPTS[0]
    )
    panel.duration.value = 4
    panel.generate_button.click()
    await panel.wait()
    summary = load_run(panel.comparison.run_dir).summary()
    cells = [c for c in _find(panel.results, "VBox") if "abebeats-cell" in c._dom_classes]
    by_route = {
        route: next(_html(c) for c in cells if f"<code>{route}</code>" in _html(c))
        for route in (LOCAL, REPLICATE, RUNWAY)
    }
    assert "price unknown" in by_route[REPLICATE] and "$0.000/s" not in by_route[REPLICATE]
    assert f"price ${summary.loc[RUNWAY, 'price_usd_per_s']:.3f}/s" in by_route[RUNWAY]
    assert "price free" in by_route[LOCAL]  # local is free, and says so
    assert not re.search(r"\bnan\b|\bNone\b", " ".join(by_route.values()))


def _find(widget: Any, type_name: str) -> list[Any]:
    """Every descendant widget of one type, depth first (what a reader would see)."""
    found = [widget] if type(widget).__name__ == type_name else []
    for child in getattr(widget, "children", ()):
        found += _find(child, type_name)
    return found


def _html(widget: Any) -> str:
    return " ".join(str(h.value) for h in _find(widget, "HTML"))


async def test_a_job_that_never_reached_the_provider_costs_nothing_in_every_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create refused by the network makes no job: the row, the frame and the summary say $0."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("RUNWAYML_API_SECRET", "key_" + "0" * 64)
    monkeypatch.setenv("RUNWAYML_BASE_URL", f"http://127.0.0.1:{closed}")
    result = await compare("a kite", [RUNWAY], FOUR_SECONDS, run_dir=tmp_path)
    [row] = result.rows
    assert (row.state, row.job_id) == ("failed", None), row.error
    assert (row.cost_usd, row.cost_note) == (0.0, "no job made: not charged")
    assert row.cost_estimate_usd == pytest.approx(0.48)  # what it would have cost, kept
    assert result.to_pandas()["cost_usd"].tolist() == [0.0]
    [line] = result.summary().to_dict("records")
    assert line["cost_usd"] == 0.0
    assert load_run(tmp_path).rows == result.rows
