"""Canary keys: run everything with recognisable fake keys and look for them everywhere.

The CLI (generate, compare, resume, report) and notebook 02 run for real (not ``--emulate``)
against the emulators, found through ``*_BASE_URL``, with canary keys in the environment.
Then every artefact is scanned for the key, whole or in part: stdout, stderr, a DEBUG log of
every library, the run store's SQLite bytes (WAL included), reports, and the executed
notebook. So are the repr of every provider object and every exception the faults raise.
A hostile server that echoes the ``Authorization`` header back in its 403 (plain and base64)
must not get the key into any of them either.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from _hostile import PROJECT, Hostile
from _reliability import (
    CANARY_KEYS,
    KEY_VARS,
    PROVIDERS,
    ROUTES,
    leaks,
    point_at,
    reset,
)
from nbclient import NotebookClient

from abebeats_lab import Route, VideoRequest, config
from abebeats_lab.capabilities import nearest
from abebeats_lab.emulator import Emulators, Scenario
from abebeats_lab.emulator.server import serve
from abebeats_lab.errors import LabError
from abebeats_lab.media.download import save_output
from abebeats_lab.providers import Provider, get_provider
from abebeats_lab.waiting import WaitPolicy, wait

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02_compare_providers.ipynb"
CELL_TIMEOUT_S = 180
CLI_TIMEOUT_S = 180
SLOW_JOB_S = 3.0
"""Past the 2 s deadline below (Replicate may hold its create that long and succeed)."""
FAST = WaitPolicy(
    deadline_s=2, min_interval_s=0.05, max_interval_s=0.25, expected_run_s=0.3, spread_s=0.1
)
# Run the CLI in a child with every library logging at DEBUG into a file we can scan.
LOGGED_CLI = (
    "import logging, sys; "
    "logging.basicConfig(level=logging.DEBUG, filename=sys.argv[1]); "
    "from abebeats_lab.cli import main; sys.exit(main(sys.argv[2:]))"
)
FAULTS = (
    Scenario.fast(create_429=5, retry_after_s=0.05),
    Scenario.fast(status_5xx=10, retry_after_s=0.05),
    Scenario.fast(drop_create=1),
    Scenario.fast(malformed_status=1).with_times(0.05, 1.5),
    Scenario.fast(unknown_status=True).with_times(0.05, 1.5),
    Scenario.fast(fail=True),
    Scenario.fast(cancel_elsewhere_after_s=0.05),
    Scenario.fast(truncate_downloads=1),
    Scenario.fast(expire_outputs_after=0),
    Scenario.fast(bad_output=True),
    Scenario.fast().with_times(0.05, SLOW_JOB_S),
)


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    with Emulators(PROVIDERS, Scenario.fast()) as emus:
        yield emus


@pytest.fixture
def env(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> Emulators:
    for provider in PROVIDERS:
        reset(emulators, provider, Scenario.fast())
    return point_at(emulators, monkeypatch)


def _files_under(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file())


def _assert_clean(folder: Path) -> int:
    """Scan every file under ``folder`` (SQLite and WAL bytes included); returns how many."""
    scanned = 0
    for path in _files_under(folder):
        assert leaks(path.read_bytes()) == [], path
        scanned += 1
    return scanned


def _cli(args: list[str], log: Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-c", LOGGED_CLI, str(log), *args]
    return subprocess.run(
        argv, cwd=cwd, env=dict(os.environ), capture_output=True, timeout=CLI_TIMEOUT_S
    )


def test_cli_leaves_no_key_anywhere(env: Emulators, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    routes = [arg for route in ROUTES.values() for arg in ("--route", route)]
    commands = [
        ["generate", "a paper boat", "--route", ROUTES["runway"], "--run-dir", str(runs / "g")],
        ["compare", "a red kite", *routes, "--adapt", "--run-dir", str(runs / "c"), "--json"],
        ["resume", str(runs / "c"), "--json"],
        ["report", str(runs / "c")],
        ["routes"],
    ]
    for number, command in enumerate(commands):
        done = _cli(command, tmp_path / f"cli-{number}.log", tmp_path)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert leaks(done.stdout) == [] and leaks(done.stderr) == [], command
    # A failing run too: errors go to rows, stderr and the report.
    env.set_scenario(Scenario.fast(fail=True, failure_message="rejected (emulated)"))
    failing = ["compare", "a red kite", *routes, "--adapt", "--run-dir", str(runs / "f")]
    done = _cli(failing, tmp_path / "cli-failing.log", tmp_path)
    assert leaks(done.stdout) == [] and leaks(done.stderr) == []
    report = _cli(["report", str(runs / "f")], tmp_path / "cli-report-f.log", tmp_path)
    assert report.returncode == 0, report.stderr.decode()[-2000:]
    assert _assert_clean(tmp_path) >= len(commands) + 6  # logs, stores, WALs, videos, reports
    assert list(runs.rglob("*.html")) and list(runs.rglob("run.sqlite"))
    assert any(p.stat().st_size for p in tmp_path.glob("cli-*.log"))  # DEBUG logs were written


def test_a_server_echoing_the_key_gets_it_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every provider's create is refused with a 403 that quotes the ``Authorization`` header
    (``Bearer``/``Key`` and the key, and ``user:key`` in base64): the rows, stderr, the DEBUG
    log and the report say 403 with the key masked."""
    hostile = Hostile(mode="echo")
    with serve(hostile.app()) as server:
        for name in (*BASE_VARS.values(), *KEY_VARS.values()):
            monkeypatch.delenv(name, raising=False)
        for provider in PROVIDERS:
            monkeypatch.setenv(BASE_VARS[provider], server.url)
            monkeypatch.setenv(KEY_VARS[provider], CANARY_KEYS[provider])
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
        run_dir = tmp_path / "runs" / "echo"
        routes = [arg for route in ROUTES.values() for arg in ("--route", route)]
        compare = ["compare", "a red kite", *routes, "--adapt", "--run-dir", str(run_dir)]
        done = _cli(compare, tmp_path / "cli-echo.log", tmp_path)
        report = _cli(["report", str(run_dir)], tmp_path / "cli-echo-report.log", tmp_path)
    assert report.returncode == 0, report.stderr.decode()[-2000:]
    for output in (done.stdout, done.stderr, report.stdout, report.stderr):
        assert leaks(output) == []
    assert done.stderr.count(b"HTTP 403") >= len(PROVIDERS)  # the errors were printed
    assert {s.path for s in hostile.seen if "authorization" in s.headers} and all(
        s.headers.get("authorization", "").endswith(CANARY_KEYS[_provider_of(s.path)])
        for s in hostile.seen
    )  # the server really had the keys to echo
    stored = (run_dir / "run.sqlite").read_bytes()
    assert b"HTTP 403" in stored and b"***" in stored
    assert list(run_dir.rglob("*.html"))
    assert _assert_clean(tmp_path) >= 4  # store, report, two DEBUG logs


BASE_VARS = {
    "runway": "RUNWAYML_BASE_URL",
    "replicate": "REPLICATE_BASE_URL",
    "veo": "GOOGLE_VERTEX_BASE_URL",
    "pika": "FAL_QUEUE_BASE_URL",
}


def _provider_of(path: str) -> str:
    if path.startswith("/v1/models/"):
        return "replicate"
    if path.startswith("/v1/projects/"):
        return "veo"
    return "runway" if path.startswith("/v1/") else "pika"


def test_notebook_leaves_no_key_in_outputs_or_artefacts(env: Emulators, tmp_path: Path) -> None:
    """Notebook 02 switched to real providers (``EMULATE = False``), keys from the environment."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "EMULATE = True" in cell.source:
            cell.source = cell.source.replace("EMULATE = True", "EMULATE = False")
            # No price is known for replicate:google/veo-3-fast, so any limit refuses the run.
            cell.source = cell.source.replace("MAX_COST_USD = 5.0", "MAX_COST_USD = None")
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": tmp_path}},
    )
    client.execute()
    text = nbformat.writes(nb)
    assert "Report written" in text  # it really ran to the end
    assert "emulated" in text
    assert leaks(text) == []
    assert _assert_clean(tmp_path) > 0


def test_the_scan_finds_a_key_when_there_is_one() -> None:
    """The scanner itself: a leaked key, whole, cut short or base64-encoded, is found."""
    for key in CANARY_KEYS.values():
        assert leaks(key) and leaks(f"Authorization: Bearer {key[:30]}")
        assert leaks(base64.b64encode(f"user:{key}".encode())) or leaks(
            base64.b64encode(key.encode())
        )
    assert leaks("no secrets here, just 'c0ffee' once") == []


async def test_provider_reprs_hide_the_key(env: Emulators) -> None:
    texts = []
    for provider in PROVIDERS:
        for options in (env.client_options(provider), {}):  # an explicit key, then the env
            if options:
                options["api_key"] = CANARY_KEYS[provider]
            async with get_provider(provider, **options) as client:
                texts += [repr(client), str(client), repr(vars(client))]
    texts += [repr(config.key_for(p)) for p in KEY_VARS]
    texts += [str(config.key_for(p)) for p in KEY_VARS]
    assert len(texts) == 2 * 3 * len(PROVIDERS) + 2 * len(KEY_VARS)
    assert [t for t in texts if leaks(t)] == []


async def _one_job(client: Provider, provider: str, folder: Path) -> None:
    route = Route.parse(ROUTES[provider])
    request, _ = nearest(VideoRequest("a red kite over dunes", seed=7), route)
    job = await client.submit(request, route)
    status = (await wait(client, job, policy=FAST)).status
    for ref in await client.outputs(job, status):
        await save_output(ref, folder / "out.mp4")


async def test_fault_exceptions_hide_the_key(env: Emulators, tmp_path: Path) -> None:
    """Every error the scripted faults raise, with its chained causes and traceback."""
    caught: list[BaseException] = []
    for provider in PROVIDERS:
        for scenario in FAULTS:
            reset(env, provider, scenario)
            async with get_provider(provider) as client:
                try:
                    await _one_job(client, provider, tmp_path)
                except LabError as exc:
                    caught.append(exc)
    kinds = {type(exc).__name__ for exc in caught}
    assert {"AmbiguousSubmitError", "JobTimeout", "ProtocolError", "DownloadError"} <= kinds
    for exc in caught:
        text = repr(exc) + str(exc) + "".join(traceback.format_exception(exc))
        assert leaks(text) == [], text
