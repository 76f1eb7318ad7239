"""Job progress on the terminal: live per-route bars on a terminal, one line per new state on a
pipe (so a log or a CI job reads the same story)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from abebeats_lab._types import JobState

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from abebeats_lab.run.job import JobEvent

PROMPT_CHARS = 30
"""A prompt is shortened to about this many characters in progress lines."""
ERROR_CHARS = 100
FINAL_STATES = frozenset(state for state in JobState if state.terminal)


def _short(text: str, limit: int = PROMPT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class JobProgress:
    """Job progress on stderr: live per-route bars on a terminal; on a pipe, one line
    each time a job reaches a state it has not been in (route, prompt, repeat, state)."""

    def __init__(self, expected: Mapping[str, int] | None = None, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.expected = dict(expected or {})
        self.states: dict[tuple[int, str, int], str] = {}
        self.printed: dict[tuple[int, str, int], set[str]] = {}
        self.bars = _Bars(self.stream) if self.stream.isatty() else None

    def __enter__(self) -> JobProgress:
        if self.bars is not None:
            self.bars.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.progress.stop()

    def __call__(self, event: JobEvent) -> None:
        state = str(event.state)
        if event.state is JobState.SUCCEEDED and event.output_path is None:
            return  # the provider is done: "downloading" follows, "succeeded" once it is saved
        self.states[event.key] = state
        if self.bars is not None:
            mine = [s for key, s in self.states.items() if key[1] == event.route]
            self.bars.show(event.route, mine, self.expected.get(event.route, 0))
            return
        seen = self.printed.setdefault(event.key, set())
        if state in seen:
            return
        seen.add(state)
        line = (
            f"{time.monotonic() - self.started:6.1f}s  {event.route}  "
            f"{_short(event.prompt)!r}  #{event.key[2] + 1}  {state}"
        )
        if event.error and state in FINAL_STATES:
            line += f": {_short(event.error, ERROR_CHARS)}"
        print(line, file=self.stream, flush=True)


class _Bars:
    """One rich progress bar per route, with how many of its jobs are in each state."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
        )
        self.tasks: dict[str, TaskID] = {}

    def show(self, route: str, states: Sequence[str], expected: int) -> None:
        total = max(expected, len(states))
        detail = "  ".join(f"{n} {state}" for state, n in sorted(Counter(states).items()))
        if route not in self.tasks:
            self.tasks[route] = self.progress.add_task(route, total=total, detail="")
        done = sum(state in FINAL_STATES for state in states)
        self.progress.update(self.tasks[route], total=total, completed=done, detail=detail)
