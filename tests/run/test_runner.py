"""The runner end to end: local renders and emulators over loopback, every row checked."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _runner_support import (
    FAST,
    LOCAL,
    PIKA,
    REMOTE,
    REPLICATE,
    ROUTE_OF,
    RUNWAY,
    SMALL,
    db_rows,
)

from abebeats_lab import JobState
from abebeats_lab.emulator import EMULATOR_KEYS, Emulators, EmulatorState, Scenario, create_app
from abebeats_lab.emulator.core import RequestRecord
from abebeats_lab.emulator.server import serve
from abebeats_lab.errors import (
    AllRoutesFailed,
    CostLimitError,
    JobFailed,
    LabError,
    MissingKeyError,
    ValidationError,
)
from abebeats_lab.run.api import (
    JobEvent,
    Limiter,
    compare,
    generate,
    generate_many,
    load_run,
)
from abebeats_lab.run.timing import DIGITS
from abebeats_lab.store import RunStore
from abebeats_lab.views.summary import summarize
from abebeats_lab.waiting import WaitPolicy

NO_QUEUED_STATE = {"veo"}
"""Vertex operations say only done or not done, so "first seen running" is "first seen"."""
ROUNDING_S = 0.5 * 10**-DIGITS
"""Stored figures are rounded to `DIGITS` places; a bound may be off by half a unit."""
PROVIDERS = ["pika", "replicate", "runway", "veo"]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    """Every remote route's emulator on loopback; clients find them through the real env vars."""
    with Emulators(PROVIDERS, Scenario.fast()) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        yield emus


def _requests(emus: Emulators) -> int:
    return sum(len(state.requests) for state in emus.states.values())


async def test_local_comparison_end_to_end(tmp_path: Path) -> None:
    events: list[JobEvent] = []
    result = await compare(
        ["a red kite", "waves/../on rocks"],
        [LOCAL],
        SMALL,
        repeats=2,
        run_dir=tmp_path,
        on_update=events.append,
        policy=FAST,
    )
    assert len(result.rows) == 4
    for row in result.rows:
        assert row.state == "succeeded", row.error
        path = tmp_path / (row.output_path or "")
        assert path.is_file() and path.parent == tmp_path / "outputs"
        assert row.sha256 and row.sha256[:12] in path.name and ".." not in path.name
        assert (row.width, row.height, row.codec) == (426, 240, "h264")
        assert row.duration_ok and row.ratio_ok and row.resolution_ok
        assert (row.cost_usd, row.cost_note) == (0.0, "local: free")
        assert row.job_id and row.submitted_at and row.finished_at
        assert (
            row.timing.sources.get("run_s") == "provider"
        )  # the renderer reports start and finish
        assert row.timing.sources.get("queue_s") == "client"  # ... but not when it accepted the job
        assert None not in (
            row.timing.submit_s,
            row.timing.queue_s,
            row.timing.run_s,
            row.timing.download_s,
            row.timing.total_s,
        )
    assert load_run(tmp_path).rows == result.rows
    states = [e.state for e in events if e.key == (0, LOCAL, 0)]
    assert states[0] == "submitting" and states[1] is JobState.QUEUED
    assert states[-2:] == ["downloading", "succeeded"]
    for row in result.rows:  # one end per job, announced with its file
        ends = [e for e in events if e.key == row.key and e.state.terminal]
        assert [(e.state, e.output_path) for e in ends] == [("succeeded", row.output_path)]


LONG_ROUTE = "replicate:bytedance/seedance-1-pro-fast-image-to-video-extended"
"""A Replicate owner/name long enough that a version hash pushes its file name past the cut."""


async def test_long_routes_never_share_an_output_file(served: Emulators, tmp_path: Path) -> None:
    versions = [f"{LONG_ROUTE}:{'a' * 64}", f"{LONG_ROUTE}:{'b' * 64}"]
    prompts = ["a red fox", "a blue whale"]
    rows = []
    for _ in range(2):  # two runs in one folder, as a notebook re-run makes
        result = await compare(prompts, versions, REMOTE, repeats=2, run_dir=tmp_path, policy=FAST)
        rows += result.rows
    assert len(rows) == 2 * len(versions) * len(prompts) * 2
    names = set()
    for row in rows:
        assert row.state == "succeeded", row.error
        path = tmp_path / (row.output_path or "missing")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row.sha256, path.name
        assert path.name.endswith(f"_{row.prompt_index}_{row.repeat}_{row.sha256[:12]}.mp4")
        names.add((row.route, path.name))
    assert len({name for _, name in names}) == len(names)  # no two routes share a name


async def test_summary_frame_and_notebook_view(tmp_path: Path) -> None:
    result = await compare(
        "a lighthouse at dusk", [LOCAL], SMALL, repeats=2, run_dir=tmp_path, policy=FAST
    )
    summary = result.summary()
    line = summary.loc[LOCAL]
    assert (line["jobs"], line["succeeded"], line["success_rate"]) == (2, 2, 1.0)
    assert line["median_total_s"] > 0 and line["p90_total_s"] >= line["median_total_s"]
    assert line["price_usd_per_s"] == 0.0 and line["cost_usd"] == 0.0
    frame = result.to_pandas()
    assert list(frame["route"]) == [LOCAL, LOCAL]
    # A notebook stays small: the videos are referenced from the notebook's folder (the working
    # directory), not inlined; embed=True inlines them for sharing.
    html = result._repr_html_()
    assert html.count('<video src="outputs/') == 2 and "base64" not in html
    assert result.to_html(embed=True).count('<video src="data:video/mp4;base64,') == 2


async def test_a_broken_progress_callback_does_not_lose_the_run(tmp_path: Path) -> None:
    def broken(event: JobEvent) -> None:
        raise RuntimeError("widget fell over")

    result = await compare(
        "a kite", [LOCAL], SMALL, run_dir=tmp_path, on_update=broken, policy=FAST
    )
    assert result.rows[0].state == "succeeded"


async def test_emulated_routes_cost_nothing_but_keep_the_would_be_price(tmp_path: Path) -> None:
    result = await compare(
        "a kite",
        [RUNWAY, LOCAL],
        REMOTE.replace(resolution="720p"),
        run_dir=tmp_path,
        emulate=True,
        policy=FAST,
    )
    runway, local = sorted(result.rows, key=lambda r: r.route != RUNWAY)
    assert runway.state == local.state == "succeeded"
    assert runway.emulated and not local.emulated
    assert (runway.cost_usd, runway.cost_estimate_usd) == (0.0, pytest.approx(0.6))
    assert runway.cost_note == "emulated: not charged"
    assert runway.price_source and "runway" in runway.price_source.lower() and runway.price_date
    assert result.summary().loc[RUNWAY, "price_usd_per_s"] == pytest.approx(0.12)
    assert result.summary().loc[RUNWAY, "would_be_usd"] == pytest.approx(0.6)


async def test_failures_and_429s_are_rows_and_the_batch_completes(
    served: Emulators, tmp_path: Path
) -> None:
    served.set_scenario(
        Scenario.fast(fail=True, failure_message="content rejected (emulated)"), "runway"
    )
    served.set_scenario(Scenario.fast(create_429=2, retry_after_s=0.05), "pika")
    result = await compare("a kite", [RUNWAY, PIKA, LOCAL], REMOTE, run_dir=tmp_path, policy=FAST)
    by_route = {row.route: row for row in result.rows}
    assert by_route[RUNWAY].state == "failed"
    assert "content rejected" in (by_route[RUNWAY].error or "")
    assert by_route[PIKA].state == "succeeded", by_route[PIKA].error
    assert served.states["pika"].count("create") == 3 and len(served.states["pika"].jobs) == 1
    assert by_route[LOCAL].state == "succeeded"
    assert result.summary().loc[RUNWAY, "success_rate"] == 0.0


async def test_a_bad_output_is_a_failed_row_and_a_deadline_a_cancelled_one(
    served: Emulators, tmp_path: Path
) -> None:
    served.set_scenario(Scenario.fast(bad_output=True), "runway")
    result = await compare("a kite", [RUNWAY], REMOTE, run_dir=tmp_path / "a", policy=FAST)
    assert result.rows[0].state == "failed"
    assert (result.rows[0].error or "").startswith("DownloadError")
    assert list((tmp_path / "a" / "outputs").iterdir()) == []  # nothing partial left behind
    tight = WaitPolicy(deadline_s=0.01, min_interval_s=0.02)
    late = await compare("a kite", [LOCAL], SMALL, run_dir=tmp_path / "b", policy=tight)
    # The local renderer cancels its job at the deadline: canceled (the caller's), not failed.
    assert late.rows[0].state == "canceled" and "JobTimeout" in (late.rows[0].error or "")
    assert "cancelled it" in (late.rows[0].error or "")


async def test_dry_run_submits_nothing_and_prices_the_plan(
    served: Emulators, tmp_path: Path
) -> None:
    plan = await compare(
        ["a kite", "a boat"],
        [RUNWAY, PIKA, LOCAL],
        REMOTE,
        repeats=2,
        dry_run=True,
        run_dir=tmp_path / "run",
    )
    assert _requests(served) == 0
    assert plan.dry_run and plan.run_dir is None and not (tmp_path / "run").exists()
    assert len(plan.rows) == 12 and {r.state for r in plan.rows} == {"planned"}
    assert plan.estimate is not None
    assert plan.estimate.charged_usd == pytest.approx(4 * (5 * 0.12 + 5 * 0.04))
    assert plan.estimate.per_route[LOCAL] == 0.0
    assert plan.estimated_time_s and plan.estimated_time_s > 0
    assert "estimated cost $3.20" in plan.estimate.describe()
    text = plan.describe_plan()
    assert "12 jobs" in text and f"{RUNWAY}: 4 jobs, $2.40" in text and "estimated time" in text


async def test_max_cost_below_the_estimate_refuses_before_any_request(
    served: Emulators, tmp_path: Path
) -> None:
    with pytest.raises(CostLimitError) as caught:
        await compare(
            "a kite", [RUNWAY, LOCAL], REMOTE, repeats=2, max_cost_usd=1.0, run_dir=tmp_path / "run"
        )
    assert "$1.20" in str(caught.value) and "$1.00" in str(caught.value)
    assert _requests(served) == 0 and not (tmp_path / "run").exists()
    fine = await compare("a kite", [RUNWAY], REMOTE, max_cost_usd=1.0, dry_run=True)
    assert fine.estimate is not None and fine.estimate.charged_usd == pytest.approx(0.6)


async def test_invalid_settings_raise_before_any_request_or_adapt(
    served: Emulators, tmp_path: Path
) -> None:
    square = REMOTE.replace(aspect_ratio="1:1", duration_s=5)
    with pytest.raises(ValidationError) as caught:
        await compare("a kite", [LOCAL, RUNWAY], square, run_dir=tmp_path / "x")
    assert "aspect_ratio" in str(caught.value) and "16:9" in str(caught.value)
    assert _requests(served) == 0 and not (tmp_path / "x").exists()
    result = await compare(
        "a kite", [LOCAL, RUNWAY], square, adapt=True, run_dir=tmp_path / "y", policy=FAST
    )
    by_route = {row.route: row for row in result.rows}
    assert by_route[RUNWAY].adjusted == {"aspect_ratio": ["1:1", "9:16"]}
    assert by_route[RUNWAY].settings["aspect_ratio"] == "9:16"
    assert by_route[RUNWAY].state == "succeeded" and by_route[RUNWAY].ratio_ok
    assert by_route[LOCAL].adjusted == {}


@pytest.mark.parametrize("adapt", [False, True])
async def test_a_route_the_provider_cannot_address_raises_before_any_request(
    served: Emulators, tmp_path: Path, adapt: bool
) -> None:
    """The provider's own check (a Replicate route names ``owner/name``) runs while planning,
    adapting or not: a bad route is one error before anything is sent, not a failed row."""
    with pytest.raises(ValidationError) as caught:
        await compare("a kite", ["replicate:nomodel"], adapt=adapt, run_dir=tmp_path / "x")
    assert "replicate:owner/name" in str(caught.value)
    assert _requests(served) == 0 and not (tmp_path / "x").exists()


async def test_a_missing_key_raises_before_anything_is_submitted(tmp_path: Path) -> None:
    with pytest.raises(MissingKeyError) as caught:
        await compare("a kite", [LOCAL, RUNWAY], REMOTE, run_dir=tmp_path / "run")
    assert "RUNWAYML_API_SECRET" in str(caught.value) and "--emulate" in str(caught.value)
    assert not (tmp_path / "run").exists()


class _Watching(EmulatorState):
    """An emulator state that looks at the run store whenever a request arrives."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__("runway", Scenario.fast())
        self.run_dir = run_dir
        self.at_create: list[list[str]] = []
        self.at_status: list[tuple[str | None, set[str]]] = []

    def record(self, request: object, kind: str, job_id: str | None = None) -> None:
        rows = db_rows(self.run_dir)
        if kind == "create":
            self.at_create.append([r["state"] for r in rows])
        elif kind == "status":
            self.at_status.append((job_id, {r["job_id"] for r in rows if r["job_id"]}))
        super().record(request, kind, job_id)  # type: ignore[arg-type]


async def test_the_job_id_is_stored_before_the_first_status_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = _Watching(tmp_path)
    with serve(create_app("runway", state)) as server:
        state.base_url = server.url
        monkeypatch.setenv("RUNWAYML_BASE_URL", server.url)
        monkeypatch.setenv("RUNWAYML_API_SECRET", EMULATOR_KEYS["runway"])
        result = await compare(
            ["a kite", "a boat"], [RUNWAY], REMOTE, run_dir=tmp_path, policy=FAST
        )
    assert {row.state for row in result.rows} == {"succeeded"}
    assert len(state.at_create) == 2 and all("submitting" in states for states in state.at_create)
    assert state.at_status and all(job in stored for job, stored in state.at_status)


async def test_a_lost_create_among_identical_repeats_finds_its_own_job(
    served: Emulators, tmp_path: Path
) -> None:
    """Repeats make look-alike jobs: the lookup for the first, lost create must not take a
    sibling's job whose held create has not answered yet (then two rows would share one video
    and the lost create's job, paid for, would never be collected)."""
    served.set_scenario(Scenario.fast(drop_create=1).with_times(0.05, 2.0), "replicate")
    result = await compare(
        ["a kite"],
        [REPLICATE],
        REMOTE,
        repeats=4,
        run_dir=tmp_path,
        concurrency={"replicate": 4},
        rate_per_min={"replicate": 6000.0},
        policy=FAST,
        adapt=True,
    )
    state = served.states["replicate"]
    ids = [row.job_id for row in result.rows]
    assert [row.state for row in result.rows] == ["succeeded"] * 4
    assert len(set(ids)) == 4  # no two rows share a job
    assert set(state.jobs) == set(ids)  # every job made was collected
    assert state.count("create") == 4  # and none was paid twice


async def test_cancelling_the_comparison_cancels_its_remote_jobs(
    served: Emulators, tmp_path: Path
) -> None:
    served.set_scenario(Scenario.fast().with_times(0.05, 30.0), "runway")
    task = asyncio.create_task(
        compare(["a kite", "a boat"], [RUNWAY], REMOTE, run_dir=tmp_path, policy=FAST)
    )
    while sum(1 for r in db_rows(tmp_path) if r["job_id"]) < 2:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    state = served.states["runway"]
    assert state.count("cancel") == 2
    assert {t["phase"] for t in state.truth()} == {"canceled"}
    assert {r["state"] for r in db_rows(tmp_path)} == {"canceled"}


async def test_the_per_provider_cap_holds(served: Emulators, tmp_path: Path) -> None:
    result = await compare(
        ["a", "b", "c"], [RUNWAY], REMOTE, run_dir=tmp_path, policy=FAST, concurrency={"runway": 1}
    )
    assert {row.state for row in result.rows} == {"succeeded"}
    truth = sorted(served.states["runway"].truth(), key=lambda t: t["created"])
    for earlier, later in itertools.pairwise(truth):
        assert later["created"] >= earlier["finished"]


async def test_the_create_rate_limit_spaces_creates() -> None:
    limiter = Limiter(cap=4, rate_per_min=1200)  # one create every 0.05 s
    stamps = []
    for _ in range(3):
        await limiter.pace()
        stamps.append(time.monotonic())
    assert stamps[1] - stamps[0] >= 0.049 and stamps[2] - stamps[1] >= 0.049


async def test_generate_falls_back_and_records_every_attempt(
    served: Emulators, tmp_path: Path
) -> None:
    served.set_scenario(Scenario.fast(fail=True, failure_message="moderation (emulated)"), "runway")
    result = await generate(
        "a kite",
        [RUNWAY, LOCAL],
        SMALL.replace(resolution="720p", duration_s=5),
        run_dir=tmp_path,
        policy=FAST,
    )
    assert result.row.route == LOCAL and result.output_path.is_file()
    assert [f.route for f in result.failures] == [RUNWAY]
    assert "moderation" in (result.failures[0].error or "")
    with RunStore(tmp_path) as store:
        assert [(r.route, r.state) for r in store.rows()] == [
            (LOCAL, "succeeded"),
            (RUNWAY, "failed"),
        ]


async def test_generate_raises_with_every_reason_when_all_routes_fail(
    served: Emulators, tmp_path: Path
) -> None:
    served.set_scenario(Scenario.fast(fail=True, failure_message="nope (emulated)"))
    with pytest.raises(AllRoutesFailed) as caught:
        await generate("a kite", [RUNWAY, PIKA], REMOTE, run_dir=tmp_path, policy=FAST)
    assert isinstance(caught.value, JobFailed)
    assert [route for route, _ in caught.value.attempts] == [RUNWAY, PIKA]
    assert RUNWAY in str(caught.value) and PIKA in str(caught.value)
    with pytest.raises(AllRoutesFailed) as single:
        await generate(
            "a kite", [RUNWAY, LOCAL], REMOTE, fallback=False, run_dir=tmp_path / "b", policy=FAST
        )
    assert len(single.value.attempts) == 1
    assert served.states["runway"].count("create") == 2


async def test_many_prompts_each_fall_back_in_one_run_under_one_cap(
    served: Emulators, tmp_path: Path
) -> None:
    served.set_scenario(Scenario.fast(fail=True, failure_message="moderation (emulated)"), "runway")
    prompts = ["a kite", "a boat", "a lighthouse"]
    results = await generate_many(
        prompts, [RUNWAY, LOCAL], SMALL.replace(resolution="720p", duration_s=5),
        run_dir=tmp_path, policy=FAST, concurrency={"runway": 1},
    )  # fmt: skip
    assert [r.row.prompt for r in results] == prompts
    assert all(r.row.route == LOCAL and r.output_path.is_file() for r in results)
    assert all([f.route for f in r.failures] == [RUNWAY] for r in results)
    with RunStore(tmp_path) as store:
        (run,) = store.runs()
        rows = store.rows()
    assert {r.run_id for r in rows} == {run.run_id} and run.spec["concurrency"] == {"runway": 1}
    assert sorted(r.key for r in rows) == sorted(
        (i, route, 0) for i in range(3) for route in (RUNWAY, LOCAL)
    )
    # One cap for the whole run: never two runway jobs at once, whichever prompt sent them.
    truth = sorted(served.states["runway"].truth(), key=lambda t: t["created"])
    assert len(truth) == len(prompts)
    for earlier, later in itertools.pairwise(truth):
        assert later["created"] >= earlier["finished"]


async def test_settings_given_per_prompt_reach_that_prompts_rows(tmp_path: Path) -> None:
    prompts = ["a kite", "a boat"]
    each = [SMALL.replace(seed=1), SMALL.replace(seed=2)]
    results = await generate_many(prompts, [LOCAL], each, run_dir=tmp_path, policy=FAST)
    assert [(r.row.prompt, r.row.seed) for r in results] == [("a kite", 1), ("a boat", 2)]
    with RunStore(tmp_path) as store:
        (run,) = store.runs()
    # The stored settings are the settings: the prompts are stored once, beside them.
    assert run.spec["prompts"] == prompts and run.spec["settings"] == each[0].as_dict()
    assert [s["seed"] for s in run.spec["settings_per_prompt"]] == [1, 2]
    with pytest.raises(LabError, match="1 settings for 2 prompts"):
        await generate_many(prompts, [LOCAL], each[:1], run_dir=tmp_path / "no")
    assert not (tmp_path / "no").exists()


async def test_a_failing_chain_names_its_label(served: Emulators, tmp_path: Path) -> None:
    served.set_scenario(Scenario.fast(fail=True, failure_message="nope (emulated)"), "runway")
    with pytest.raises(AllRoutesFailed, match=r"^every route failed: shot 0 runway:gen4\.5: "):
        await generate_many(
            ["a kite", "a boat"], [RUNWAY], REMOTE, run_dir=tmp_path, policy=FAST,
            labels=["shot 0", "shot 1"], parallel=1,
        )  # fmt: skip


@pytest.mark.parametrize("provider", ["pika", "replicate", "runway", "veo"])
async def test_timing_is_honest_against_the_emulator_truth(
    provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with Emulators([provider], Scenario.fast().with_times(0.3, 0.6)) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        for attempt in ("warm-up", "measured"):  # the warm-up fills the emulator's render cache
            result = await compare(
                "a kite",
                [ROUTE_OF[provider]],
                REMOTE,
                run_dir=tmp_path / attempt,
                policy=FAST,
                adapt=True,
            )
        state = emus.states[provider]
        truth = max(state.truth(), key=lambda t: t["created"])
        requests = [r for r in state.requests if r.job_id == truth["id"]]
    row = result.rows[0]
    assert row.state == "succeeded", row.error
    assert row.timing.polls == sum(1 for r in requests if r.kind in ("status", "stream"))
    assert None not in (
        row.timing.submit_s,
        row.timing.queue_s,
        row.timing.run_s,
        row.timing.download_s,
        row.timing.total_s,
    )
    queue, run = truth["started"] - truth["created"], truth["finished"] - truth["started"]
    if row.timing.sources.get("queue_s") == "provider":
        assert abs((row.timing.queue_s or 0) - queue) <= 0.1
    elif provider not in NO_QUEUED_STATE:  # seen from outside: not running before it started
        assert (row.timing.queue_s or 0) >= queue - (row.timing.submit_s or 0) - 0.02
    if row.timing.sources.get("run_s") == "provider":
        assert abs((row.timing.run_s or 0) - run) <= 0.1
    else:  # seen from outside: between the answers the emulator logged around start and end
        low, high = _client_run_bounds(state.requests, requests, truth, provider)
        assert low - ROUNDING_S <= (row.timing.run_s or 0) <= high + ROUNDING_S
    if row.timing.sources.get("queue_s") == row.timing.sources.get("run_s") == "client":
        # Both end where the next begins on the client's clock: together they fit in the wait
        # (four rounded figures in one comparison).
        waited = (row.timing.total_s or 0) - (row.timing.submit_s or 0)
        assert (row.timing.queue_s or 0) + (row.timing.run_s or 0) <= waited + 4 * ROUNDING_S
    if row.timing.sources.get("detect_lag_s") == "provider":
        # Only Replicate reports a completion time here, and its create is held (Prefer: wait)
        # past the finish: no poll, and the end is never known before it happened.
        assert row.timing.polls == 0 and (row.timing.detect_lag_s or 0) >= -0.02
    assert (row.timing.total_s or 0) >= truth["finished"] - truth["created"] - 0.02
    if provider == "replicate":  # Replicate reports created/started/completed: they must be used
        assert (
            row.timing.sources.get("queue_s")
            == row.timing.sources.get("run_s")
            == row.timing.sources.get("detect_lag_s")
            == "provider"
        )


def _answered_between(waits: list[float], moment: float) -> tuple[float, float]:
    """Earliest and latest arrival of the wait request whose answer first showed the job at
    ``moment`` or later: it was handled no sooner than it arrived, and the next one is sent
    only after its answer, so it is the last to arrive before ``moment`` or the first after."""
    before = [at for at in waits if at < moment]
    after = [at for at in waits if at >= moment]
    return (before[-1] if before else after[0]), (after[0] if after else before[-1])


def _client_run_bounds(
    logged: list[RequestRecord],
    job_requests: list[RequestRecord],
    truth: dict[str, Any],
    provider: str,
) -> tuple[float, float]:
    """Lowest and highest client-observed run time (first running answer to first done answer)
    that the emulator's own request log allows, with no tolerance: each answer reached the
    client after its request arrived and before the client's next request did (no upper
    bound when nothing follows the done answer, as when Vertex's answer carries the video)."""
    waits = sorted(r.at for r in job_requests if r.kind in ("status", "stream"))
    arrivals = sorted(r.at for r in logged)

    def next_after(at: float) -> float:
        return min((a for a in arrivals if a > at), default=math.inf)

    if provider in NO_QUEUED_STATE:  # running from the first answer on, the create's included
        run_low, run_high = truth["created"], waits[0]
    else:
        run_low, run_high = _answered_between(waits, truth["started"])
    done_low, done_high = _answered_between(waits, truth["finished"])
    return done_low - next_after(run_high), next_after(done_high) - run_low


async def test_an_unknown_price_is_never_a_silent_zero() -> None:
    request = REMOTE.replace(duration_s=4)
    plan = await compare("a kite", [REPLICATE, LOCAL], request, dry_run=True)
    assert plan.estimate is not None and plan.estimate.unknown == (REPLICATE,)
    assert "no price known for " + REPLICATE in plan.estimate.describe()
    with pytest.raises(CostLimitError, match="no price known"):
        await compare("a kite", [REPLICATE], request, max_cost_usd=100.0)
    done = [
        row.evolve(job_id=f"j{i}", state="succeeded", duration_s=4.0)
        for i, row in enumerate(plan.rows)
    ]
    lines = {line["route"]: line for line in summarize(done)}
    assert lines[REPLICATE]["cost_usd"] is None and lines[REPLICATE]["price_usd_per_s"] is None
    assert lines[LOCAL]["cost_usd"] == 0.0


async def test_429s_that_never_stop_are_a_failed_row_saying_why(
    served: Emulators, tmp_path: Path
) -> None:
    served.set_scenario(Scenario.fast(create_429=50, retry_after_s=0.02), "runway")
    result = await compare("a kite", [RUNWAY, LOCAL], REMOTE, run_dir=tmp_path, policy=FAST)
    by_route = {row.route: row for row in result.rows}
    assert by_route[RUNWAY].state == "failed" and "429" in (by_route[RUNWAY].error or "")
    assert by_route[RUNWAY].job_id is None and served.states["runway"].jobs == {}
    assert by_route[LOCAL].state == "succeeded"


@pytest.mark.parametrize("call", ["compare", "generate", "generate_many"])
async def test_a_video_request_given_as_settings_is_one_clear_error(
    call: str, tmp_path: Path
) -> None:
    """Code written for the old ``request=`` argument learns what to pass, before any job."""
    from abebeats_lab import VideoRequest, compare, generate
    from abebeats_lab.run.api import generate_many

    old = VideoRequest("a kite", duration_s=2)
    calls = {
        "compare": lambda: compare(["a kite"], [LOCAL], old, run_dir=tmp_path),  # type: ignore[arg-type]
        "generate": lambda: generate("a kite", [LOCAL], old, run_dir=tmp_path),  # type: ignore[arg-type]
        "generate_many": lambda: generate_many(["a kite"], [LOCAL], old, run_dir=tmp_path),  # type: ignore[arg-type]
    }
    with pytest.raises(LabError, match=r"Settings\(duration_s=4\), not VideoRequest"):
        await calls[call]()
    assert not (tmp_path / "run.sqlite").exists()
