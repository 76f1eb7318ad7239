"""Settings nobody chose come from the route; settings a user chose are kept or refused.

Issue 13 §2: with no ``--duration`` every Veo-family route used to be sent 5 s and refuse it.
Each path a user takes is driven for real: the CLI as a subprocess, the Python API, the panel
built and clicked, against the built-in emulators (``local:procedural`` renders here).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _runner_support import FAST, LOCAL, RUNWAY, VEO, run_cli

from abebeats_lab import Settings, VideoRequest, capabilities
from abebeats_lab.errors import ValidationError
from abebeats_lab.media.probe import probe
from abebeats_lab.run import api as runner
from abebeats_lab.store import JobRow

PROMPT = "a paper boat drifting on a calm lake"
VEO_DEFAULT_S = 8
"""Vertex Veo's documented durationSeconds default (capabilities/veo.toml)."""
HOUSE_DEFAULT_S = 5
VEO_DURATIONS = "4, 6, 8"
NEAREST_TO_FIVE_ON_VEO = 4
"""``nearest`` breaks the 4/6 tie towards the shorter, cheaper clip."""
FILLED = {"duration_s", "aspect_ratio", "resolution"}
DURATION_TOLERANCE_S = 0.1
RUNS = "abebeats-runs"


def _only_run(cwd: Path) -> list[JobRow]:
    (run_dir,) = (cwd / RUNS).iterdir()
    return runner.load_run(run_dir).rows


def _by_route(rows: list[JobRow]) -> dict[str, JobRow]:
    return {row.route: row for row in rows}


def _assert_defaulted(row: JobRow, duration_s: int) -> None:
    """The row sent the route's defaults and records each one as chosen by nobody."""
    assert row.state == "succeeded", row.error
    assert row.settings["duration_s"] == duration_s
    caps = capabilities.capabilities_for(row.route)
    assert row.adjusted == {name: [None, caps.default(name)] for name in FILLED}
    assert row.duration_s is not None
    assert abs(row.duration_s - duration_s) < DURATION_TOLERANCE_S


# ------------------------------------------------------------------------------- data


def test_every_route_names_its_own_allowed_defaults() -> None:
    for caps in capabilities.all_routes():
        assert set(caps.defaults) == FILLED, caps.pattern
        assert caps.defaults["duration_s"] in caps.durations
        assert caps.defaults["aspect_ratio"] in caps.aspect_ratios
        assert caps.defaults["resolution"] in caps.resolutions


def test_refused_five_seconds_is_no_default_anywhere() -> None:
    for route in (VEO, "replicate:google/veo-3-fast", "runway:veo3.1_fast", "runway:veo3.1"):
        assert capabilities.capabilities_for(route).default("duration_s") == VEO_DEFAULT_S
    assert capabilities.capabilities_for("replicate:minimax/video-01").default("duration_s") == 6
    for route in (LOCAL, RUNWAY, "pika:fal-ai/pika/v2.2/text-to-video"):
        assert capabilities.capabilities_for(route).default("duration_s") == HOUSE_DEFAULT_S


def test_a_route_default_is_filled_only_where_nothing_was_chosen() -> None:
    filled, recorded = capabilities.with_defaults(VideoRequest(PROMPT, resolution="1080p"), VEO)
    assert filled.shape() == (VEO_DEFAULT_S, "16:9", "1080p")
    assert recorded == {"duration_s": [None, VEO_DEFAULT_S], "aspect_ratio": [None, "16:9"]}


# -------------------------------------------------------------------------------- CLI


def test_cli_generate_on_veo_without_settings_uses_the_route_default(tmp_path: Path) -> None:
    done = run_cli("generate", "--route", VEO, PROMPT, "--emulate", "--out", "x.mp4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert abs(probe(tmp_path / "x.mp4").duration_s - VEO_DEFAULT_S) < DURATION_TOLERANCE_S
    (row,) = _only_run(tmp_path)
    _assert_defaulted(row, VEO_DEFAULT_S)


def test_cli_compare_without_settings_gives_each_route_its_default(tmp_path: Path) -> None:
    args = ["compare", PROMPT, "--route", VEO, "--route", RUNWAY, "--route", LOCAL]
    done = run_cli(*args, "--emulate", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = {row["route"]: row for row in json.loads(done.stdout)}
    assert printed[VEO]["adjusted"]["duration_s"] == [None, VEO_DEFAULT_S]
    rows = _by_route(_only_run(tmp_path))
    _assert_defaulted(rows[VEO], VEO_DEFAULT_S)
    _assert_defaulted(rows[RUNWAY], HOUSE_DEFAULT_S)
    _assert_defaulted(rows[LOCAL], HOUSE_DEFAULT_S)


@pytest.mark.parametrize("command", ["generate", "compare"])
def test_cli_a_chosen_duration_the_route_refuses_fails_before_any_job(
    tmp_path: Path, command: str
) -> None:
    done = run_cli(command, PROMPT, "--route", VEO, "--duration", "5", "--emulate", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "duration_s=5" in lines[0] and VEO_DURATIONS in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / RUNS).exists()  # no run, so no job was ever sent


def test_cli_generate_adapt_snaps_a_chosen_duration_and_records_it(tmp_path: Path) -> None:
    done = run_cli(
        "generate", "--route", VEO, PROMPT, "--duration", "5", "--adapt", "--emulate",
        "--out", "x.mp4", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = _only_run(tmp_path)
    assert row.state == "succeeded", row.error
    assert row.settings["duration_s"] == NEAREST_TO_FIVE_ON_VEO
    assert row.adjusted["duration_s"] == [HOUSE_DEFAULT_S, NEAREST_TO_FIVE_ON_VEO]
    assert row.adjusted["resolution"] == [None, "720p"]


def test_cli_help_says_unset_settings_are_the_routes_own(tmp_path: Path) -> None:
    done = run_cli("generate", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    flat = " ".join(done.stdout.split())
    assert flat.count("default: the route's own") == len(FILLED)
    assert "--adapt" in flat


# ------------------------------------------------------------------------- Python API


async def test_api_compare_with_no_settings_gives_each_route_its_default(tmp_path: Path) -> None:
    result = await runner.compare(
        PROMPT, [VEO, RUNWAY, LOCAL], Settings(),
        emulate=True, policy=FAST, run_dir=tmp_path / "run",
    )  # fmt: skip
    rows = _by_route(result.rows)
    _assert_defaulted(rows[VEO], VEO_DEFAULT_S)
    _assert_defaulted(rows[RUNWAY], HOUSE_DEFAULT_S)
    _assert_defaulted(rows[LOCAL], HOUSE_DEFAULT_S)


async def test_api_a_chosen_duration_is_refused_unless_adapted(tmp_path: Path) -> None:
    chosen = Settings(duration_s=HOUSE_DEFAULT_S)
    with pytest.raises(
        ValidationError, match=f"duration_s=5 is not allowed; allowed: {VEO_DURATIONS}"
    ):
        await runner.compare(PROMPT, [VEO, LOCAL], chosen, emulate=True, run_dir=tmp_path / "no")
    with pytest.raises(ValidationError, match="duration_s=5"):
        await runner.generate(PROMPT, [VEO], chosen, emulate=True, run_dir=tmp_path / "no")
    assert not (tmp_path / "no").exists()
    result = await runner.generate(
        PROMPT, [VEO], chosen, emulate=True, policy=FAST, run_dir=tmp_path / "run", adapt=True
    )
    assert result.row.settings["duration_s"] == NEAREST_TO_FIVE_ON_VEO
    assert result.row.adjusted["duration_s"] == [HOUSE_DEFAULT_S, NEAREST_TO_FIVE_ON_VEO]


async def test_api_dry_run_prices_each_route_at_its_default() -> None:
    plan = await runner.compare(PROMPT, [VEO, RUNWAY], dry_run=True)
    rows = _by_route(plan.rows)
    veo_rate = capabilities.capabilities_for(VEO).price.usd_per_s
    assert veo_rate is not None and rows[VEO].cost_estimate_usd == pytest.approx(
        veo_rate * VEO_DEFAULT_S
    )
    assert rows[RUNWAY].settings["duration_s"] == HOUSE_DEFAULT_S


# ------------------------------------------------------------------------------ panel


def _values(dropdown: object) -> list[object]:
    return [value for _label, value in dropdown.options]  # type: ignore[attr-defined]


async def test_panel_offers_the_route_default_and_generates_with_it(tmp_path: Path) -> None:
    from abebeats_lab.widgets import ControlPanel
    from abebeats_lab.widgets.panel import ROUTE_DEFAULT

    panel = ControlPanel(selected=[VEO], emulate=True, runs_dir=tmp_path / "runs", prompt=PROMPT)
    assert panel.selected_routes == [VEO]
    assert panel.duration.value == ROUTE_DEFAULT
    assert f"({VEO_DEFAULT_S})" in panel.duration.label
    assert HOUSE_DEFAULT_S not in _values(panel.duration)
    assert _values(panel.duration) == [ROUTE_DEFAULT, 4, 6, 8]
    panel.generate_button.click()
    await panel.wait()
    assert "1 of 1 jobs succeeded" in panel.status.value, panel.status.value
    (row,) = panel.comparison.rows
    _assert_defaulted(row, VEO_DEFAULT_S)


def test_panel_with_routes_sharing_no_duration_needs_no_adapting(tmp_path: Path) -> None:
    from abebeats_lab.widgets import ControlPanel
    from abebeats_lab.widgets.panel import ROUTE_DEFAULT

    pika = "pika:fal-ai/pika/v2.2/text-to-video"
    panel = ControlPanel(selected=[VEO, pika], emulate=True, runs_dir=tmp_path, prompt=PROMPT)
    assert panel.duration.value == ROUTE_DEFAULT and panel.settings_note.value == ""
    assert panel.request().duration_s is None
    panel.duration.value = HOUSE_DEFAULT_S
    assert "nearest allowed value" in panel.settings_note.value
