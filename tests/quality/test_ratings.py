"""Bradley–Terry ratings, the pair chooser and metric agreement, on votes of known make-up."""

from __future__ import annotations

import random
from itertools import combinations, pairwise

import numpy as np
import pytest

from abebeats_lab.quality.ratings import (
    ELO_CENTRE,
    ELO_SCALE,
    Ratings,
    agreement,
    fit,
    kendall_tau,
    leaderboard,
    next_pair,
)
from abebeats_lab.quality.votes import Vote

ROUTES = ["a:one", "b:two", "c:three", "d:four"]
TRUE = {"a:one": 1180.0, "b:two": 1060.0, "c:three": 940.0, "d:four": 820.0}
"""Known strengths on the Elo scale, centred on 1000 as the fit reports them."""


def cast(left: str, right: str, choice: str, prompt: int = 0) -> Vote:
    return Vote("run", prompt, left, right, choice)  # type: ignore[arg-type]


def simulate(count: int, seed: int) -> list[Vote]:
    """Votes from the Bradley–Terry model itself: P(i beats j) = 1 / (1 + 10^((Rj-Ri)/400))."""
    rng = random.Random(seed)
    votes = []
    for _ in range(count):
        left, right = rng.sample(ROUTES, 2)
        p_left = 1 / (1 + 10 ** ((TRUE[right] - TRUE[left]) / ELO_SCALE))
        votes.append(cast(left, right, "left" if rng.random() < p_left else "right"))
    return votes


def test_simulated_votes_recover_known_strengths_within_the_intervals() -> None:
    ratings = fit(simulate(600, seed=7), bootstrap=500, seed=1)
    table = ratings.leaderboard()
    assert list(table["route"]) == ROUTES  # best first, in the true order
    for row in table.itertuples():
        assert row.low <= TRUE[row.route] <= row.high, row
        assert row.low < row.rating < row.high
    assert table["votes"].sum() == 2 * 600
    assert np.mean(ratings.rating) == pytest.approx(ELO_CENTRE)


def test_the_fit_is_seedable() -> None:
    votes = simulate(200, seed=3)
    first, again = fit(votes, seed=5), fit(votes, seed=5)
    assert np.array_equal(first.draws, again.draws)
    assert not np.array_equal(first.draws, fit(votes, seed=6).draws)


def test_ties_are_half_a_win_each_and_both_bad_is_a_tie_unless_excluded() -> None:
    # a beats b twice and ties twice: 3 of 4 "points", exactly like 3 wins and 1 loss.
    with_ties = [cast("a", "b", "left")] * 2 + [cast("a", "b", "tie")] * 2
    plain = [cast("a", "b", "left")] * 3 + [cast("b", "a", "left")]
    assert fit(with_ties, bootstrap=0).as_dict() == pytest.approx(fit(plain, bootstrap=0).as_dict())
    both_bad = [cast("a", "b", "left")] * 2 + [cast("a", "b", "both_bad")] * 2
    assert fit(both_bad, bootstrap=0).as_dict() == pytest.approx(
        fit(with_ties, bootstrap=0).as_dict()
    )
    excluded = fit(both_bad, bootstrap=0, both_bad="exclude").as_dict()
    assert excluded == pytest.approx(fit(both_bad[:2], bootstrap=0).as_dict())
    table = leaderboard(both_bad, bootstrap=0).set_index("route")
    assert table.loc["a", ["wins", "ties", "losses", "both_bad", "votes"]].tolist() == [
        2,
        0,
        0,
        2,
        4,
    ]


def test_a_route_that_never_loses_stays_finite() -> None:
    ratings = fit([cast("a", "b", "left")] * 50, bootstrap=100)
    assert np.isfinite(ratings.rating).all() and np.isfinite(ratings.draws).all()
    assert ratings.as_dict()["a"] > ratings.as_dict()["b"]


def test_no_bootstrap_gives_no_interval() -> None:
    ratings = fit(simulate(20, seed=1), bootstrap=0)
    assert np.isnan(ratings.interval("a:one")).all()


def _overlap(ratings: Ratings, first: str, second: str) -> bool:
    (low_1, high_1), (low_2, high_2) = ratings.interval(first), ratings.interval(second)
    return low_1 <= high_2 and low_2 <= high_1


@pytest.mark.parametrize(
    "votes",
    [
        [cast("a", "b", "left")],
        [cast("a", "b", "left")] * 5,
        [cast("b", "a", "right")] * 3 + [cast("a", "b", "left")] * 2,
        [cast("a", "b", "tie")] * 4,
    ],
    ids=["one vote", "five unanimous", "five unanimous either side", "ties only"],
)
def test_a_few_votes_give_wide_overlapping_intervals(votes: list[Vote]) -> None:
    """So few votes cannot tell the routes apart, whatever they say: no zero-width interval."""
    ratings = fit(votes, bootstrap=500)
    for route in ("a", "b"):
        low, high = ratings.interval(route)
        assert low < ratings.as_dict()[route] < high
        assert high - low > ELO_SCALE / 2, (route, low, high)
    assert _overlap(ratings, "a", "b")


def test_many_votes_separate_a_clearly_better_route() -> None:
    votes = [cast("a", "b", "left")] * 80 + [cast("a", "b", "right")] * 20
    votes += [cast("b", "c", "tie")] * 60
    ratings = fit(votes, bootstrap=500)
    assert ratings.interval("a")[0] > ratings.interval("b")[1]
    assert ratings.interval("a")[0] > ratings.interval("c")[1]
    assert _overlap(ratings, "b", "c")


def test_no_votes_give_an_empty_leaderboard_with_its_columns() -> None:
    table = leaderboard([])
    assert table.empty
    assert list(table.columns) == [
        "route",
        "rating",
        "low",
        "high",
        "votes",
        "wins",
        "ties",
        "losses",
        "both_bad",
    ]
    assert fit([]).routes == ()


# -- next_pair -------------------------------------------------------------------------------


def test_next_pair_prefers_the_pair_with_fewest_votes() -> None:
    votes = [cast("a", "b", "left"), cast("a", "c", "right"), cast("b", "c", "tie")] * 2
    votes.append(cast("a", "b", "tie"))
    # a-b has 3 votes, a-c and b-c 2 each; a-c and b-c tie on count: the closer ratings win.
    ratings = fit(votes, bootstrap=0).as_dict()
    pair = next_pair(votes, ["a", "b", "c"])
    expected = min([("a", "c"), ("b", "c")], key=lambda p: abs(ratings[p[0]] - ratings[p[1]]))
    assert pair == expected


def test_next_pair_breaks_equal_counts_by_closest_ratings() -> None:
    votes = (
        [cast("a", "b", "left")] * 5 + [cast("b", "c", "tie")] * 5 + [cast("a", "c", "left")] * 5
    )
    # Every pair has 5 votes; b and c tie each other, so their ratings are closest.
    assert next_pair(votes, ["a", "b", "c"]) == ("b", "c")


def test_next_pair_never_repeats_the_last_pair() -> None:
    assert next_pair([], ["a", "b", "c"]) == ("a", "b")
    assert next_pair([], ["a", "b", "c"], last=("b", "a")) == ("a", "c")
    shown: list[tuple[str, str]] = []
    last: tuple[str, str] | None = None
    votes: list[Vote] = []
    for _ in range(12):
        last = next_pair(votes, ROUTES, last)
        shown.append(last)
        votes.append(cast(*last, "tie"))
    assert all(frozenset(a) != frozenset(b) for a, b in pairwise(shown))
    # Each of the six pairs is shown once before any is shown twice.
    assert {frozenset(p) for p in shown[:6]} == {frozenset(p) for p in combinations(ROUTES, 2)}


def test_next_pair_with_one_pair_and_a_random_side() -> None:
    assert next_pair([], ["a", "b"], last=("a", "b")) == ("a", "b")
    sides = {next_pair([], ["a", "b"], rng=random.Random(seed)) for seed in range(20)}
    assert sides == {("a", "b"), ("b", "a")}
    with pytest.raises(ValueError, match="at least two"):
        next_pair([], ["a", "a"])


# -- agreement -------------------------------------------------------------------------------


def test_kendall_tau_b_on_known_rankings() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert kendall_tau(x, x)[0] == 1.0
    assert kendall_tau(x, -x)[0] == -1.0
    assert kendall_tau(x, np.array([1.0, 3.0, 2.0, 4.0]))[0] == pytest.approx(4 / 6)
    # tau-b with a tie in y: (C - D) / sqrt(6 * 5)
    assert kendall_tau(x, np.array([1.0, 1.0, 2.0, 3.0]))[0] == pytest.approx(5 / np.sqrt(30))


def test_a_metric_that_orders_routes_like_the_votes_agrees() -> None:
    ratings = fit(simulate(600, seed=7), bootstrap=300)
    true_order = {route: TRUE[route] / 100 for route in ROUTES}
    agree = agreement(true_order, ratings)
    assert agree.tau == 1.0 and agree.high == 1.0 and agree.low > 0
    reverse = agreement({r: -v for r, v in true_order.items()}, ratings)
    assert reverse.tau == -1.0 and reverse.high < 0
    assert set(agree.routes) == set(ROUTES)


def test_an_unrelated_noisy_metric_has_an_interval_around_zero() -> None:
    rng = np.random.default_rng(0)
    noise = {route: rng.normal(0, 1, size=8).tolist() for route in ROUTES}
    result = agreement(noise, fit(simulate(600, seed=7), bootstrap=300))
    assert result.low < 0 < result.high


def test_agreement_with_plain_ratings_resamples_the_clips() -> None:
    plain = {"a": 1100.0, "b": 1000.0, "c": 900.0}
    per_clip = {"a": [9.0, 8.0, 10.0], "b": [5.0, 6.0, 4.0], "c": [1.0, 2.0, 0.0]}
    result = agreement(per_clip, plain)
    assert (result.tau, result.low, result.high) == (1.0, 1.0, 1.0)  # never overlap
    with pytest.raises(ValueError, match="nothing to resample"):
        agreement({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0})
    with pytest.raises(ValueError, match="two routes"):
        agreement({"a": [1.0]}, plain)


def test_ratings_keep_routes_in_first_seen_order() -> None:
    ratings = fit([cast("z", "y", "left")], bootstrap=0)
    assert isinstance(ratings, Ratings) and ratings.routes == ("z", "y")
