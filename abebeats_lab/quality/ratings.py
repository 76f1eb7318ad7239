"""Bradley–Terry ratings from blind pairwise votes, the pair chooser, and metric agreement.

The fit is Hunter's (2004) MM algorithm in numpy ("MM algorithms for generalized
Bradley–Terry models", Ann. Statist. 32(1)), no scipy: a route's strength is its wins over
the sum, across its comparisons, of 1 / (its strength + the opponent's). A tie counts as half
a win for each side. "Both bad" counts as a tie too, as in Chatbot Arena's ratings (the rater
preferred neither); ``both_bad="exclude"`` drops those votes instead. A small prior (one
virtual win and one virtual loss against an average opponent) keeps a route that never lost
or never won finite; with a few dozen votes it moves a rating by little.

Ratings are on the Elo scale Chatbot Arena and Artificial Analysis use: 400 points is a
ten-fold strength ratio, and 1000 is the average route of the fit (a rating is only
meaningful relative to the routes fitted with it). 95 % intervals come from the likelihood
(with the prior): ratings are drawn from its normal (Laplace) approximation at the fit,
whose spread is set by how many votes each pair got, and the interval is the middle 95 % of
those draws. Resampling the votes (a bootstrap) would give one vote, or a unanimous handful,
a zero-width interval, as if the outcome could not have gone otherwise; the likelihood gives
them the wide, overlapping intervals so few votes warrant, and narrow ones with many votes.

Votes can be grouped (`fit_by`, ``leaderboard(votes, by=...)``): by a prompt tag or by a
setting (`quality.votes.grouping` reads them from the run folders), each group fitted on its
own votes with its own intervals, so a route that wins at 1080p and loses at 540p shows both.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from abebeats_lab.quality.votes import Vote

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LEADERBOARD_COLUMNS",
    "Agreement",
    "GroupBy",
    "Ratings",
    "agreement",
    "fit",
    "fit_by",
    "kendall_tau",
    "leaderboard",
    "next_pair",
]

ELO_SCALE = 400.0
ELO_CENTRE = 1000.0
PRIOR = 1.0
"""Virtual wins and losses each route gets against an opponent of average strength."""
BOOTSTRAP = 1000
LEVEL = 0.95
_TOLERANCE = 1e-10
_MAX_ITERATIONS = 10_000
_PERCENT = 100.0
_PAIR = 2
_FAIR_COIN = 0.5
GROUP_COLUMN = "group"
_TALLY_NAMES = ("votes", "wins", "ties", "losses", "both_bad")
LEADERBOARD_COLUMNS = ("route", "rating", "low", "high", *_TALLY_NAMES)
"""The columns of `Ratings.leaderboard`, also those of an empty leaderboard."""

GroupBy = Callable[[Vote], str | None]
"""A vote's group (a prompt tag, a setting's value); None leaves the vote out."""


@dataclass(frozen=True, eq=False)
class Ratings:
    """A fit: per route its rating, draws of its rating and the votes behind it."""

    routes: tuple[str, ...]
    rating: np.ndarray
    """Point ratings, in the order of ``routes``."""
    draws: np.ndarray
    """One row of ratings per draw from the likelihood's normal approximation (draws × routes)."""
    tallies: dict[str, dict[str, int]]
    """Per route: votes, wins, ties, losses, both_bad (as cast, before the prior)."""
    level: float = LEVEL

    def as_dict(self) -> dict[str, float]:
        """Route → point rating."""
        return {route: float(value) for route, value in zip(self.routes, self.rating, strict=True)}

    def interval(self, route: str) -> tuple[float, float]:
        """The percentile interval of one route's rating draws (NaN without draws)."""
        if not len(self.draws):
            return (math.nan, math.nan)
        column = self.draws[:, self.routes.index(route)]
        tail = (1 - self.level) / 2 * _PERCENT
        low, high = np.percentile(column, [tail, _PERCENT - tail])
        return float(low), float(high)

    def leaderboard(self) -> pd.DataFrame:
        """Route, rating, low, high and the vote tallies, best first."""
        import pandas as pd

        records = [
            {
                "route": route,
                "rating": float(self.rating[i]),
                "low": self.interval(route)[0],
                "high": self.interval(route)[1],
                **self.tallies[route],
            }
            for i, route in enumerate(self.routes)
        ]
        if not records:
            return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
        table = pd.DataFrame(records)
        return table.sort_values("rating", ascending=False, kind="stable").reset_index(drop=True)


def fit(
    votes: Iterable[Vote],
    *,
    bootstrap: int = BOOTSTRAP,
    seed: int | None = 0,
    prior: float = PRIOR,
    both_bad: Literal["tie", "exclude"] = "tie",
    level: float = LEVEL,
) -> Ratings:
    """Bradley–Terry ratings per route with ``bootstrap`` draws for intervals (0: none).

    ``bootstrap`` keeps its name from when the draws were vote resamples; they now come
    from the likelihood (module docstring). No votes: no routes, and an empty leaderboard.
    """
    cast = list(votes)
    used = [v for v in cast if not (both_bad == "exclude" and v.choice == "both_bad")]
    routes = tuple(dict.fromkeys(r for v in cast for r in (v.left, v.right)))
    if not routes:
        return Ratings((), np.empty(0), np.empty((0, 0)), {}, level)
    index = {route: i for i, route in enumerate(routes)}
    wins, meets = _incidence(used, index)
    totals = (wins.sum(axis=0)[None], meets.sum(axis=0)[None])
    met = _pair_counts(totals[1], len(routes))
    strength = _bradley_terry(totals[0], met, prior)
    draws = np.empty((0, len(routes)))
    if bootstrap > 0 and used:
        rng = np.random.default_rng(seed)
        covariance = np.linalg.pinv(_curvature(strength[0], met[0], prior), hermitian=True)
        logs = rng.multivariate_normal(np.log(strength[0]), covariance, size=bootstrap)
        draws = _elo(np.exp(logs))
    point = _elo(strength)[0]
    return Ratings(routes, point, draws, _tallies(cast, routes), level)


def fit_by(votes: Iterable[Vote], by: GroupBy, **options: Any) -> dict[str, Ratings]:
    """One `fit` per group of votes (``by`` names each vote's group), groups in sorted order.

    Each group is fitted on its own votes only, with its own intervals (same ``options`` as
    `fit`); its ratings are relative to the routes of that group.
    """
    groups: dict[str, list[Vote]] = {}
    for vote in votes:
        key = by(vote)
        if key is not None:
            groups.setdefault(str(key), []).append(vote)
    return {key: fit(groups[key], **options) for key in sorted(groups)}


def leaderboard(
    votes: Iterable[Vote], *, by: GroupBy | None = None, **options: Any
) -> pd.DataFrame:
    """`fit` and its leaderboard in one call (same options).

    With ``by``, one leaderboard per group (`fit_by`), stacked, with a leading ``group``
    column; each group's routes best first.
    """
    if by is None:
        return fit(votes, **options).leaderboard()
    import pandas as pd

    boards = [
        ratings.leaderboard().assign(**{GROUP_COLUMN: key})
        for key, ratings in fit_by(votes, by, **options).items()
    ]
    if not boards:
        return pd.DataFrame(columns=[GROUP_COLUMN, *LEADERBOARD_COLUMNS])
    table = pd.concat(boards, ignore_index=True)
    return table[[GROUP_COLUMN, *(c for c in table.columns if c != GROUP_COLUMN)]]


def _incidence(votes: Sequence[Vote], index: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per vote: the win credit of every route, and which unordered pair met (flattened)."""
    size = len(index)
    wins = np.zeros((len(votes), size))
    meets = np.zeros((len(votes), size * size))
    for row, vote in enumerate(votes):
        left, right = index[vote.left], index[vote.right]
        credit = {"left": 1.0, "right": 0.0}.get(vote.choice, 0.5)
        wins[row, left], wins[row, right] = credit, 1.0 - credit
        meets[row, left * size + right] = meets[row, right * size + left] = 1.0
    return wins, meets


def _pair_counts(flat: np.ndarray, size: int) -> np.ndarray:
    return flat.reshape(len(flat), size, size)


def _bradley_terry(wins: np.ndarray, meets: np.ndarray, prior: float) -> np.ndarray:
    """Hunter's MM updates for many fits at once; returns the strengths (see `_elo`).

    ``wins``: (fits, routes) win credit; ``meets``: (fits, routes, routes) comparisons.
    The prior is ``prior`` wins and ``prior`` losses against a fixed opponent of strength 1.
    """
    strength = np.ones_like(wins)
    credit = wins + prior
    for _ in range(_MAX_ITERATIONS):
        pair_sums = strength[:, :, None] + strength[:, None, :]
        denominator = (meets / pair_sums).sum(axis=2) + 2 * prior / (strength + 1)
        updated = credit / denominator
        change = np.max(np.abs(np.log(updated) - np.log(strength)), initial=0.0)
        strength = updated
        if change < _TOLERANCE:
            break
    return strength


def _elo(strength: np.ndarray) -> np.ndarray:
    """Strengths (fits × routes) as Elo-scale ratings centred on `ELO_CENTRE` per fit."""
    logs = np.log10(strength)
    centred: np.ndarray = ELO_CENTRE + ELO_SCALE * (logs - logs.mean(axis=1, keepdims=True))
    return centred


def _curvature(strength: np.ndarray, meets: np.ndarray, prior: float) -> np.ndarray:
    """The Hessian of the prior-penalised negative log-likelihood in log-strengths.

    Its inverse is the covariance of the normal (Laplace) approximation of the ratings.
    It grows with how often each pair met (times p·(1 − p) at the fit), not with how much
    the votes varied, so a unanimous handful still gets a wide interval.
    """
    share = strength[:, None] / (strength[:, None] + strength[None, :])
    information = meets * share * share.T
    against_prior = strength / (strength + 1)
    hessian: np.ndarray = -information
    diagonal = information.sum(axis=1) + 2 * prior * against_prior * (1 - against_prior)
    hessian[np.diag_indices_from(hessian)] = diagonal
    return hessian


def _tallies(votes: Sequence[Vote], routes: Sequence[str]) -> dict[str, dict[str, int]]:
    found = {r: dict.fromkeys(_TALLY_NAMES, 0) for r in routes}
    for vote in votes:
        for route in (vote.left, vote.right):
            tally = found[route]
            tally["votes"] += 1
            if vote.choice in ("tie", "both_bad"):
                tally["ties" if vote.choice == "tie" else "both_bad"] += 1
            else:
                tally["wins" if vote.winner == route else "losses"] += 1
    return found


# -- which pair next -------------------------------------------------------------------------


def next_pair(
    votes: Iterable[Vote],
    items: Sequence[str],
    last: tuple[str, str] | None = None,
    *,
    rng: random.Random | None = None,
) -> tuple[str, str]:
    """The most informative pair of ``items`` (routes) to show next.

    Fewest votes between the two first, then the closest ratings, then the order of
    ``items``; never ``last`` again (in either order) unless it is the only pair. The pair
    comes in the order of ``items``; pass ``rng`` to put it in a random left/right order.
    """
    unique = list(dict.fromkeys(items))
    if len(unique) < _PAIR:
        raise ValueError(f"next_pair needs at least two items, got {unique}")
    among = [v for v in votes if v.left in unique and v.right in unique]
    met: dict[frozenset[str], int] = {}
    for vote in among:
        pair = frozenset((vote.left, vote.right))
        met[pair] = met.get(pair, 0) + 1
    rating = fit(among, bootstrap=0).as_dict() if among else {}
    pairs = list(itertools.combinations(unique, 2))
    if last is not None and len(pairs) > 1:
        pairs = [p for p in pairs if frozenset(p) != frozenset(last)]

    def informative(pair: tuple[str, str]) -> tuple[int, float]:
        gap = abs(rating.get(pair[0], ELO_CENTRE) - rating.get(pair[1], ELO_CENTRE))
        return (met.get(frozenset(pair), 0), gap)

    first, second = min(pairs, key=informative)  # min keeps the earliest of equals
    if rng is not None and rng.random() < _FAIR_COIN:
        return second, first
    return first, second


# -- does a metric agree with the votes ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Agreement:
    """Kendall's tau-b between a metric and the ratings over the same routes, with its interval."""

    tau: float
    low: float
    high: float
    routes: tuple[str, ...]
    level: float = LEVEL


def kendall_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row of ``x`` with the same row of ``y`` (NaN if one is flat)."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    upper = np.triu_indices(x.shape[1], k=1)
    sx = np.sign(x[:, :, None] - x[:, None, :])[:, upper[0], upper[1]]
    sy = np.sign(y[:, :, None] - y[:, None, :])[:, upper[0], upper[1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (sx * sy).sum(axis=1) / np.sqrt((sx != 0).sum(axis=1) * (sy != 0).sum(axis=1))
    return np.asarray(tau, dtype=float)


def agreement(
    metric_values: Mapping[str, float | Sequence[float]],
    ratings: Ratings | Mapping[str, float],
    *,
    bootstrap: int = BOOTSTRAP,
    seed: int | None = 0,
    level: float = LEVEL,
) -> Agreement:
    """How well a metric orders the routes as the votes do: Kendall's tau-b and its interval.

    ``metric_values`` maps a route to its figure, or to its clips' figures (their median is
    used). The interval comes from resampling what is uncertain: each route's clips (with
    replacement) and, for a `Ratings`, its rating draws. A tau near +1 means the metric
    ranks routes as the raters did; for a lower-is-better metric, agreement is near −1.
    """
    fitted = ratings.as_dict() if isinstance(ratings, Ratings) else dict(ratings)
    samples = {
        route: np.atleast_1d(np.asarray(values, dtype=float))
        for route, values in metric_values.items()
        if route in fitted
    }
    routes = tuple(r for r in fitted if r in samples and np.isfinite(samples[r]).any())
    if len(routes) < _PAIR:
        raise ValueError(f"agreement needs two routes with both a metric and a rating: {routes}")
    clean = {r: samples[r][np.isfinite(samples[r])] for r in routes}
    medians = np.array([np.median(clean[r]) for r in routes])
    point = float(kendall_tau(medians, np.array([fitted[r] for r in routes]))[0])
    draws = ratings.draws if isinstance(ratings, Ratings) else np.empty((0, 0))
    varied = any(len(v) > 1 for v in clean.values())
    if not varied and not len(draws):
        raise ValueError("nothing to resample: give per-clip metric values or fitted Ratings")
    rng = np.random.default_rng(seed)
    metric_draws = np.stack(
        [np.median(rng.choice(clean[r], size=(bootstrap, len(clean[r]))), axis=1) for r in routes],
        axis=1,
    )
    if len(draws):
        columns = [ratings.routes.index(r) for r in routes]  # type: ignore[union-attr]
        rating_draws = draws[rng.integers(0, len(draws), size=bootstrap)][:, columns]
    else:
        rating_draws = np.tile([fitted[r] for r in routes], (bootstrap, 1))
    taus = kendall_tau(metric_draws, rating_draws)
    tail = (1 - level) / 2 * _PERCENT
    low, high = np.nanpercentile(taus, [tail, _PERCENT - tail])
    return Agreement(point, float(low), float(high), routes, level)
