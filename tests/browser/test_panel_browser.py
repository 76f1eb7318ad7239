"""The control panel in a real browser: Voila on 127.0.0.1, Debian's chromium via Playwright.

A person's path through the panel: type a prompt, tick two routes, press Generate, watch
two playable videos with their figures appear, export the report; then open that report
with every network request blocked and check that its grid and charts really render. And
the same person cancelling a run whose remote job is still running: each row shows how it
ended, and the partial run exports. And a rater opening the Arena on a finished run and voting
with the keyboard shortcuts only: the votes are rows in the run folder's votes.sqlite.
Screenshots land in ``test-artifacts/`` (gitignored). Never ``playwright install``: the
browser is Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import nbformat
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
    "--disable-dev-shm-usage",
]  # fmt: skip
START_TIMEOUT_S = 60.0
UI_TIMEOUT_MS = 90_000
POLL_S = 0.2
HAVE_METADATA = 1
"""HTMLMediaElement.readyState once duration and size are known: the source decodes."""
PROMPT = "a lighthouse on a cliff in a storm"
ROUTES = ("local:procedural", "runway:gen4.5")
LOCAL, RUNWAY = ROUTES
LONG_RUN_S = 120.0
"""Runway's emulated jobs run this long: still running whenever the test presses Cancel."""
VIEWPORT = {"width": 1400, "height": 1000}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium: "
        "apt-get install -y --no-install-recommends chromium (never `playwright install`)",
    ),
]

PLAYABLE = """els => els.length > 0 && els.every(v =>
    v.currentSrc !== '' && v.readyState >= 1 && v.duration > 0 && v.videoWidth > 0)"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _panel_notebook(folder: Path, runs_dir: Path, *, emulate: bool) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from abebeats_lab.widgets import ControlPanel\n"
            f"panel = ControlPanel(selected=[], emulate={emulate}, runs_dir={str(runs_dir)!r})\n"
            "panel"
        )
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "panel.ipynb"
    nbformat.write(nb, path)
    return path


def _private_env(home: Path) -> dict[str, str]:
    """The current environment with every Jupyter/IPython/matplotlib folder in ``home``."""
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                 "MPLCONFIGDIR"):  # fmt: skip
        env[name] = str(home / name.lower())
    env["HOME"] = str(home)
    return env


def _wait_listening(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"voila exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=POLL_S * 5).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(POLL_S)
    raise TimeoutError(f"voila not listening at {url} after {START_TIMEOUT_S} s")


@contextmanager
def _voila(
    tmp_path: Path, *, emulate: bool, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, Path, Path]]:
    """Voila serving the panel notebook on 127.0.0.1: (url, runs dir, private home).

    ``env`` adds variables to the kernel's environment (keys and base URLs of an emulator).
    """
    home, runs = tmp_path / "home", tmp_path / "runs"
    home.mkdir()
    notebook = _panel_notebook(tmp_path, runs, emulate=emulate)
    port = _free_port()
    command = [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1"]  # fmt: skip
    log = (tmp_path / "voila.log").open("wb")
    process = subprocess.Popen(
        command, cwd=tmp_path, env={**_private_env(home), **(env or {})}, stdout=log, stderr=log
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_listening(url, process)
        yield url, runs, home
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """The panel with its built-in emulators (the emulate box ticked)."""
    with _voila(tmp_path, emulate=True) as served:
        yield served


@pytest.fixture
def served_slow_runway(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """The panel with real clients pointed at a Runway emulator started apart, whose jobs
    run for minutes (as ``abebeats-lab emulate`` plus its printed exports would)."""
    from abebeats_lab.emulator import Emulators, Scenario

    scenario = Scenario.fast().with_times(0.05, LONG_RUN_S)
    with (
        Emulators(["runway"], scenario) as emulators,
        _voila(tmp_path, emulate=False, env=emulators.env()) as served,
    ):
        yield served


def _only(prefix: str, blocked: list[str]):  # type: ignore[no-untyped-def]
    """A Playwright route handler that lets through URLs under ``prefix`` and aborts the rest."""

    def handle(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(prefix):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    return handle


def _start_run(page, url: str) -> None:  # type: ignore[no-untyped-def]
    """Open the panel, type the prompt, tick both routes, press Generate."""
    from playwright.sync_api import expect

    page.goto(url)
    prompt = page.locator(".abebeats-prompt textarea")
    expect(prompt).to_be_visible(timeout=UI_TIMEOUT_MS)
    prompt.fill(PROMPT)
    for route in ROUTES:
        box = page.get_by_label(re.compile("^" + re.escape(route) + " · "))
        box.check()
        expect(box).to_be_checked()
    page.get_by_role("button", name="Generate").click()


def _drive_panel(page, url: str) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    _start_run(page, url)
    videos = page.locator(".abebeats-results video")
    expect(videos).to_have_count(len(ROUTES), timeout=UI_TIMEOUT_MS)
    page.wait_for_function(
        f"() => ({PLAYABLE})(Array.from(document.querySelectorAll('.abebeats-results video')))",
        timeout=UI_TIMEOUT_MS,
    )


def test_panel_generates_side_by_side_and_the_report_opens_offline(
    served: tuple[str, Path, Path],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _runs, home = served
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, env=_private_env(home)
        )
        try:
            context = browser.new_context(viewport=VIEWPORT)
            off_host: list[str] = []
            context.route("**/*", _only(url, off_host))
            page = context.new_page()
            _drive_panel(page, url)
            tables = page.locator(".abebeats-results table.abebeats-figures")
            expect(tables).to_have_count(len(ROUTES))
            expect(tables.filter(has_text="emulated")).to_have_count(1)
            expect(tables.first).to_contain_text("total")
            expect(page.locator(".abebeats-progress-list")).to_contain_text("succeeded")
            expect(page.locator(".abebeats-chart svg")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "panel.png"), full_page=True)

            page.get_by_role("button", name="Export report").click()
            written = page.locator(".abebeats-report code")
            expect(written).to_be_visible(timeout=UI_TIMEOUT_MS)
            report = Path(written.inner_text().strip())
            assert report.is_file()
            _check_report_offline(browser, report)
        finally:
            browser.close()


def _check_report_offline(browser, report: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    fetched: list[str] = []
    context.route("**/*", _only("file://", fetched))
    page = context.new_page()
    page.goto(report.as_uri())
    videos = page.locator(".video-grid video")
    expect(videos).to_have_count(len(ROUTES))
    for index in range(len(ROUTES)):
        expect(videos.nth(index)).to_be_visible()
    page.wait_for_function(
        f"() => ({PLAYABLE})(Array.from(document.querySelectorAll('.video-grid video')))"
    )
    for chart in (".timing-chart svg", ".cost-chart svg"):
        expect(page.locator(chart)).to_be_visible()
        box = page.locator(chart).bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50
    expect(page.locator("#summary-per-route .badge", has_text="emulated")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert fetched == [], f"the report tried to fetch {fetched}"


def test_cancel_shows_how_each_job_ended_and_the_partial_run_exports(
    served_slow_runway: tuple[str, Path, Path],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _runs, home = served_slow_runway
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, env=_private_env(home)
        )
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.route("**/*", _only(url, []))
            page = context.new_page()
            _start_run(page, url)
            lines = page.locator(".abebeats-progress")
            local, runway = (lines.filter(has_text=route) for route in ROUTES)
            expect(local).to_contain_text("succeeded", timeout=UI_TIMEOUT_MS)
            expect(runway).to_contain_text("running", timeout=UI_TIMEOUT_MS)
            page.get_by_role("button", name="Cancel").click()

            expect(runway.locator(".abebeats-state")).to_have_text(
                "canceled", timeout=UI_TIMEOUT_MS
            )
            expect(local.locator(".abebeats-state")).to_have_text("succeeded")
            expect(page.locator(".abebeats-status")).to_contain_text(
                "Cancelled: 1 of 2 jobs succeeded"
            )
            expect(page.locator(".abebeats-results video")).to_have_count(1)
            expect(
                page.locator(".abebeats-results .abebeats-cell", has_text=RUNWAY)
            ).to_contain_text("canceled")
            export = page.get_by_role("button", name="Export report")
            expect(export).to_be_enabled()
            page.screenshot(path=str(ARTIFACTS / "panel-cancelled.png"), full_page=True)

            export.click()
            written = page.locator(".abebeats-report code")
            expect(written).to_be_visible(timeout=UI_TIMEOUT_MS)
            report = Path(written.inner_text().strip())
            assert report.is_file()
            _check_partial_report(browser, report)
        finally:
            browser.close()


def _check_partial_report(browser, report: Path) -> None:  # type: ignore[no-untyped-def]
    """The report of a cancelled run: the finished video plays, the cancelled job is listed."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport=VIEWPORT)
    fetched: list[str] = []
    context.route("**/*", _only("file://", fetched))
    page = context.new_page()
    page.goto(report.as_uri())
    expect(page.locator(".video-grid video")).to_have_count(1)
    page.wait_for_function(
        f"() => ({PLAYABLE})(Array.from(document.querySelectorAll('.video-grid video')))"
    )
    cancelled = page.locator("table.failures tbody tr")
    expect(cancelled).to_have_count(1)
    expect(cancelled).to_contain_text(RUNWAY)
    expect(cancelled).to_contain_text("canceled")
    page.screenshot(path=str(ARTIFACTS / "report-cancelled.png"), full_page=True)
    assert fetched == [], f"the report tried to fetch {fetched}"


ARENA_KEYS = (("1", "left"), ("2", "right"), ("3", "tie"), ("4", "both bad"))
ARENA_VIDEOS = ".abebeats-arena video"


def test_arena_votes_with_the_keyboard_and_stores_the_rows(
    served: tuple[str, Path, Path],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from abebeats_lab.quality.votes import VOTES_DB, VoteStore
    from abebeats_lab.run.api import load_run

    url, runs, home = served
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, env=_private_env(home)
        )
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.route("**/*", _only(url, []))
            page = context.new_page()
            _drive_panel(page, url)
            page.get_by_role("button", name="Arena").click()
            expect(page.locator(ARENA_VIDEOS)).to_have_count(2, timeout=UI_TIMEOUT_MS)
            # Both play, muted, started together by the arena's script (no timing asserted).
            page.wait_for_function(
                f"() => {{ const els = Array.from(document.querySelectorAll('{ARENA_VIDEOS}'));"
                f" return ({PLAYABLE})(els) && els.every(v => v.muted && !v.paused); }}",
                timeout=UI_TIMEOUT_MS,
            )
            page.locator(".abebeats-arena-prompt").click()  # focus the arena, as a rater would
            status = page.locator(".abebeats-arena-status")
            for key, said in ARENA_KEYS:
                page.keyboard.press(key)
                expect(status).to_contain_text(f"Vote saved ({said})", timeout=UI_TIMEOUT_MS)
            page.keyboard.press("u")
            expect(status).to_contain_text("Last vote removed", timeout=UI_TIMEOUT_MS)
            page.screenshot(path=str(ARTIFACTS / "arena.png"), full_page=True)
        finally:
            browser.close()
    (run_dir,) = [d for d in runs.iterdir() if (d / VOTES_DB).is_file()]
    with VoteStore(run_dir) as store:
        votes = store.all()
    assert [v.choice for v in votes] == ["left", "right", "tie"]
    assert all({v.left, v.right} == set(ROUTES) for v in votes)
    assert {v.run_id for v in votes} == {load_run(run_dir).run_id}
