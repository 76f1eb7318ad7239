"""Quality figures joined to a run's rows: stored metrics per job, blind-vote ratings per route.

The `quality` package measures and fits; this module only reads what it stored
(``quality.sqlite``, ``votes.sqlite``) for the views, importing it when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from abebeats_lab.quality.catalogue import Metric
    from abebeats_lab.quality.ratings import Ratings
    from abebeats_lab.quality.votes import Grouping

__all__ = ["RATING_COLUMNS", "quality_metrics", "run_ratings", "run_ratings_by", "with_quality"]

RATING_COLUMNS = ("rating", "rating_low", "rating_high", "rating_votes")
"""Per route, from the Bradley–Terry fit of the run's votes: rating, its 95 % interval, votes."""
_JOB_KEY = ["prompt_index", "route", "repeat"]


def quality_metrics() -> dict[str, Metric]:
    """The metric records (`quality.metrics.METRICS`), in the order every view lists them."""
    from abebeats_lab.quality.catalogue import METRICS

    return dict(METRICS)


def run_ratings(run_dir: Path | None, run_id: str) -> Ratings | None:
    """The `quality.ratings.Ratings` of this run's votes in ``votes.sqlite``; None without votes.

    Nothing is created in the run folder: no votes file means no ratings.
    """
    if run_dir is None:
        return None
    from abebeats_lab.quality.ratings import fit
    from abebeats_lab.quality.votes import read_votes

    votes = [v for v in read_votes(run_dir) if v.run_id == run_id]
    return fit(votes) if votes else None


def run_ratings_by(run_dir: Path | None, run_id: str, by: Grouping) -> dict[str, Ratings]:
    """This run's votes fitted per group (`quality.ratings.fit_by`): ``by`` is a setting's
    name, a prompt → tag mapping or a function of the vote (`quality.votes.grouping`)."""
    if run_dir is None:
        return {}
    from abebeats_lab.quality.ratings import fit_by
    from abebeats_lab.quality.votes import grouping, read_votes

    votes = [v for v in read_votes(run_dir) if v.run_id == run_id]
    return fit_by(votes, grouping(by, run_dir)) if votes else {}


def _stored_scores(run_dir: Path | None, run_id: str) -> pd.DataFrame | None:
    """The metrics ``quality.sqlite`` holds for the run, or None when nothing was scored."""
    if run_dir is None:
        return None
    from abebeats_lab.quality.scores import QUALITY_DB, load_scores

    if not (run_dir / QUALITY_DB).is_file():
        return None
    return load_scores(run_dir, run_id)


def with_quality(frame: pd.DataFrame, run_dir: Path | None, run_id: str) -> pd.DataFrame:
    """``frame`` (one row per job) with the stored metrics per job and the ratings per route."""
    if frame.empty:
        return frame
    scores = _stored_scores(run_dir, run_id)
    if scores is not None:
        # A metric the store already has a column for (has_audio, from the probe) stays as is.
        names = [n for n in quality_metrics() if n not in frame.columns]
        wanted = scores[[*_JOB_KEY, *names, "error"]].rename(columns={"error": "metrics_error"})
        frame = frame.merge(wanted, on=_JOB_KEY, how="left")
    ratings = run_ratings(run_dir, run_id)
    if ratings is not None:
        board = ratings.leaderboard()[["route", "rating", "low", "high", "votes"]]
        board.columns = ["route", *RATING_COLUMNS]
        frame = frame.merge(board, on="route", how="left")
    return frame
