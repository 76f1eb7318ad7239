"""The HTML report and its charts, written from real runs (local renderer + loopback emulators)."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from _runner_support import run_cli

from abebeats_lab import Settings
from abebeats_lab.quality.metrics import METRICS, QUALITY_DB, score
from abebeats_lab.quality.votes import VOTES_DB, Vote, VoteStore
from abebeats_lab.run.api import compare, load_run
from abebeats_lab.views import plots
from abebeats_lab.views.report import DEFAULT_NAME, write_report

LOCAL, RUNWAY = "local:procedural", "runway:gen4.5"
PROMPTS = ["a red fox in snow", "rain on a leaf"]
SETTINGS = Settings(duration_s=2, resolution="720p")
# Anything a browser would fetch from elsewhere: src/href attributes and CSS url(...).
EXTERNAL = re.compile(
    r"""(?:src|href)\s*=\s*["'](?:https?:)?//|url\(\s*["']?(?:https?:)?//""", re.I
)
FAILURE_TEXT = "The generation failed (emulated)."


class _Sections(HTMLParser):
    """Text and start tags per report section (``<section id=...>``)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.tags: dict[str, list[tuple[str, dict[str, str | None]]]] = {}
        self.rows: dict[str, list[str]] = {}
        """Text of each table row, per section."""
        self._current = "header"
        self._in_row = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            self._current = str(values["id"])
        self.tags.setdefault(self._current, []).append((tag, values))
        if tag == "tr":
            self.rows.setdefault(self._current, []).append("")
            self._in_row = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._in_row = False

    def handle_data(self, data: str) -> None:
        self.text[self._current] = self.text.get(self._current, "") + data
        if self._in_row:
            self.rows[self._current][-1] += data + " "


def _parse(path: Path) -> _Sections:
    parser = _Sections()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _rows_text(section: str, parser: _Sections) -> list[str]:
    return parser.rows[section]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished comparison: two prompts × (local, emulated Runway)."""
    directory = tmp_path_factory.mktemp("run")
    asyncio.run(compare(PROMPTS, [LOCAL, RUNWAY], SETTINGS, run_dir=directory, emulate=True))
    return directory


def test_report_is_one_file_that_needs_no_network(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / DEFAULT_NAME
    text = path.read_text(encoding="utf-8")
    assert not EXTERNAL.search(text)
    parser = _parse(path)
    videos = [a for tag, a in parser.tags["videos"] if tag == "video"]
    assert len(videos) == len(PROMPTS) * 2
    assert all(str(a["src"]).startswith("data:video/mp4;base64,") for a in videos)
    for section in ("timing-breakdown", "cost-per-second-of-video"):
        assert [tag for tag, _ in parser.tags[section]].count("svg") == 1
    for section in ("request-settings", "summary-per-route", "output-conformance", "environment"):
        assert section in parser.text
    assert "every job succeeded" in parser.text["failures"]


def test_emulated_figures_carry_the_label_everywhere(run_dir: Path) -> None:
    parser = _parse(write_report(run_dir))
    assert "emulated" in parser.text["header"]
    for section in ("summary-per-route", "output-conformance"):
        lines = _rows_text(section, parser)
        runway = [line for line in lines if line.startswith(RUNWAY)]
        local = [line for line in lines if line.startswith(LOCAL)]
        assert runway and all("emulated" in line for line in runway), section
        assert local and not any("emulated" in line for line in local), section
    frame = load_run(run_dir).to_pandas()
    labels = [t.get_text() for t in plots.timing_figure(frame).axes[0].get_yticklabels()]
    assert sorted(labels) == [LOCAL, f"{RUNWAY} (emulated)"]
    costs = plots.cost_per_second(frame)
    assert costs.loc[f"{RUNWAY} (emulated)", "usd_per_s"] == pytest.approx(0.12)
    assert bool(costs.loc[f"{RUNWAY} (emulated)", "estimate"])


def test_timing_chart_adds_up_to_the_median_total_of_the_summary(run_dir: Path) -> None:
    comparison = load_run(run_dir)
    frame = comparison.to_pandas()
    table = plots.timing_table(frame)
    assert list(table.columns) == [*plots.TIMING_PHASES, "total_s"]
    medians = comparison.summary()["median_total_s"]
    for route in (LOCAL, RUNWAY):
        label = plots.route_label(route, route == RUNWAY)
        assert table.loc[label, "total_s"] == pytest.approx(medians[route])
        assert table.loc[label, list(plots.TIMING_PHASES)].sum() == pytest.approx(medians[route])
    local = frame[frame["route"] == LOCAL]
    if (local["detect_lag_s"].fillna(0) > 0).all():  # the lag is part of the bar, not left out
        assert table.loc[LOCAL, "detect_lag_s"] > 0
    summary = _rows_text("summary-per-route", _parse(write_report(run_dir)))
    for route in (LOCAL, RUNWAY):
        line = next(line for line in summary if line.startswith(route))
        assert f"{medians[route]:.2f}s" in line


def test_large_videos_are_linked_relative_to_the_report(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "r.html"
    assert write_report(run_dir, out, embed_max_bytes=0) == out
    sources = [str(a["src"]) for tag, a in _parse(out).tags["videos"] if tag == "video"]
    assert len(sources) == len(PROMPTS) * 2
    assert all(not s.startswith(("data:", "/")) for s in sources)
    assert all((out.parent / s).resolve().is_file() for s in sources)


async def test_failures_are_listed_with_their_reasons(tmp_path: Path, failing_runway: None) -> None:
    await compare(PROMPTS[:1], [LOCAL, RUNWAY], SETTINGS, run_dir=tmp_path / "run")
    parser = _parse(write_report(tmp_path / "run"))
    assert RUNWAY in parser.text["failures"] and FAILURE_TEXT in parser.text["failures"]
    assert FAILURE_TEXT in parser.text["videos"]
    assert [tag for tag, _ in parser.tags["videos"]].count("video") == 1
    summary = _rows_text("summary-per-route", parser)
    assert any(line.startswith(RUNWAY) and "0/1" in line for line in summary)


async def test_a_run_where_nothing_succeeded_still_reports(
    tmp_path: Path, failing_runway: None
) -> None:
    await compare(PROMPTS[:1], [RUNWAY], SETTINGS, run_dir=tmp_path / "run")
    parser = _parse(write_report(tmp_path / "run"))
    assert [tag for tag, _ in parser.tags["timing-breakdown"]].count("svg") == 1
    assert FAILURE_TEXT in parser.text["failures"]


# -- the Quality section: metrics, blind votes, and how they agree -----------------------------


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    """The finished run copied, so scores and votes written here stay in this test."""
    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def _vote_for_local(directory: Path, count: int) -> None:
    """A scripted rater who prefers the local render, shown on either side."""
    run_id = load_run(directory).run_id
    with VoteStore(directory) as store:
        for index in range(count):
            left, right = (LOCAL, RUNWAY) if index % 2 else (RUNWAY, LOCAL)
            choice = "tie" if index % 5 == 4 else ("left" if left == LOCAL else "right")
            store.add(Vote(run_id, index % len(PROMPTS), left, right, choice))


def test_without_figures_the_quality_section_says_how_to_get_them(run_copy: Path) -> None:
    parser = _parse(write_report(run_copy))
    assert "No quality figures" in parser.text["quality"]
    assert "abebeats-lab score" in parser.text["quality"]
    frame = load_run(run_copy).to_pandas()
    assert "motion" not in frame.columns and "rating" not in frame.columns
    # Reading never creates the quality or votes stores.
    assert not (run_copy / QUALITY_DB).exists() and not (run_copy / VOTES_DB).exists()


def test_quality_section_shows_metrics_leaderboard_and_agreement(run_copy: Path) -> None:
    _vote_for_local(run_copy, 10)
    parser = _parse(write_report(run_copy, score=True))
    rows = _rows_text("quality", parser)
    metric_rows = {line.split()[0]: line for line in rows if "IQR" in line}
    assert set(metric_rows) <= set(METRICS) and "sharpness" in metric_rows
    motion = metric_rows["motion"]
    assert motion.count("IQR") == 2 and motion.count("n=2") == 2  # one cell per route
    board = [line for line in rows if line.startswith(("1 ", "2 "))]
    assert board[0].split()[1] == LOCAL and board[1].split()[1] == RUNWAY
    assert "emulated" in board[1] and "emulated" not in board[0]
    interval_then_votes = [re.search(r"(\d+) – (\d+) (\d+) ", line) for line in board]
    assert [int(m[3]) for m in interval_then_votes if m] == [10, 10]
    assert "Kendall's tau" in parser.text["quality"]
    agreement = [line for line in rows if line.split()[0] == "motion" and "IQR" not in line]
    assert len(agreement) == 1 and re.search(r"[+-]1\.00", agreement[0])
    assert "Bradley–Terry" in parser.text["quality"]


async def test_metrics_join_the_rows_per_job_and_missing_stays_missing(
    tmp_path: Path, failing_runway: None
) -> None:
    await compare(PROMPTS[:1], [LOCAL, RUNWAY], SETTINGS, run_dir=tmp_path / "run")
    await asyncio.to_thread(score, tmp_path / "run")
    comparison = load_run(tmp_path / "run")
    frame = comparison.to_pandas().set_index("route")
    assert frame.loc[LOCAL, "motion"] > 0 and frame.loc[LOCAL, "sharpness"] > 0
    assert math.isnan(frame.loc[RUNWAY, "motion"])  # failed: never measured, not zero
    summary = comparison.summary()
    assert summary.loc[LOCAL, "median_motion"] == pytest.approx(frame.loc[LOCAL, "motion"])
    assert math.isnan(summary.loc[RUNWAY, "median_motion"])
    assert "rating" not in summary.columns  # no votes: no rating column at all


SCORE_TIMEOUT_S = 300.0
"""Scoring decodes every clip: more time than other CLI commands need."""


def test_score_and_report_score_commands(run_copy: Path, tmp_path: Path) -> None:
    second = Path(shutil.copytree(run_copy, tmp_path / "second"))
    scored = run_cli("score", str(run_copy), "--workers", "1", timeout_s=SCORE_TIMEOUT_S)
    assert scored.returncode == 0, scored.stderr
    lines = scored.stdout.splitlines()
    assert lines[0].split()[:3] == ["route", "clips", "motion"]
    assert any(line.startswith(LOCAL) and " 2/2 " in line for line in lines)
    assert (run_copy / QUALITY_DB).is_file()
    assert "Automatic metrics per route" in _parse(write_report(run_copy)).text["quality"]
    reported = run_cli("report", str(second), "--score", timeout_s=SCORE_TIMEOUT_S)
    assert reported.returncode == 0, reported.stderr
    assert "Automatic metrics per route" in _parse(Path(reported.stdout.strip())).text["quality"]
    refused = run_cli("score", str(second), "--workers", "0", timeout_s=SCORE_TIMEOUT_S)
    assert refused.returncode == 2 and "--workers" in refused.stderr
