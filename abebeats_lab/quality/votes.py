"""Blind pairwise votes: the `Vote` record and its store, ``votes.sqlite`` in the run folder.

A vote says which of two outputs of the same prompt a person preferred, as they were shown
(left and right), so an analysis can check for a side bias. Votes live in their own SQLite
file next to ``run.sqlite`` (which the runner owns): they survive a restart, and votes of
several run folders are read together with `read_votes`.
"""

from __future__ import annotations

import csv
import enum
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from abebeats_lab.errors import ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from abebeats_lab.store import JobRow

__all__ = [
    "ANYONE",
    "CHOICES",
    "VOTES_DB",
    "Choice",
    "Grouping",
    "Vote",
    "VoteStore",
    "grouping",
    "read_votes",
]

Choice = Literal["left", "right", "tie", "both_bad"]
CHOICES: tuple[Choice, ...] = get_args(Choice)
"""What a rater can answer. A skip is not a vote and is not stored."""
VOTES_DB = "votes.sqlite"


class Anyone(enum.Enum):
    """The type of `ANYONE` (a rater of None means "no rater", so it needs its own value)."""

    ANYONE = "anyone"


ANYONE = Anyone.ANYONE
"""`VoteStore.undo_last`'s rater filter that takes every rater's votes."""
_SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 10.0


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Vote:
    """One blind comparison of two outputs of the same prompt, as the rater saw it."""

    run_id: str
    prompt_index: int
    left: str
    """The route whose output was shown on the left."""
    right: str
    choice: Choice
    left_repeat: int = 0
    right_repeat: int = 0
    rater: str | None = None
    """An optional name, so votes of several people can be told apart."""
    at: str = field(default_factory=_now)
    """When the vote was cast, UTC ISO-8601."""

    def __post_init__(self) -> None:
        if self.choice not in CHOICES:
            raise ValueError(f"choice={self.choice!r} is not allowed; allowed: {CHOICES}")
        if self.left == self.right:
            raise ValueError(f"a vote compares two routes, got {self.left!r} twice")

    @property
    def left_key(self) -> tuple[int, str, int]:
        """The job key (prompt index, route, repeat) of the left output."""
        return (self.prompt_index, self.left, self.left_repeat)

    @property
    def right_key(self) -> tuple[int, str, int]:
        """The job key of the right output."""
        return (self.prompt_index, self.right, self.right_repeat)

    @property
    def winner(self) -> str | None:
        """The preferred route, or None for a tie or both bad."""
        return {"left": self.left, "right": self.right}.get(self.choice)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for JSON, CSV and pandas)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Vote:
        """The inverse of `to_dict` (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


_COLUMNS = tuple(f.name for f in fields(Vote))
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS votes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  run_id TEXT NOT NULL, prompt_index INTEGER NOT NULL,
  left TEXT NOT NULL, right TEXT NOT NULL, choice TEXT NOT NULL,
  left_repeat INTEGER NOT NULL, right_repeat INTEGER NOT NULL,
  rater TEXT, at TEXT NOT NULL
);
PRAGMA user_version = {_SCHEMA_VERSION};
"""


class VoteStore:
    """The votes of one run folder, in the order they were cast. Every write is committed."""

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / VOTES_DB
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
        self._db.execute("PRAGMA journal_mode=WAL")
        with self._db:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> VoteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, vote: Vote) -> Vote:
        """Store ``vote`` and return it."""
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._db:
            self._db.execute(
                f"INSERT INTO votes ({', '.join(_COLUMNS)}) VALUES ({marks})",  # noqa: S608 - our column names
                tuple(getattr(vote, name) for name in _COLUMNS),
            )
        return vote

    def undo_last(
        self, rater: str | Anyone | None = ANYONE, *, run_id: str | None = None
    ) -> Vote | None:
        """Remove and return the latest vote; None if there is none.

        ``rater``: only that rater's votes (None: only votes cast without a rater; the
        default `ANYONE`: every rater's). ``run_id``: only that run's votes.
        """
        conditions = [("rater IS ?", rater)] if not isinstance(rater, Anyone) else []
        if run_id is not None:
            conditions.append(("run_id = ?", run_id))
        where = "WHERE " + " AND ".join(c for c, _ in conditions) if conditions else ""
        args = tuple(value for _, value in conditions)
        with self._db:
            found = self._db.execute(
                f"SELECT id, {', '.join(_COLUMNS)} FROM votes {where} ORDER BY id DESC LIMIT 1",  # noqa: S608
                args,
            ).fetchone()
            if found is None:
                return None
            self._db.execute("DELETE FROM votes WHERE id = ?", (found[0],))
        return _vote(found[1:])

    def all(self) -> list[Vote]:
        """Every vote, oldest first."""
        return list(self)

    def __iter__(self) -> Iterator[Vote]:
        query = f"SELECT {', '.join(_COLUMNS)} FROM votes ORDER BY id"  # noqa: S608
        return (_vote(values) for values in self._db.execute(query).fetchall())

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM votes").fetchone()[0])

    def to_pandas(self) -> pd.DataFrame:
        """Every vote as a DataFrame row (columns as in `Vote`)."""
        return votes_frame(self.all())

    def to_csv(self, path: Path | str) -> Path:
        """Write every vote to a CSV file with a header row; returns the path."""
        return write_csv(self.all(), path)


def _vote(values: Iterable[Any]) -> Vote:
    return Vote(**dict(zip(_COLUMNS, values, strict=True)))


def read_votes(*run_dirs: Path | str) -> list[Vote]:
    """The votes of several run folders together (each folder's in the order cast).

    A folder without ``votes.sqlite`` has no votes; nothing is created there.
    """
    found: list[Vote] = []
    for folder in run_dirs:
        if (Path(folder) / VOTES_DB).is_file():
            with VoteStore(folder) as store:
                found.extend(store)
    return found


def votes_frame(votes: Iterable[Vote]) -> pd.DataFrame:
    """Votes as a DataFrame with one column per `Vote` field."""
    import pandas as pd

    return pd.DataFrame([v.to_dict() for v in votes], columns=list(_COLUMNS))


def write_csv(votes: Iterable[Vote], path: Path | str) -> Path:
    """Votes as CSV (header row, one vote a line)."""
    target = Path(path)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_COLUMNS))
        writer.writeheader()
        writer.writerows(v.to_dict() for v in votes)
    return target


# -- grouping votes by a prompt tag or a setting ------------------------------------------------

Grouping = str | Mapping[str, str] | Callable[[Vote], str | None]
"""How to group votes: a setting's name, a prompt → tag mapping, or a function of the vote."""
MIXED = "mixed"
"""The group of a vote whose two outputs were made with different values of the setting."""
UNTAGGED = "untagged"
"""The group of a vote whose prompt the tag mapping does not name."""
_EXTRAS = "extras"
"""The settings key holding a route's own input names (`VideoRequest.extras`)."""


def grouping(by: Grouping, *run_dirs: Path | str) -> Callable[[Vote], str | None]:
    """A vote → group function for `quality.ratings.fit_by`, from the run folders' rows.

    ``by`` is a setting of the rows (``"resolution"``, ``"duration_s"``, ``"aspect_ratio"``,
    ``"generate_audio"``, a route extra's name...): a vote's group is the value both
    outputs were made with, `MIXED` when they differ. Or a mapping from prompt text to a tag
    (`UNTAGGED` for other prompts). Or a function of the `Vote`, used as is. A vote whose
    outputs are not in these folders' run stores is left out (None). A setting that none of
    those rows has (a misspelling) is a `ValidationError` naming the settings they have.
    """
    if callable(by):
        return by
    rows = _rows_by_key(run_dirs)
    if isinstance(by, str):
        setting = by
        known = _setting_names(rows.values())
        if known and setting not in known:
            raise ValidationError("by", setting, "a setting of these runs: " + ", ".join(known))

        def by_setting(vote: Vote) -> str | None:
            left = rows.get((vote.run_id, *vote.left_key))
            right = rows.get((vote.run_id, *vote.right_key))
            if left is None or right is None:
                return None
            values = {str(_setting(row, setting)) for row in (left, right)}
            return values.pop() if len(values) == 1 else MIXED

        return by_setting
    tags = dict(by)

    def by_tag(vote: Vote) -> str | None:
        row = rows.get((vote.run_id, *vote.left_key))
        return None if row is None else tags.get(row.prompt, UNTAGGED)

    return by_tag


def _setting_names(rows: Iterable[JobRow]) -> list[str]:
    """The settings and route extras the rows were made with, sorted."""
    names: set[str] = set()
    for row in rows:
        names.update(k for k in row.settings if k != _EXTRAS)
        names.update(row.settings.get(_EXTRAS) or {})
    return sorted(names)


def _setting(row: JobRow, name: str) -> Any:
    settings = row.settings
    return settings.get(name, settings.get(_EXTRAS, {}).get(name))


def _rows_by_key(run_dirs: Iterable[Path | str]) -> dict[tuple[str, int, str, int], JobRow]:
    """Every job row of these run folders by (run id, prompt index, route, repeat)."""
    from abebeats_lab.store import DB_NAME, RunStore

    found: dict[tuple[str, int, str, int], JobRow] = {}
    for folder in run_dirs:
        if not (Path(folder) / DB_NAME).is_file():
            continue
        with RunStore(Path(folder)) as store:
            for row in store.rows():
                found[(row.run_id, *row.key)] = row
    return found
