"""The vote record and its store: survives a restart, undoes, merges folders, exports."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from abebeats_lab.quality.votes import VOTES_DB, Vote, VoteStore, read_votes


def vote(choice: str = "left", rater: str | None = "ana", **changes: object) -> Vote:
    values: dict[str, object] = {
        "run_id": "run-1",
        "prompt_index": 0,
        "left": "local:procedural",
        "right": "runway:gen4.5",
        "choice": choice,
        "right_repeat": 1,
        "rater": rater,
    }
    values.update(changes)
    return Vote(**values)  # type: ignore[arg-type]


def test_a_vote_knows_its_keys_winner_and_round_trips() -> None:
    cast = vote("right")
    assert cast.left_key == (0, "local:procedural", 0)
    assert cast.right_key == (0, "runway:gen4.5", 1)
    assert cast.winner == "runway:gen4.5"
    assert vote("both_bad").winner is None and vote("tie").winner is None
    assert Vote.from_dict(cast.to_dict()) == cast
    assert cast.at.endswith("+00:00")  # UTC


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"choice": "skip"}, "choice='skip' is not allowed"), ({"right": "local:procedural"}, "two")],
)
def test_a_vote_refuses_what_is_no_vote(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vote(**changes)  # type: ignore[arg-type]


def test_votes_survive_a_restart_in_their_own_file(tmp_path: Path) -> None:
    cast = [vote("left"), vote("tie", rater=None), vote("both_bad", prompt_index=1)]
    with VoteStore(tmp_path) as store:
        for v in cast:
            store.add(v)
    assert (tmp_path / VOTES_DB).is_file()
    assert not (tmp_path / "run.sqlite").exists()
    with VoteStore(tmp_path) as store:
        assert store.all() == cast
        assert len(store) == len(cast)


def test_undo_removes_the_latest_vote_or_that_raters_latest(tmp_path: Path) -> None:
    first, second, third = vote("left"), vote("right", rater="bo"), vote("tie")
    with VoteStore(tmp_path) as store:
        assert store.undo_last() is None
        for v in (first, second, third):
            store.add(v)
        assert store.undo_last(rater="bo") == second
        assert store.all() == [first, third]
        assert store.undo_last() == third
        assert store.all() == [first]


def test_undo_keeps_to_its_run_and_an_anonymous_rater_undoes_only_anonymous_votes(
    tmp_path: Path,
) -> None:
    mine, other_run = vote("left", rater=None), vote("right", rater=None, run_id="run-2")
    named = vote("tie", rater="bo")
    with VoteStore(tmp_path) as store:
        for v in (mine, other_run, named):
            store.add(v)
        assert store.undo_last(None, run_id="run-1") == mine
        assert store.undo_last(None, run_id="run-1") is None
        assert store.all() == [other_run, named]
        assert store.undo_last(run_id="run-2") == other_run
        assert store.all() == [named]


def test_votes_of_several_folders_merge(tmp_path: Path) -> None:
    one, two, empty = tmp_path / "one", tmp_path / "two", tmp_path / "empty"
    empty.mkdir()
    with VoteStore(one) as store:
        store.add(vote("left"))
    with VoteStore(two) as store:
        store.add(vote("right", run_id="run-2"))
    merged = read_votes(one, two, empty)
    assert [(v.run_id, v.choice) for v in merged] == [("run-1", "left"), ("run-2", "right")]
    assert not (empty / VOTES_DB).exists()


def test_votes_export_to_pandas_and_csv(tmp_path: Path) -> None:
    cast = [vote("left"), vote("tie", rater=None)]
    with VoteStore(tmp_path) as store:
        for v in cast:
            store.add(v)
        frame = store.to_pandas()
        written = store.to_csv(tmp_path / "votes.csv")
    assert list(frame["choice"]) == ["left", "tie"]
    assert list(frame.columns[:5]) == ["run_id", "prompt_index", "left", "right", "choice"]
    with written.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["choice"] for r in rows] == ["left", "tie"]
    assert rows[0]["right_repeat"] == "1" and rows[1]["rater"] == ""
