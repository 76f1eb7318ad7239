"""Routes grouped by the model they sell: ``routes`` (and ``--model``), ``compare(model=...)``,
the report's same-model section and the demo's three resellers of one model (issue 16)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from _runner_support import run_cli

from abebeats_lab import capabilities
from abebeats_lab.cli.run_commands import DEMO_ROUTES
from abebeats_lab.emulator import EMULATOR_KEYS
from abebeats_lab.errors import MissingKeyError, ValidationError
from abebeats_lab.run import api as runner
from abebeats_lab.views import report

MODEL = "veo-3.1-fast"
VEO31_FAL = "fal:fal-ai/veo3.1"
PIKA = "pika:fal-ai/pika/v2.2/text-to-video"
SEEDANCE_FAL = "fal:bytedance/seedance-2.0/text-to-video"
SELLERS = {"veo:veo-3.1-fast-generate-001", "fal:fal-ai/veo3.1/fast", "runway:veo3.1_fast"}
MIN_ROUTES, MIN_FAMILIES = 25, 8
LINE_MAX = 100
PRICE_CELL = -1


def _table(stdout: str) -> dict[str, list[str]]:
    """``routes`` output as {route: cells}: rows are the lines that start with a route."""
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        route = cells[0] if cells else ""
        if ":" in route and not route.endswith(":") and not line.startswith("#"):
            rows[cells[0]] = cells
    return rows


def test_routes_lists_many_concrete_routes_over_many_families(tmp_path: Path) -> None:
    done = run_cli("routes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(len(line) <= LINE_MAX for line in done.stdout.splitlines())
    listed = _table(done.stdout)
    rows = {route: cells for route, cells in listed.items() if "*" not in route}
    assert len(rows) >= MIN_ROUTES
    families = {cells[1].split("-")[0] for cells in rows.values()}
    assert len(families) >= MIN_FAMILIES, families
    unknown = [route for route, cells in rows.items() if cells[PRICE_CELL] == "unknown"]
    for route, cells in rows.items():
        assert (
            cells[PRICE_CELL].endswith("/s") or cells[PRICE_CELL] == "free" or route in unknown
        ), cells
    unknown_listed = sum(cells[PRICE_CELL] == "unknown" for cells in listed.values())
    assert f"no trustworthy price found for {unknown_listed} route(s)" in done.stdout
    for model in {rows[route][1] for route in unknown}:
        explained = run_cli("routes", "--model", model, cwd=tmp_path).stdout
        for route in (r for r in unknown if rows[r][1] == model):
            assert f"{route}: price unknown: " in " ".join(explained.split())


def test_every_route_has_a_price_or_an_unknown_with_a_reason() -> None:
    for caps in capabilities.all_routes():
        price = caps.price
        if price.usd_per_s is None and price.per_video_usd is None and not price.tiers:
            reason = price.source.removeprefix("unknown:").strip()
            assert price.source.startswith("unknown:") and len(reason) > 20, caps.pattern
        assert price.date, caps.pattern


def test_every_catalogue_key_has_a_price_or_an_unknown_with_a_reason() -> None:
    """(route, resolution, duration, audio) for every value each route offers."""
    for caps in capabilities.all_routes():
        for resolution, duration, audio in itertools.product(
            caps.resolutions, caps.durations, (False, True) if caps.audio else (False,)
        ):
            quote = capabilities.price_of(
                caps.pattern, resolution=resolution, duration_s=duration, audio=audio
            )
            key = (caps.pattern, resolution, duration, audio)
            assert quote.date, key
            if quote.known:
                assert quote.usd is not None and quote.usd >= 0 and quote.source, key
            else:
                reason = quote.source.removeprefix("unknown:").strip()
                assert quote.source.startswith("unknown:") and len(reason) > 20, key


def test_one_lookup_prices_resolution_duration_and_audio() -> None:
    audio = capabilities.price_of(VEO31_FAL, resolution="1080p", duration_s=8, audio=True)
    silent = capabilities.price_of(VEO31_FAL, resolution="1080p", duration_s=8)
    assert (audio.usd_per_s, audio.usd, silent.usd) == (0.40, 3.2, 1.6)
    five = capabilities.price_of(PIKA, resolution="1080p", duration_s=5)
    ten = capabilities.price_of(PIKA, resolution="1080p", duration_s=10)
    assert (five.usd, five.per_video, ten.usd) == (0.45, True, 0.90)
    assert ten.source.startswith("UNCONFIRMED") and not five.source.startswith("UNCONFIRMED")
    low = capabilities.price_of(SEEDANCE_FAL, resolution="480p")
    assert not low.known and low.source.startswith("unknown: only a 720p price")
    assert capabilities.price_of(SEEDANCE_FAL, resolution="720p").known
    mine = capabilities.price_of(PIKA, resolution="1080p", duration_s=10, prices={PIKA: 0.01})
    assert (mine.usd, mine.source) == (0.1, capabilities.USER_SOURCE)
    with pytest.raises(ValidationError, match="720p, 1080p"):
        capabilities.price_of(PIKA, resolution="4k")
    with pytest.raises(ValidationError, match="no audio"):
        capabilities.price_of(PIKA, audio=True)


def test_routes_model_shows_the_catalogue_and_a_run_costs_what_it_says(tmp_path: Path) -> None:
    listed = " ".join(run_cli("routes", "--model", "veo-3.1", cwd=tmp_path).stdout.split())
    assert f"{VEO31_FAL}: price 720p,1080p $0.200/s, with audio $0.400/s (source: fal.ai/" in (
        listed
    )
    pika = " ".join(run_cli("routes", "--model", "pika-2.2", cwd=tmp_path).stdout.split())
    assert f"{PIKA}: price 720p 5 s $0.20, 10 s $0.40; 1080p 5 s $0.45, 10 s $0.90" in pika
    done = run_cli(
        "compare", "a kite", "--route", VEO31_FAL, "--resolution", "1080p", "--audio",
        "--duration", "8", "--emulate", "--run-dir", "run", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    quote = capabilities.price_of(VEO31_FAL, resolution="1080p", duration_s=8, audio=True)
    (row,) = runner.load_run(tmp_path / "run").rows
    assert (row.cost_estimate_usd, row.price_source, row.cost_usd) == (quote.usd, quote.source, 0)
    line = next(line for line in done.stdout.splitlines() if line.startswith(VEO31_FAL))
    assert "$0.400/s" in line
    written = run_cli("report", "run", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "$0.400/s" in Path(written.stdout.strip()).read_text(encoding="utf-8")
    assert runner.load_run(tmp_path / "run").summary()["price_usd_per_s"][VEO31_FAL] == 0.4


def test_routes_lines_fit_100_columns_with_a_user_price(tmp_path: Path) -> None:
    longest = max((c.pattern for c in capabilities.all_routes()), key=len)
    folder = Path(os.environ["ABEBEATS_LAB_CONFIG_DIR"])
    folder.mkdir(parents=True)
    (folder / "prices.toml").write_text(f'"{longest}" = 0.1\n', encoding="utf-8")
    done = run_cli("routes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(len(line) <= LINE_MAX for line in done.stdout.splitlines()), done.stdout
    assert _table(done.stdout)[longest][PRICE_CELL] == "$0.100/s"
    assert f"your price (prices.toml or --price): {longest}" in " ".join(done.stdout.split())
    model = capabilities.capabilities_for(longest).model
    alone = run_cli("routes", "--model", model, cwd=tmp_path).stdout
    assert all(len(line) <= LINE_MAX for line in alone.splitlines()), alone
    assert f"{longest}: price " in alone and "(source: user, " in " ".join(alone.split())


def test_routes_model_groups_the_resellers_of_one_model(tmp_path: Path) -> None:
    done = run_cli("routes", "--model", MODEL, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = _table(done.stdout)
    assert set(rows) == SELLERS and {cells[1] for cells in rows.values()} == {MODEL}
    assert "FAL_KEY missing (use --emulate)" in done.stdout
    unknown = run_cli("routes", "--model", "sora-2", cwd=tmp_path)
    assert unknown.returncode == 2 and MODEL in unknown.stderr


def test_model_expansion_needs_a_key_or_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {str(r) for r in runner.model_routes(MODEL, emulate=True)} == SELLERS
    with pytest.raises(MissingKeyError, match="--emulate") as caught:
        runner.model_routes(MODEL)
    assert "FAL_KEY" in str(caught.value) and MODEL in str(caught.value)
    monkeypatch.setenv("FAL_KEY", EMULATOR_KEYS["fal"])
    assert [str(r) for r in runner.model_routes(MODEL)] == ["fal:fal-ai/veo3.1/fast"]


async def test_compare_by_model_runs_every_reseller_and_the_report_sets_them_side_by_side(
    tmp_path: Path,
) -> None:
    result = await runner.compare(
        "a red kite over dunes", model=MODEL, run_dir=tmp_path, emulate=True
    )
    assert {row.route for row in result.rows} == SELLERS
    assert all(row.state == "succeeded" for row in result.rows), [r.error for r in result.rows]
    html = report.write_report(tmp_path).read_text(encoding="utf-8")
    section = html[html.index("Same model across resellers") :]
    section = section[: section.index("<h2")] if "<h2" in section else section
    assert f"{MODEL} on 3 routes" in section
    for route in SELLERS:
        assert route in section
    assert "100% (1/1)" in section and "$0.100/s" in section


def test_a_run_with_one_route_per_model_has_no_same_model_section(tmp_path: Path) -> None:
    done = run_cli("generate", "a kite", "--route", "local:procedural", "--run-dir", str(tmp_path),
                   "--duration", "1", "--resolution", "240p", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Same model across resellers" not in report.write_report(tmp_path).read_text()


def test_cli_compare_model_plans_every_reseller(tmp_path: Path) -> None:
    done = run_cli("compare", "a kite", "--model", MODEL, "--emulate", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for route in SELLERS:
        assert route in done.stdout
    nothing = run_cli("compare", "a kite", cwd=tmp_path)
    assert nothing.returncode == 2 and "--model" in nothing.stderr


def test_the_demo_holds_one_model_on_three_resellers() -> None:
    by_model: dict[str, set[str]] = {}
    for route in DEMO_ROUTES:
        by_model.setdefault(capabilities.model_of(route), set()).add(route.partition(":")[0])
    assert max(len(providers) for providers in by_model.values()) >= 3
    assert set(DEMO_ROUTES) >= SELLERS


def test_routes_says_a_key_without_the_project_vertex_also_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "token")
    without = run_cli("routes", cwd=tmp_path).stdout
    assert "# veo: key set, GOOGLE_CLOUD_PROJECT or GOOGLE_CLOUD_PROJECT_ID missing" in without
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")
    assert "# veo: key set\n" in run_cli("routes", cwd=tmp_path).stdout
