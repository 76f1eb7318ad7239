"""`Arena`: blind pairwise votes between two routes' outputs of the same prompt.

Two videos of one prompt play side by side, their routes hidden and their left/right order
random; the rater answers left, right, tie or both bad (or skips), by button or keyboard.
Every vote is a row in the run folder's ``votes.sqlite`` (`quality.votes.VoteStore`), and a
Bradley–Terry leaderboard (`quality.ratings`) is refitted after each one. Pairs come from
`quality.ratings.next_pair`: fewest votes first, then the closest ratings, never the same
pair twice in a row.

How it works in the browser, honestly:

- Videos are ``ipywidgets.Video`` widgets, as in the control panel: the file's bytes go to
  the browser over the widget connection, nothing is inlined in the notebook's HTML (saving
  the widget state, off by default in JupyterLab, would store them). This works in
  JupyterLab and in Voila, which serves no ``.mp4`` file by default.
- Playback: both start together (autoplay, loop, muted), and a small script keeps them
  together: play and pause on one are applied to the other and, for clips of the same
  length, so are seeks, and a drift of more than `SYNC_TOLERANCE_S` is corrected. That is
  sync to a few frames, not frame-exact; clips of different lengths share play and pause
  only, and each loops on its own.
- Keyboard shortcuts (`SHORTCUTS`): ipywidgets has no key events, so the same script
  listens for keydown in the page and clicks the arena's own buttons. It acts only when the
  focus is inside the arena (click anywhere in it first) or on the page itself (Voila),
  never while typing in a text box, and it keeps JupyterLab's notebook shortcuts (``1`` =
  heading, ...) from firing meanwhile. The script is an inline event handler in an HTML
  widget, because ipywidgets does not run ``<script>`` tags; where it cannot run, the
  buttons still work.
- The leaderboard sits in a closed accordion: opening it while voting can reveal which
  route just won. The reveal of the routes after each vote is off by default.

One module past 400 lines, on purpose: about 100 of them are that browser script and its
legend, and the script finds the videos and clicks the buttons by the CSS classes `Arena`
gives them and reads `SHORTCUTS` and `SYNC_TOLERANCE_S`, so the widget and its script change
together and are read together.
"""

from __future__ import annotations

import html
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from abebeats_lab._types import JobState
from abebeats_lab.errors import LabError
from abebeats_lab.quality import ratings as _ratings
from abebeats_lab.quality.votes import Choice, Vote, VoteStore
from abebeats_lab.views.rows import video_path

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SHORTCUTS", "Arena", "Shown"]

SHORTCUTS: dict[str, tuple[str, ...]] = {
    "left": ("1", "ArrowLeft"),
    "right": ("2", "ArrowRight"),
    "tie": ("3", "ArrowUp"),
    "both_bad": ("4", "ArrowDown"),
    "skip": ("s", "0"),
    "undo": ("u",),
}
"""Action → the keys that press its button (``KeyboardEvent.key`` values)."""
SYNC_TOLERANCE_S = 0.15
"""Drift between the two videos beyond which the right one is moved to the left one's time."""
LEADERBOARD_BOOTSTRAP = 1000
_VIDEO_WIDTH = "480px"
_LABELS = {
    "left": "Left is better",
    "right": "Right is better",
    "tie": "Tie",
    "both_bad": "Both bad",
    "skip": "Skip",
    "undo": "Undo last vote",
}
_KEY_NAMES = {"ArrowLeft": "←", "ArrowRight": "→", "ArrowUp": "↑", "ArrowDown": "↓"}
_CHOICES: tuple[Choice, ...] = ("left", "right", "tie", "both_bad")
_PAIR = 2


@dataclass(frozen=True, slots=True)
class Shown:
    """The pair on screen: one prompt, a route (and repeat) on each side."""

    prompt_index: int
    left: str
    right: str
    left_repeat: int = 0
    right_repeat: int = 0

    @property
    def routes(self) -> tuple[str, str]:
        """(left route, right route)."""
        return (self.left, self.right)


def _key_hint(action: str) -> str:
    return " or ".join(_KEY_NAMES.get(k, k) for k in SHORTCUTS[action])


def _e(value: Any) -> str:
    return html.escape(str(value))


class Arena:
    """Blind pairwise voting on the outputs of one run (ipywidgets).

    Parameters
    ----------
    run_dir:
        A run folder (``run.sqlite`` and its outputs); votes go to its ``votes.sqlite``.
    run_id:
        Which run of the folder (default: the latest).
    rater:
        The name the rater box starts with (optional; stored with each vote).
    reveal:
        Say which route was which after each vote (off by default: a label biases a rater).
    seed:
        Seeds the left/right order and the choice of prompt and repeat, for a reproducible
        session.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        run_id: str | None = None,
        rater: str = "",
        reveal: bool = False,
        seed: int | None = None,
    ) -> None:
        from abebeats_lab.run.api import load_run

        self.run_dir = Path(run_dir)
        comparison = load_run(self.run_dir, run_id)
        self.run_id = str(comparison.run_id)
        self._outputs = _outputs(comparison.rows, self.run_dir)
        self._prompts = {r.prompt_index: r.prompt for r in comparison.rows}
        # Only routes that share a prompt with another route can be shown in a pair.
        self._routes = list(
            dict.fromkeys(r for by in self._outputs.values() if len(by) >= _PAIR for r in by)
        )
        self._rng = random.Random(seed)
        self._store = VoteStore(self.run_dir)
        self.pair: Shown | None = None
        """The pair on screen (None when the run has fewer than two routes with outputs)."""
        self._last: tuple[str, str] | None = None
        self._build(rater, reveal)
        self._refresh_leaderboard()
        self._next()

    # ----------------------------------------------------------------- building
    def _build(self, rater: str, reveal: bool) -> None:
        self.prompt = w.HTML()
        self.videos = (self._video("left"), self._video("right"))
        self.buttons: dict[str, w.Button] = {}
        for action in (*_CHOICES, "skip", "undo"):
            first = SHORTCUTS[action][0]
            button = w.Button(
                description=f"{_LABELS[action]} ({_KEY_NAMES.get(first, first)})",
                tooltip=f"{_LABELS[action]}: key {_key_hint(action)}",
                button_style="primary" if action in _CHOICES[:2] else "",
                layout=w.Layout(width="auto"),
            )
            button.add_class(f"abebeats-arena-{action.replace('_', '-')}")
            button.on_click(lambda _b, a=action: self._on_action(a))
            self.buttons[action] = button
        self.rater = w.Text(value=rater, description="Rater", placeholder="optional name")
        self.reveal = w.Checkbox(
            value=reveal, description="reveal the routes after each vote", indent=False
        )
        self.status = w.HTML()
        self.status.add_class("abebeats-arena-status")
        self.board = w.HTML()
        self.board.add_class("abebeats-arena-leaderboard")
        board = w.Accordion(children=[self.board], selected_index=None)
        board.set_title(0, "Leaderboard (opening it while voting can reveal the last winner)")
        self.keys = w.HTML(_keys_html())
        sides = w.HBox(
            [self._side("Left", self.videos[0]), self._side("Right", self.videos[1])],
            layout=w.Layout(flex_flow="row wrap"),
        )
        sides.add_class("abebeats-arena-videos")
        votes = w.HBox([self.buttons[a] for a in _CHOICES], layout=w.Layout(flex_flow="row wrap"))
        more = w.HBox([self.buttons["skip"], self.buttons["undo"], self.rater, self.reveal])
        self.view = w.VBox(
            [self.prompt, sides, votes, more, self.status, self.keys, board],
            layout=w.Layout(width="100%"),
        )
        self.view.add_class("abebeats-arena")

    def _video(self, side: str) -> w.Video:
        video = w.Video(format="mp4", autoplay=True, loop=True, controls=True)
        video.layout = w.Layout(width=_VIDEO_WIDTH)
        video.add_class(f"abebeats-arena-{side}-video")
        return video

    @staticmethod
    def _side(label: str, video: w.Video) -> w.VBox:
        return w.VBox([w.HTML(f"<b>{label}</b>"), video], layout=w.Layout(margin="0 12px 8px 0"))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)

    # -------------------------------------------------------------------- votes
    @property
    def votes(self) -> list[Vote]:
        """This run's votes in the folder, oldest first (every rater's)."""
        return [v for v in self._store.all() if v.run_id == self.run_id]

    def ratings(self) -> _ratings.Ratings:
        """The Bradley–Terry fit of this run's votes, with 95 % intervals."""
        return _ratings.fit(self.votes, bootstrap=LEADERBOARD_BOOTSTRAP)

    def leaderboard(self) -> pd.DataFrame:
        """Route, rating, low, high (95 %), votes and tallies, best first (empty: no votes)."""
        return self.ratings().leaderboard()

    def vote(self, choice: Choice) -> Vote:
        """Record ``choice`` for the pair on screen and show the next pair (as the buttons do)."""
        if self.pair is None:
            raise LabError("nothing to vote on: this run has fewer than two routes with outputs")
        shown = self.pair
        vote = self._store.add(
            Vote(
                run_id=self.run_id,
                prompt_index=shown.prompt_index,
                left=shown.left,
                right=shown.right,
                choice=choice,
                left_repeat=shown.left_repeat,
                right_repeat=shown.right_repeat,
                rater=self._rater(),
            )
        )
        self._refresh_leaderboard()
        self._next()
        self._say(f"Vote saved ({choice.replace('_', ' ')}).{self._revealed(shown)}")
        return vote

    def skip(self) -> None:
        """Show another pair without voting (a skip is not stored)."""
        if self.pair is not None:
            self._next()
            self._say("Skipped.")

    def undo(self) -> Vote | None:
        """Remove this run's latest vote by this rater (or without a rater, when the rater box
        is empty) and show its pair again; other runs' and raters' votes are never touched."""
        removed = self._store.undo_last(self._rater(), run_id=self.run_id)
        if removed is None:
            self._say("No vote to undo (by this rater, in this run).")
            return None
        self._refresh_leaderboard()
        shown = Shown(
            removed.prompt_index,
            removed.left,
            removed.right,
            removed.left_repeat,
            removed.right_repeat,
        )
        if self._show(shown):
            self._last = shown.routes
            self._say("Last vote removed; its pair is back on screen.")
        else:
            self._say("Last vote removed; its videos are gone, so its pair cannot be shown.")
        return removed

    def _on_action(self, action: str) -> None:
        try:
            if action == "skip":
                self.skip()
            elif action == "undo":
                self.undo()
            else:
                self.vote(action)  # type: ignore[arg-type]
        except (LabError, OSError) as exc:  # shown where the click happened
            self._say(f"{type(exc).__name__}: {exc}", error=True)

    def _rater(self) -> str | None:
        return self.rater.value.strip() or None

    def _revealed(self, shown: Shown) -> str:
        if not self.reveal.value:
            return ""
        return f" Left was {shown.left}, right was {shown.right}."

    def _say(self, text: str, *, error: bool = False) -> None:
        colour = "#a00000" if error else "#1d1d1f"
        self.status.value = f'<span style="color:{colour}">{_e(text)}</span>'

    # -------------------------------------------------------------------- pairs
    def _next(self) -> None:
        """Choose and show the next pair (see `quality.ratings.next_pair`)."""
        if len(self._routes) < _PAIR:
            self.pair = None
            self._set_buttons(enabled=False)
            with_outputs = {r for by in self._outputs.values() for r in by}
            self.prompt.value = (
                "<b>Nothing to compare:</b> the arena needs outputs of at least two routes "
                f"for the same prompt; this run has {len(with_outputs)} route(s) with outputs"
                f"{'' if len(with_outputs) < _PAIR else ', never two on one prompt'}."
            )
            return
        shown = self._choose()
        self._show(shown)
        self._last = shown.routes

    def _choose(self) -> Shown:
        votes = self.votes
        left, right = _ratings.next_pair(votes, self._routes, self._last, rng=self._rng)
        prompts = [i for i, by in self._outputs.items() if left in by and right in by]
        if not prompts:
            # The two routes never succeeded on the same prompt: pick among those of a
            # prompt with at least two routes, fewest votes first.
            index = min(
                (i for i, by in self._outputs.items() if len(by) >= _PAIR),
                key=lambda i: sum(v.prompt_index == i for v in votes),
            )
            routes = list(self._outputs[index])
            left, right = _ratings.next_pair(votes, routes, self._last, rng=self._rng)
            prompts = [index]
        met = {i: 0 for i in prompts}
        for vote in votes:
            if vote.prompt_index in met and {vote.left, vote.right} == {left, right}:
                met[vote.prompt_index] += 1
        fewest = min(met.values())
        index = self._rng.choice([i for i in prompts if met[i] == fewest])
        repeats = self._outputs[index]
        return Shown(
            index,
            left,
            right,
            self._rng.choice(sorted(repeats[left])),
            self._rng.choice(sorted(repeats[right])),
        )

    def _show(self, shown: Shown) -> bool:
        """Put ``shown`` on screen; False when one of its files is gone."""
        by_route = self._outputs.get(shown.prompt_index, {})
        left = by_route.get(shown.left, {}).get(shown.left_repeat)
        right = by_route.get(shown.right, {}).get(shown.right_repeat)
        if left is None or right is None:
            return False
        self.videos[0].value, self.videos[1].value = left.read_bytes(), right.read_bytes()
        self.pair = shown
        prompt = self._prompts.get(shown.prompt_index, "")
        self.prompt.value = (
            f'<div class="abebeats-arena-prompt"><b>Which video is better for this prompt?</b>'
            f"<br><i>{_e(prompt)}</i></div>"
        )
        self._set_buttons(enabled=True)
        return True

    def _set_buttons(self, *, enabled: bool) -> None:
        for action, button in self.buttons.items():
            button.disabled = not enabled and action != "undo"

    def _refresh_leaderboard(self) -> None:
        from abebeats_lab.views.report import leaderboard_html

        board = self.leaderboard()
        if board.empty:
            self.board.value = "<p>No votes yet.</p>"
            return
        note = (
            "<p style='font-size:12px'>Bradley–Terry ratings (1000 = average route of this "
            "fit; 400 points = ten-fold odds) with 95 % intervals, wide with few votes; "
            "overlapping intervals are not told apart by these votes.</p>"
        )
        self.board.value = leaderboard_html(board) + note

    def close(self) -> None:
        """Close the vote store's connection and the widgets."""
        self._store.close()
        self.view.close()


def _outputs(rows: Sequence[Any], run_dir: Path) -> dict[int, dict[str, dict[int, Path]]]:
    """Per prompt, per route, per repeat: the video file of each succeeded job (``rows``:
    a `Comparison`'s job rows)."""
    found: dict[int, dict[str, dict[int, Path]]] = {}
    for row in rows:
        if row.state is not JobState.SUCCEEDED:
            continue
        path = video_path(row.to_dict(), run_dir)
        if path is not None:
            found.setdefault(row.prompt_index, {}).setdefault(row.route, {})[row.repeat] = path
    return {i: by for i, by in sorted(found.items())}


# The script: an inline handler (ipywidgets inserts HTML with innerHTML, which runs no
# <script>). Installed once per page; it finds arenas by their CSS classes, so it keeps
# working when the widgets re-render or a new pair is shown.
_SCRIPT = r"""
(function () {
  if (window.__abebeatsArena) { return; }
  window.__abebeatsArena = true;
  var KEYS = __KEYS__, TOLERANCE = __TOLERANCE__;
  function arenaOf(node) { return node && node.closest ? node.closest('.abebeats-arena') : null; }
  function pairOf(video) {
    var arena = arenaOf(video);
    if (!arena) { return null; }
    var l = arena.querySelector('.abebeats-arena-left-video');
    var r = arena.querySelector('.abebeats-arena-right-video');
    return l && r ? [l, r] : null;
  }
  function other(video, pair) { return pair[0] === video ? pair[1] : pair[0]; }
  function sameLength(pair) { return Math.abs(pair[0].duration - pair[1].duration) < TOLERANCE; }
  function isArenaVideo(t) { return t && t.tagName === 'VIDEO' && pairOf(t); }
  document.addEventListener('loadstart', function (e) {
    if (isArenaVideo(e.target)) { e.target.muted = true; }
  }, true);
  document.addEventListener('canplay', function (e) {
    var pair = isArenaVideo(e.target);
    if (!pair) { return; }
    var key = pair[0].currentSrc + '|' + pair[1].currentSrc;
    if (pair[0].readyState < 3 || pair[1].readyState < 3 || pair[0].dataset.started === key) {
      return;
    }
    pair[0].dataset.started = key;
    pair.forEach(function (v) {
      v.muted = true;
      v.currentTime = 0;
      v.play().catch(function () {});
    });
  }, true);
  ['play', 'pause', 'seeked'].forEach(function (type) {
    document.addEventListener(type, function (e) {
      var pair = isArenaVideo(e.target);
      if (!pair) { return; }
      var twin = other(e.target, pair);
      if (type === 'play' && twin.paused) { twin.play().catch(function () {}); }
      if (type === 'pause' && !twin.paused) { twin.pause(); }
      if (type === 'seeked' && sameLength(pair) &&
          Math.abs(twin.currentTime - e.target.currentTime) > TOLERANCE) {
        twin.currentTime = e.target.currentTime;
      }
    }, true);
  });
  document.addEventListener('timeupdate', function (e) {
    var pair = isArenaVideo(e.target);
    if (!pair || e.target !== pair[0] || pair[1].paused || pair[1].seeking || !sameLength(pair)) {
      return;
    }
    var t = pair[0].currentTime, end = Math.min(pair[0].duration, pair[1].duration) - TOLERANCE;
    if (t < end && Math.abs(pair[1].currentTime - t) > TOLERANCE) { pair[1].currentTime = t; }
  }, true);
  function target(e) {
    var node = e.target;
    if (node && (node.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(node.tagName))) {
      return null;
    }
    var arena = arenaOf(node);
    if (arena) { return arena; }
    if (node === document.body || node === document.documentElement) {
      var all = Array.prototype.filter.call(
        document.querySelectorAll('.abebeats-arena'), function (a) { return a.offsetParent; });
      return all.length ? all[0] : null;
    }
    return null;
  }
  window.addEventListener('keydown', function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var arena = target(e);
    if (!arena) { return; }
    var handled = false;
    Object.keys(KEYS).forEach(function (action) {
      if (handled || KEYS[action].indexOf(e.key) < 0) { return; }
      var button = arena.querySelector('button.abebeats-arena-' + action.replace('_', '-'));
      if (button && !button.disabled) { button.click(); }
      handled = true;
    });
    if (handled) { e.preventDefault(); e.stopImmediatePropagation(); }
  }, true);
})();
"""


def _keys_html() -> str:
    """The shortcut legend, carrying the script in an image's error handler (see module doc)."""
    import json

    script = (
        _SCRIPT.replace("__KEYS__", json.dumps(SHORTCUTS))
        .replace("__TOLERANCE__", repr(SYNC_TOLERANCE_S))
        .strip()
    )
    marks = (
        "var a=this.closest('.abebeats-arena');"
        "if(a){a.setAttribute('data-lm-suppress-shortcuts','true');a.tabIndex=0;}"
    )
    legend = " · ".join(f"{_LABELS[a].lower()}: <kbd>{_e(_key_hint(a))}</kbd>" for a in SHORTCUTS)
    handler = html.escape(marks + script, quote=True)
    return (
        f'<div class="abebeats-arena-keys" style="font-size:12px;color:#555">Keys (click the '
        f"arena first): {legend}"
        f'<img src="data:," alt="" style="display:none" onerror="{handler}"></div>'
    )
