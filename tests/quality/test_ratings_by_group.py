"""Ratings per prompt tag or setting: simulated votes whose winner differs by group."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from _runner_support import run_cli

from abebeats_lab.errors import ValidationError
from abebeats_lab.quality.ratings import ELO_SCALE, fit, fit_by, leaderboard
from abebeats_lab.quality.votes import MIXED, UNTAGGED, Vote, VoteStore, grouping
from abebeats_lab.store import JobRow, RunStore
from abebeats_lab.views import report

RUN = "20250101T000000Z-abcdef"
SHARP, SMOOTH = "a:sharp", "b:smooth"
PROMPTS = {0: ("a red kite", "720p"), 1: ("a blue boat", "720p"),
           2: ("rain on neon", "1080p"), 3: ("city at night", "1080p")}  # fmt: skip
TAGS = {"a red kite": "nature", "a blue boat": "nature"}
"""The 1080p prompts are left untagged on purpose."""
GAP = 300.0
"""The winner of a group is this many Elo points stronger: it wins about 85 % of its votes."""
VOTES_PER_PROMPT = 60


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder whose prompts were asked at two resolutions (rows as the runner stores them)."""
    rows = [
        JobRow(RUN, index, route, 0, route.split(":")[0], route.split(":")[1], prompt,
               settings={"prompt": prompt, "resolution": resolution, "duration_s": 5})
        for index, (prompt, resolution) in PROMPTS.items()
        for route in (SHARP, SMOOTH)
    ]  # fmt: skip
    with RunStore(tmp_path) as store:
        store.add_run(RUN, datetime.now(UTC).isoformat(), "compare", {})
        store.insert(rows)
    return tmp_path


def simulate(seed: int = 0) -> list[Vote]:
    """SHARP is GAP points better at 720p, SMOOTH GAP points better at 1080p (Bradley–Terry)."""
    rng = random.Random(seed)
    p_sharp = {
        "720p": 1 / (1 + 10 ** (-GAP / ELO_SCALE)),
        "1080p": 1 / (1 + 10 ** (GAP / ELO_SCALE)),
    }
    votes = []
    for index, (_, resolution) in PROMPTS.items():
        for _ in range(VOTES_PER_PROMPT):
            left, right = rng.sample([SHARP, SMOOTH], 2)
            sharp_wins = rng.random() < p_sharp[resolution]
            choice = "left" if (left == SHARP) == sharp_wins else "right"
            votes.append(Vote(RUN, index, left, right, choice))
    return votes


def test_each_setting_gets_its_own_fit_with_intervals(run_dir: Path) -> None:
    votes = simulate()
    groups = fit_by(votes, grouping("resolution", run_dir))
    assert list(groups) == ["1080p", "720p"]
    for resolution, winner, loser in (("720p", SHARP, SMOOTH), ("1080p", SMOOTH, SHARP)):
        ratings = groups[resolution]
        assert ratings.tallies[winner]["votes"] == 2 * VOTES_PER_PROMPT
        # The group's winner is ahead with intervals that do not overlap.
        assert ratings.interval(winner)[0] > ratings.interval(loser)[1]
        # The known gap lies within the interval of the fitted gap (from the rating draws).
        draws = ratings.draws[:, ratings.routes.index(winner)]
        draws = draws - ratings.draws[:, ratings.routes.index(loser)]
        low, high = np.percentile(draws, [2.5, 97.5])
        assert 0 < low < GAP < high
    # Pooled, the two preferences cancel: no route is told apart.
    pooled = fit(votes)
    assert pooled.interval(SHARP)[0] < pooled.interval(SMOOTH)[1]
    assert pooled.interval(SMOOTH)[0] < pooled.interval(SHARP)[1]


def test_a_prompt_tag_mapping_groups_and_names_the_rest_untagged(run_dir: Path) -> None:
    board = leaderboard(simulate(), by=grouping(TAGS, run_dir))
    assert list(board.columns[:2]) == ["group", "route"]
    assert set(board["group"]) == {"nature", UNTAGGED}
    first = board.groupby("group", sort=False)["route"].first().to_dict()
    assert first == {"nature": SHARP, UNTAGGED: SMOOTH}  # each group's best first
    assert board[["low", "high"]].notna().all().all()


def test_outputs_made_with_different_settings_are_mixed_and_unknown_ones_left_out(
    run_dir: Path,
) -> None:
    with RunStore(run_dir) as store:
        store.insert([JobRow(RUN, 0, SHARP, 1, "a", "sharp", "a red kite",
                             settings={"resolution": "1080p"})])  # fmt: skip
    by = grouping("resolution", run_dir)
    assert by(Vote(RUN, 0, SHARP, SMOOTH, "left", left_repeat=1)) == MIXED
    assert by(Vote(RUN, 0, SHARP, SMOOTH, "left")) == "720p"
    assert by(Vote("another-run", 0, SHARP, SMOOTH, "left")) is None


def test_the_report_shows_a_leaderboard_per_group_when_asked(run_dir: Path) -> None:
    with VoteStore(run_dir) as store:
        for vote in simulate():
            store.add(vote)
    plain = report.write_report(run_dir).read_text()
    assert "Blind votes by" not in plain
    grouped = report.write_report(run_dir, run_dir / "by.html", by="resolution").read_text()
    assert "Blind votes by resolution" in grouped
    assert "resolution: <code>720p</code>" in grouped
    assert "resolution: <code>1080p</code>" in grouped
    sections = grouped.split("resolution: <code>")
    at_720 = next(s for s in sections if s.startswith("720p"))
    at_1080 = next(s for s in sections if s.startswith("1080p"))
    assert at_720.index(SHARP) < at_720.index(SMOOTH)  # best first
    assert at_1080.index(SMOOTH) < at_1080.index(SHARP)


def test_the_report_command_groups_by_a_setting(run_dir: Path) -> None:
    """`abebeats-lab report RUN_DIR --by resolution`, as a user runs it."""
    with VoteStore(run_dir) as store:
        for vote in simulate():
            store.add(vote)
    out = run_dir / "cli.html"
    done = run_cli("report", str(run_dir), "--out", str(out), "--by", "resolution", cwd=run_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    page = out.read_text()
    assert "Blind votes by resolution" in page and "resolution: <code>1080p</code>" in page


def test_a_misspelt_setting_is_refused_naming_the_settings_there_are(run_dir: Path) -> None:
    with pytest.raises(ValidationError, match="resolutoin") as refused:
        grouping("resolutoin", run_dir)
    assert "duration_s, prompt, resolution" in str(refused.value)
    with VoteStore(run_dir) as store:
        for vote in simulate():
            store.add(vote)
    out = run_dir / "cli.html"
    done = run_cli("report", str(run_dir), "--out", str(out), "--by", "resolutoin", cwd=run_dir)
    assert done.returncode == 2
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1 and "resolution" in message, message
    assert not out.exists()
