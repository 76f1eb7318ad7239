"""The control panel, driven headlessly: set trait values, press buttons, read what it shows.

Every run goes through the real runner: ``local:procedural`` renders on this machine and the
remote routes are served by the built-in emulators on 127.0.0.1 (``emulate=True``, or an
emulator started apart, found through the environment as a user's ``abebeats-lab emulate``).
"""

from __future__ import annotations

import asyncio
import gc
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.run.api import load_run
from abebeats_lab.widgets import ControlPanel
from abebeats_lab.widgets.panel import ROUTE_DEFAULT

LOCAL, RUNWAY = "local:procedural", "runway:gen4.5"
PIKA, VEO_FAST = "pika:fal-ai/pika/v2.2/text-to-video", "veo:veo-3.1-fast-generate-001"
PROMPT = "a paper boat drifting on a calm lake"
MP4_BOX = b"ftyp"
SECRET = "key_" + "s" * 60
LONG_RUN = Scenario.fast().with_times(0.05, 120.0)
"""Remote jobs that are still running whenever the test cancels them."""
POLL_S = 0.02
EMULATOR_THREAD = "emulator-"
"""Name prefix of an in-process emulator's server thread."""
PROGRESS_LINE = re.compile(
    r'<code>(?P<route>[^<]*)</code>.*class="abebeats-state"[^>]*>(?P<state>[^<]*)<'
)


def _panel(tmp_path: Path, *selected: str, emulate: bool = True) -> ControlPanel:
    panel = ControlPanel(
        selected=selected, emulate=emulate, runs_dir=tmp_path / "runs", prompt=PROMPT
    )
    panel.duration.value = 2
    if "360p" in _values(panel.resolution):
        panel.resolution.value = "360p"  # short and small: a click that finishes in seconds
    return panel


def _find(widget: object, type_name: str) -> list[object]:
    """Every descendant widget of one type, depth first (what a reader would see)."""
    found = [widget] if type(widget).__name__ == type_name else []
    for child in getattr(widget, "children", ()):
        found += _find(child, type_name)
    return found


def _values(dropdown: object) -> list[object]:
    return [value for _label, value in dropdown.options]  # type: ignore[attr-defined]


def _html_of(widget: object) -> str:
    return " ".join(h.value for h in _find(widget, "HTML"))  # type: ignore[attr-defined]


def _states(panel: ControlPanel) -> dict[str, str]:
    """The state each progress line shows, by route."""
    found = (PROGRESS_LINE.search(row.value) for row in panel.progress.children)
    return {m["route"]: m["state"] for m in found if m is not None}


def _cell_html(panel: ControlPanel, route: str) -> str:
    cells = [c for c in _find(panel.results, "VBox") if "abebeats-cell" in c._dom_classes]  # type: ignore[attr-defined]
    return next(_html_of(c) for c in cells if f"<code>{route}</code>" in _html_of(c))


async def _until(panel: ControlPanel, wanted: dict[str, set[str]]) -> None:
    """Wait (on the loop, as a user would) until each route's line shows one of its states."""
    while not all(_states(panel).get(r) in states for r, states in wanted.items()):
        assert panel.task is not None and not panel.task.done(), panel.status.value
        await asyncio.sleep(POLL_S)


def _catch_loop_errors() -> list[dict[str, Any]]:
    """What the loop would log (e.g. "Task exception was never retrieved"), kept for asserts."""
    caught: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: caught.append(ctx))
    return caught


def _left_behind() -> set[asyncio.Task[Any]]:
    """Tasks still pending besides the test itself, after unreachable ones are collected."""
    gc.collect()
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def _emulator_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(EMULATOR_THREAD)}


@pytest.fixture
def slow_runway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    """Runway's emulator started apart, with jobs that run for minutes; found through env."""
    with Emulators(["runway"], LONG_RUN) as emulators:
        for name, value in emulators.env().items():
            monkeypatch.setenv(name, value)
        yield emulators


def test_picker_says_which_routes_have_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel = _panel(tmp_path, LOCAL, RUNWAY, emulate=False)
    runway = panel.route_boxes[RUNWAY]
    assert runway.disabled and "no key (RUNWAYML_API_SECRET)" in runway.description
    assert panel.selected_routes == [LOCAL]
    assert panel.route_boxes[LOCAL].description.endswith("no key needed")
    monkeypatch.setenv("RUNWAYML_API_SECRET", SECRET)
    panel.emulate.value = True
    panel.emulate.value = False
    assert not runway.disabled and runway.description.endswith("key set")
    assert SECRET not in runway.description
    panel.emulate.value = True
    assert all(
        box.description.endswith("emulated") for r, box in panel.route_boxes.items() if r != LOCAL
    )


def test_settings_offer_only_what_every_ticked_route_takes(tmp_path: Path) -> None:
    panel = _panel(tmp_path, LOCAL)
    assert "240p" in _values(panel.resolution) and not panel.audio.disabled
    panel.audio.value = True
    panel.resolution.value = "240p"
    panel.route_boxes[RUNWAY].value = True
    # Each setting offers the routes' own defaults first, then what every ticked route takes.
    assert _values(panel.resolution) == [ROUTE_DEFAULT, "720p"]
    assert panel.resolution.value == ROUTE_DEFAULT  # 240p is gone: back to the defaults
    assert set(_values(panel.aspect_ratio)) == {ROUTE_DEFAULT, "16:9", "9:16"}
    assert panel.audio.disabled and panel.audio.value is False
    assert panel.negative_prompt.disabled
    panel.route_boxes[RUNWAY].value = False
    panel.route_boxes[PIKA].value = True
    panel.route_boxes[VEO_FAST].value = True
    # No duration fits all three: their own defaults need no adapting; a chosen value does.
    assert panel.duration.value == ROUTE_DEFAULT and panel.settings_note.value == ""
    panel.duration.value = 5
    assert "nearest allowed value" in panel.settings_note.value
    assert "durations" in panel.settings_note.value


def test_bad_input_is_shown_in_place(tmp_path: Path) -> None:
    panel = _panel(tmp_path, LOCAL)
    panel.prompt.value = "   "
    panel.generate_button.click()
    assert "prompt" in panel.status.value and "abebeats-error" in panel.status.value
    assert panel.task is None
    panel.prompt.value = PROMPT
    panel.seed.value = "seven"
    panel.generate_button.click()
    assert "seed=" in panel.status.value and panel.task is None


def test_generate_without_a_running_loop_says_so(tmp_path: Path) -> None:
    panel = _panel(tmp_path, LOCAL)
    panel.generate_button.click()
    assert "No running event loop" in panel.status.value


async def test_generate_runs_in_the_background_and_shows_videos(tmp_path: Path) -> None:
    panel = _panel(tmp_path, LOCAL, RUNWAY)
    panel.generate_button.click()
    # The click returned while the comparison is still in flight: the loop is not blocked.
    assert panel.task is not None and not panel.task.done()
    assert panel.generate_button.disabled and not panel.cancel_button.disabled
    await panel.wait()
    assert len(panel.progress.children) == 2
    lines = [row.value for row in panel.progress.children]
    assert all("succeeded" in line for line in lines)
    assert sum("emulated" in line for line in lines) == 1
    videos = _find(panel.results, "Video")
    assert len(videos) == 2
    assert all(v.value[4:8] == MP4_BOX for v in videos)  # type: ignore[attr-defined]
    cells = [c for c in _find(panel.results, "VBox") if "abebeats-cell" in c._dom_classes]  # type: ignore[attr-defined]
    by_route = {
        r: next(_html_of(c) for c in cells if f"<code>{r}</code>" in _html_of(c))
        for r in (LOCAL, RUNWAY)
    }
    assert "abebeats-figures" in by_route[RUNWAY] and "emulated" in by_route[RUNWAY]
    assert "emulated" not in by_route[LOCAL]
    assert "total" in by_route[LOCAL] and "duration ✓" in by_route[LOCAL]
    assert panel.chart.value.startswith("<svg")
    assert "2 of 2 jobs succeeded" in panel.status.value
    assert not panel.generate_button.disabled and not panel.export_button.disabled


async def test_history_keeps_earlier_prompts_for_editing(tmp_path: Path) -> None:
    panel = _panel(tmp_path, LOCAL)
    panel.generate_button.click()
    await panel.wait()
    panel.prompt.value = "a second idea"
    panel.generate_button.click()
    await panel.wait()
    assert panel.prompt_history == ["a second idea", PROMPT]
    panel.history.value = PROMPT
    assert panel.prompt.value == PROMPT
    rows = load_run(panel.comparison.run_dir).to_pandas()
    assert list(rows["prompt"]) == ["a second idea"]


async def test_runner_errors_are_shown_in_place(tmp_path: Path) -> None:
    panel = _panel(tmp_path, RUNWAY)
    panel.prompt.value = "x" * 1001  # gen4.5 takes at most 1000 UTF-16 units
    panel.generate_button.click()
    await panel.wait()
    assert "ValidationError" in panel.status.value and "at most 1000" in panel.status.value
    assert panel.comparison is None and panel.export_button.disabled
    assert not panel.generate_button.disabled


async def test_cancel_stops_the_comparison_and_shows_how_each_job_ended(tmp_path: Path) -> None:
    loop_errors = _catch_loop_errors()
    panel = _panel(tmp_path, RUNWAY)
    panel.generate_button.click()
    await _until(panel, {RUNWAY: {"queued", "running"}})
    panel.cancel_button.click()
    assert panel.cancel_button.disabled  # one cancel: a second would cut the settling short
    await panel.wait()
    assert panel.task is not None and panel.task.cancelled()
    assert "Cancelled: 0 of 1 jobs succeeded" in panel.status.value
    (run_dir,) = (tmp_path / "runs").iterdir()
    stored = list(load_run(run_dir).to_pandas()["state"])
    assert stored == ["canceled"]
    assert _states(panel) == {RUNWAY: "canceled"}
    assert "<td>canceled</td>" in _cell_html(panel, RUNWAY)
    assert panel.comparison is not None and Path(panel.comparison.run_dir) == run_dir
    assert not panel.generate_button.disabled and panel.cancel_button.disabled
    assert not panel.export_button.disabled
    assert _left_behind() == set() and loop_errors == []


async def test_cancel_keeps_finished_jobs_and_the_partial_run_exports(
    tmp_path: Path, slow_runway: Emulators
) -> None:
    loop_errors = _catch_loop_errors()
    panel = _panel(tmp_path, LOCAL, RUNWAY, emulate=False)  # Runway: "key set", from the env
    assert panel.selected_routes == [LOCAL, RUNWAY]
    panel.generate_button.click()
    await _until(panel, {LOCAL: {"succeeded"}, RUNWAY: {"running"}})
    panel.cancel_button.click()
    await panel.wait()
    assert panel.task is not None and panel.task.cancelled()
    assert _states(panel) == {LOCAL: "succeeded", RUNWAY: "canceled"}
    assert "Cancelled: 1 of 2 jobs succeeded before the cancel (1 canceled)" in panel.status.value
    assert "<td>succeeded</td>" in _cell_html(panel, LOCAL)
    assert "<td>canceled</td>" in _cell_html(panel, RUNWAY)
    assert "comparison cancelled" in _cell_html(panel, RUNWAY)
    assert len(_find(panel.results, "Video")) == 1  # the finished job's video is kept
    (job,) = slow_runway.states["runway"].jobs.values()
    assert job.canceled_at is not None  # the remote job was cancelled, not left running
    assert _left_behind() == set() and loop_errors == []

    assert not panel.export_button.disabled
    panel.export_button.click()
    await panel.wait()
    assert panel.report_path is not None and str(panel.report_path) in panel.report.value
    report = panel.report_path.read_text(encoding="utf-8")
    assert report.count("<video") == 1
    failures = report.split("Failures", 1)[1]
    assert RUNWAY in failures and "<td>canceled</td>" in failures
    assert LOCAL not in failures


async def test_cancel_before_the_run_starts_says_nothing_was_sent(tmp_path: Path) -> None:
    panel = _panel(tmp_path, LOCAL)
    panel.generate_button.click()
    panel.cancel_button.click()  # in the same loop step: the task has not begun
    await panel.wait()
    assert panel.task is not None and panel.task.cancelled()
    assert "Cancelled before any job was sent" in panel.status.value
    assert panel.comparison is None and panel.export_button.disabled
    assert not panel.generate_button.disabled and panel.cancel_button.disabled


async def test_export_writes_the_report(tmp_path: Path) -> None:
    panel = _panel(tmp_path, LOCAL)
    panel.generate_button.click()
    await panel.wait()
    panel.export_button.click()
    await panel.wait()
    assert panel.report_path is not None and panel.report_path.is_file()
    assert panel.report_path.parent == Path(panel.comparison.run_dir)
    assert str(panel.report_path) in panel.report.value
    assert "<video" in panel.report_path.read_text(encoding="utf-8")


async def test_cancel_while_the_emulators_start_leaves_none_running(tmp_path: Path) -> None:
    earlier = _emulator_threads()
    panel = _panel(tmp_path, RUNWAY)
    panel.generate_button.click()
    while not _emulator_threads() - earlier:  # the emulator is starting in a worker thread
        assert panel.task is not None and not panel.task.done()
        await asyncio.sleep(POLL_S / 20)
    panel.cancel_button.click()
    await panel.wait()
    assert "Cancelled before any job was sent" in panel.status.value
    assert _emulator_threads() - earlier == set()  # no server left serving in the kernel
