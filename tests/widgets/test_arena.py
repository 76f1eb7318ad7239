"""The Arena, driven headlessly: its own buttons clicked, the votes read back from votes.sqlite.

The run is real: ``local:procedural`` renders here, Runway and Replicate are served by the
built-in emulators on 127.0.0.1, each with its own look (the emulators render per provider).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from abebeats_lab import Settings
from abebeats_lab.quality.votes import VOTES_DB, VoteStore
from abebeats_lab.run.api import compare, load_run
from abebeats_lab.widgets import Arena, ControlPanel
from abebeats_lab.widgets.arena import SHORTCUTS

LOCAL, RUNWAY, REPLICATE = "local:procedural", "runway:gen4.5", "replicate:google/veo-3-fast"
ROUTES = (LOCAL, RUNWAY, REPLICATE)
PROMPTS = ["a paper boat on a calm lake", "a red kite over dunes"]
SETTINGS = Settings(duration_s=2, resolution="720p")
MP4_BOX = b"ftyp"
PAIRS = 3
"""Route pairs among three routes."""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("run")
    asyncio.run(
        compare(PROMPTS, list(ROUTES), SETTINGS, run_dir=directory, emulate=True, adapt=True)
    )
    return directory


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run per test, so each starts without votes."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def _files(run_dir: Path) -> dict[tuple[int, str], bytes]:
    rows = load_run(run_dir).rows
    return {(r.prompt_index, r.route): (run_dir / str(r.output_path)).read_bytes() for r in rows}


def _shown_text(arena: Arena) -> str:
    """Every text a rater sees while voting (the leaderboard accordion stays closed)."""
    return " ".join(
        str(part.value) for part in (arena.prompt, arena.status, arena.keys)
    ) + " ".join(b.description + b.tooltip for b in arena.buttons.values())


def test_two_routes_of_one_prompt_play_side_by_side_with_labels_hidden(run_dir: Path) -> None:
    arena = Arena(run_dir, seed=1)
    shown = arena.pair
    assert shown is not None and shown.left != shown.right
    assert {shown.left, shown.right} <= set(ROUTES)
    files = _files(run_dir)
    left, right = (v.value for v in arena.videos)
    assert left == files[(shown.prompt_index, shown.left)]
    assert right == files[(shown.prompt_index, shown.right)]
    assert left[4:8] == right[4:8] == MP4_BOX and left != right
    assert all(v.autoplay and v.loop for v in arena.videos)
    assert PROMPTS[shown.prompt_index] in arena.prompt.value
    assert not any(route in _shown_text(arena) for route in ROUTES)
    assert arena.reveal.value is False
    assert "No votes yet" in arena.board.value
    with VoteStore(run_dir) as store:
        assert len(store) == 0


def test_votes_from_the_buttons_are_rows_with_the_order_shown(run_dir: Path) -> None:
    arena = Arena(run_dir, rater="ada", seed=2)
    shown, choices = [], ["left", "right", "tie", "both_bad", "left", "right"]
    for choice in choices:
        assert arena.pair is not None
        shown.append(arena.pair)
        arena.buttons[choice].click()
    with VoteStore(run_dir) as store:
        votes = store.all()
    assert [v.choice for v in votes] == choices
    assert [(v.prompt_index, v.left, v.right) for v in votes] == [
        (s.prompt_index, s.left, s.right) for s in shown
    ]
    assert {v.rater for v in votes} == {"ada"}
    assert {v.run_id for v in votes} == {load_run(run_dir).run_id}
    # Never the same pair twice in a row; the first three pairs cover every pair once.
    assert all({a.left, a.right} != {b.left, b.right} for a, b in pairwise(shown))
    assert len({frozenset(s.routes) for s in shown[:PAIRS]}) == PAIRS
    # The leaderboard is refitted after each vote, with the votes behind each rating.
    board = arena.leaderboard()
    assert set(board["route"]) == set(ROUTES)
    assert board["votes"].sum() == 2 * len(choices)
    assert all(route in arena.board.value for route in ROUTES)
    assert "95% interval" in arena.board.value


def test_undo_removes_the_last_vote_and_shows_its_pair_again(run_dir: Path) -> None:
    arena = Arena(run_dir, seed=3)
    arena.buttons["left"].click()
    second = arena.pair
    arena.buttons["right"].click()
    assert len(arena.votes) == 2
    arena.buttons["undo"].click()
    assert [v.choice for v in arena.votes] == ["left"]
    assert arena.pair == second
    assert "removed" in arena.status.value
    arena.buttons["undo"].click()
    arena.buttons["undo"].click()
    assert arena.votes == [] and "No vote to undo" in arena.status.value


def test_undo_leaves_other_runs_and_other_raters_votes_alone(run_dir: Path) -> None:
    arena = Arena(run_dir, seed=3)
    arena.buttons["left"].click()
    mine = arena.votes[0]
    with VoteStore(run_dir) as store:  # later votes: another run's, and another rater's
        earlier_run = store.add(replace(mine, run_id="an-earlier-run", rater=None))
        theirs = store.add(replace(mine, rater="bo"))
    arena.buttons["undo"].click()
    assert arena.votes == [theirs]
    assert "back on screen" in arena.status.value
    arena.buttons["undo"].click()
    assert "No vote to undo" in arena.status.value and "back on screen" not in arena.status.value
    with VoteStore(run_dir) as store:
        assert store.all() == [earlier_run, theirs]


def test_routes_that_never_share_a_prompt_have_nothing_to_compare(run_dir: Path) -> None:
    rows = load_run(run_dir).rows
    kept = {(0, LOCAL), (1, RUNWAY)}  # two routes with videos, each on another prompt
    for row in rows:
        if (row.prompt_index, row.route) not in kept:
            (run_dir / str(row.output_path)).unlink()
    arena = Arena(run_dir)
    assert arena.pair is None and "never two on one prompt" in arena.prompt.value
    assert all(arena.buttons[a].disabled for a in ("left", "right", "tie", "both_bad", "skip"))


def test_skip_stores_nothing_and_moves_to_another_pair(run_dir: Path) -> None:
    arena = Arena(run_dir, seed=4)
    before = arena.pair
    assert before is not None
    arena.buttons["skip"].click()
    assert arena.pair is not None and set(arena.pair.routes) != set(before.routes)
    assert arena.votes == []


def test_a_scripted_preference_tops_the_leaderboard_and_reaches_the_rows(run_dir: Path) -> None:
    arena = Arena(run_dir, seed=5)
    for _ in range(12):
        shown = arena.pair
        assert shown is not None
        if LOCAL in shown.routes:
            arena.buttons["left" if shown.left == LOCAL else "right"].click()
        else:
            arena.buttons["tie"].click()
    board = arena.leaderboard()
    assert board.loc[0, "route"] == LOCAL
    assert board.loc[0, "low"] <= board.loc[0, "rating"] <= board.loc[0, "high"]
    frame = load_run(run_dir).to_pandas()
    ratings = frame.drop_duplicates("route").set_index("route")
    assert ratings.loc[LOCAL, "rating"] == pytest.approx(board.loc[0, "rating"])
    assert ratings["rating_votes"].sum() == 2 * 12
    summary = load_run(run_dir).summary()
    assert summary["rating"].idxmax() == LOCAL


def test_reveal_after_each_vote_is_optional(run_dir: Path) -> None:
    arena = Arena(run_dir, seed=6, reveal=True)
    shown = arena.pair
    assert shown is not None
    arena.buttons["tie"].click()
    assert f"Left was {shown.left}, right was {shown.right}" in arena.status.value


def test_a_run_with_one_route_has_nothing_to_compare(tmp_path: Path) -> None:
    asyncio.run(compare(PROMPTS[:1], [LOCAL], SETTINGS, run_dir=tmp_path / "one"))
    arena = Arena(tmp_path / "one")
    assert arena.pair is None and "at least two routes" in arena.prompt.value
    assert all(arena.buttons[a].disabled for a in ("left", "right", "tie", "both_bad", "skip"))


def test_every_shortcut_is_wired_to_a_button_and_listed(run_dir: Path) -> None:
    arena = Arena(run_dir)
    for action in SHORTCUTS:
        css = f"abebeats-arena-{action.replace('_', '-')}"
        assert css in arena.buttons[action]._dom_classes
    assert "keydown" in arena.keys.value and "abebeats-arena" in arena.view._dom_classes
    assert all(f"<kbd>{keys[0]}" in arena.keys.value for keys in SHORTCUTS.values())


async def test_the_panel_opens_the_arena_on_its_run(tmp_path: Path) -> None:
    panel = ControlPanel(
        selected=[LOCAL, RUNWAY], emulate=True, runs_dir=tmp_path / "runs", prompt=PROMPTS[0]
    )
    panel.duration.value = 2
    assert panel.arena_button.disabled
    panel.generate_button.click()
    await panel.wait()
    assert not panel.arena_button.disabled
    panel.arena_button.click()
    assert panel.arena is not None and panel.arena.view in panel.arena_box.children
    assert panel.arena.run_dir == panel.comparison.run_dir
    assert panel.arena.pair is not None and set(panel.arena.pair.routes) == {LOCAL, RUNWAY}
    panel.arena.buttons["left"].click()
    assert (panel.comparison.run_dir / VOTES_DB).is_file()
    with VoteStore(panel.comparison.run_dir) as store:
        assert [v.left for v in store] == [panel.arena.votes[0].left]
