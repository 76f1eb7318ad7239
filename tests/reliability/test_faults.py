"""The fault-injection matrix: every provider x every scripted fault, through the runner.

Each case runs a one-job comparison against that provider's emulator (over loopback, found
through the ``*_BASE_URL`` variables, with canary keys) and checks three things: the row
ends in the expected state with a message that says what happened, the emulator saw exactly
one job created (a create refused with 429 is a request, not a job), and the run directory
holds no partial file. The expected outcomes are the table in RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from _reliability import (
    CANARY_KEYS,
    PROVIDERS,
    ROUTES,
    check_outputs,
    leaks,
    leftovers,
    point_at,
    reset,
)

from abebeats_lab import JobState, Route, Settings, VideoRequest
from abebeats_lab._types import Job
from abebeats_lab.capabilities import nearest
from abebeats_lab.emulator import Emulators, EmulatorState, Scenario
from abebeats_lab.errors import AmbiguousSubmitError, LabError, ProviderError, ProviderHTTPError
from abebeats_lab.media.download import save_output
from abebeats_lab.providers import Provider, get_provider
from abebeats_lab.run import api as runner
from abebeats_lab.run.api import JobEvent
from abebeats_lab.run.job import DOWNLOAD_ATTEMPTS
from abebeats_lab.store import JobRow
from abebeats_lab.waiting import MAX_CONSECUTIVE_ERRORS, WaitPolicy, wait

PROMPT = "a red kite over desert dunes"
SETTINGS = Settings(duration_s=5, aspect_ratio="16:9", resolution="720p", seed=7)
REQUEST = VideoRequest.of(PROMPT, SETTINGS)
# expected_run_s pins the schedule to these short jobs (else the route's 60 s prior plans
# sleeps of many seconds between polls).
FAST = WaitPolicy(
    deadline_s=30, min_interval_s=0.05, max_interval_s=0.25, expected_run_s=0.3, spread_s=0.1
)
SHORT_DEADLINE = replace(FAST, deadline_s=1.0)
LONG_RUN_S = 1.5
"""Longer than Replicate's 1 s ``Prefer: wait`` hold, so status faults meet a real poll."""
NEVER_S = 120.0
RETRY_AFTER_S = 0.3
HINT_SLACK = 0.9
"""The second create must come at least this fraction of Retry-After after the first."""
FAILURE = "content rejected (emulated)"
HANG_TIMEOUT_S = 1.0
OUTER_TIMEOUT_FACTOR = 5
OK = ("succeeded", "")


def _same(outcome: tuple[str, str]) -> dict[str, tuple[str, str]]:
    return dict.fromkeys(PROVIDERS, outcome)


@dataclass(frozen=True)
class Fault:
    """One scripted fault and the outcome each provider's row must reach."""

    scenario: Scenario
    expect: Mapping[str, tuple[str, str]]
    """provider -> (row state, a fragment its error message must contain)."""
    policy: WaitPolicy = FAST
    spend_url: bool = False
    """Fetch the output URL once before the client does, so the client meets it expired."""
    extra_creates: int = 0
    """Create requests refused before the one that made the job."""
    notes: Mapping[str, str] = field(default_factory=dict)


FAULTS: dict[str, Fault] = {
    "429-retry-after": Fault(
        Scenario.fast(create_429=1, retry_after_s=RETRY_AFTER_S), _same(OK), extra_creates=1
    ),
    "5xx-burst": Fault(
        Scenario.fast(status_5xx=3, retry_after_s=0.05).with_times(0.05, LONG_RUN_S), _same(OK)
    ),  # Replicate: see HELD below
    "drop-after-create": Fault(
        Scenario.fast(drop_create=1),
        {
            **_same(("ambiguous", "AmbiguousSubmitError")),
            "replicate": OK,  # reconciled by listing predictions
        },
    ),
    "hang-past-deadline": Fault(
        Scenario.fast().with_times(0.05, NEVER_S),
        # Cancelled: the caller's deadline, not a failure. Veo cannot cancel, and fal only
        # passes a running request's cancel on (unconfirmed): those jobs may run on (paid), so
        # their rows stay in flight with their ids for resume to collect (queued if a loaded
        # machine reached the deadline before the first poll).
        {
            **_same(("canceled", "cancelled it")),
            "veo": ("queued|running", "cannot cancel it"),
            "pika": ("queued|running", "without confirming it"),
        },
        policy=SHORT_DEADLINE,
    ),
    # One cut-off body is fetched again; a URL that cuts off every time fails the row.
    "truncated-download": Fault(Scenario.fast(truncate_downloads=1), _same(OK)),
    "truncated-every-time": Fault(
        Scenario.fast(truncate_downloads=DOWNLOAD_ATTEMPTS),
        {
            **_same(("failed", "DownloadTruncated: truncated")),
            "veo": OK,
        },  # Veo returns bytes inline
    ),
    "expired-output-url": Fault(
        Scenario.fast(expire_outputs_after=1),
        {
            "runway": OK,  # re-signed by fetching the task again
            "veo": OK,  # inline bytes: no URL to expire
            "replicate": ("failed", "HTTP 404 fetching output"),
            "pika": ("failed", "HTTP 404 fetching output"),
        },
        spend_url=True,
    ),
    "malformed-json": Fault(
        Scenario.fast(malformed_status=1).with_times(0.05, LONG_RUN_S),
        {
            "runway": OK,  # one garbled answer is asked again
            "replicate": OK,  # see HELD below
            "veo": OK,  # one garbled answer is asked again
            "pika": OK,  # the bad body broke the SSE stream; polling took over
        },
    ),
    "unknown-status": Fault(
        Scenario.fast(unknown_status=True).with_times(0.05, LONG_RUN_S),
        {
            # Never readable, so the last state seen stays, with the reason; resume asks again.
            "runway": ("queued", "unknown task status 'ARCHIVED'"),
            "replicate": OK,  # see HELD below
            "veo": ("queued", "unreadable answer: done = 'PAUSED'"),
            "pika": ("queued", "unknown queue status 'IN_LIMBO'"),
        },
    ),
    "job-failed": Fault(
        Scenario.fast(fail=True, failure_message=FAILURE), _same(("failed", FAILURE))
    ),
    "cancelled-elsewhere": Fault(
        Scenario.fast(cancel_elsewhere_after_s=0.1), _same(("canceled", "cancel"))
    ),
}


HELD = ("5xx-burst", "malformed-json", "unknown-status")
"""Status faults Replicate never meets through the runner: its create holds (``Prefer: wait``,
up to 60 s) until these short jobs are done, so no status request is made. The same faults
on Replicate's status path are checked by `test_replicate_status_faults_without_a_hold`."""


def _emulator_id(job_id: str | None) -> str:
    """The emulator's key for a provider job id (Veo's is the tail of an operation name)."""
    return (job_id or "").rpartition("/")[2]


CASES = [pytest.param(f, p, id=f"{f}-{p}") for f in FAULTS for p in PROVIDERS]


@pytest.fixture(scope="module")
def emulators() -> Iterator[Emulators]:
    with Emulators(PROVIDERS, Scenario.fast()) as emus:
        yield emus


@pytest.fixture
def env(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> Emulators:
    """Point every client at the emulators through the user-facing variables."""
    return point_at(emulators, monkeypatch)


def _spender(state: EmulatorState, provider: str) -> Callable[[JobEvent], None]:
    """An on_update hook that uses up the output URL just before the runner downloads it."""

    def spend(event: JobEvent) -> None:
        if event.state != "downloading":
            return
        [job] = state.jobs.values()
        if job.extra.get("file_token") is None and provider == "pika":
            # fal mints the media URL when the result is first read.
            headers = {"Authorization": f"Key {CANARY_KEYS['pika']}"}
            httpx.get(f"{state.base_url}/fal-ai/pika/requests/{job.id}", headers=headers)
        token = job.extra.get("file_token")
        if token is not None:
            httpx.get(f"{state.base_url}/_files/{token}/output.mp4").raise_for_status()

    return spend


async def _run(route: str, run_dir: Path, fault: Fault, state: EmulatorState) -> JobRow:
    hook = _spender(state, Route.parse(route).provider) if fault.spend_url else None
    result = await runner.compare(
        PROMPT, [route], SETTINGS, run_dir=run_dir, policy=fault.policy, adapt=True, on_update=hook
    )
    [row] = result.rows
    return row


@pytest.mark.parametrize(("fault_name", "provider"), CASES)
async def test_fault(fault_name: str, provider: str, env: Emulators, tmp_path: Path) -> None:
    fault = FAULTS[fault_name]
    state = reset(env, provider, fault.scenario)
    run_dir = tmp_path / "run"
    row = await _run(ROUTES[provider], run_dir, fault, state)

    state_words, fragment = fault.expect[provider]
    assert (row.state in state_words.split("|"), fragment.lower() in (row.error or "").lower()) == (
        True,
        True,
    ), (row.state, row.error)
    if row.state in ("queued", "running"):
        assert row.job_id is not None and _emulator_id(row.job_id) in state.jobs
    assert len(state.jobs) == 1
    assert state.count("create") == 1 + fault.extra_creates
    check_outputs(run_dir, [row])
    assert leaks(row.error or "") == []
    if row.state == "succeeded":
        assert row.error is None and _emulator_id(row.job_id) in state.jobs
    EXTRA_CHECKS.get(fault_name, _nothing)(provider, state)


def _nothing(provider: str, state: EmulatorState) -> None:
    """Most faults need no check beyond the common ones."""


def _waited_for_retry_after(provider: str, state: EmulatorState) -> None:
    first, second = (r.at for r in state.requests if r.kind == "create")
    assert second - first >= RETRY_AFTER_S * HINT_SLACK


def _met_the_5xx_burst(provider: str, state: EmulatorState) -> None:
    asked = state.count("status") + state.count("stream")
    if provider == "replicate":
        assert asked == 0  # HELD
        return
    assert asked >= 1 + FAULTS["5xx-burst"].scenario.status_5xx


def _no_status_request_if_held(provider: str, state: EmulatorState) -> None:
    if provider == "replicate":
        assert state.count("status") == 0  # HELD


def _cancelled_where_possible(provider: str, state: EmulatorState) -> None:
    [job] = state.jobs.values()
    can_cancel = provider != "veo"  # Vertex has no cancel for Veo operations
    assert state.count("cancel") == int(can_cancel)
    assert job.phase() == ("canceled" if can_cancel else "running")


EXTRA_CHECKS: dict[str, Callable[[str, EmulatorState], None]] = {
    "429-retry-after": _waited_for_retry_after,
    "5xx-burst": _met_the_5xx_burst,
    "malformed-json": _no_status_request_if_held,
    "unknown-status": _no_status_request_if_held,
    "hang-past-deadline": _cancelled_where_possible,
}


@pytest.mark.parametrize("provider", ["runway", "veo", "pika"])
async def test_ambiguous_row_is_never_resubmitted_by_resume(
    provider: str, env: Emulators, tmp_path: Path
) -> None:
    fault = FAULTS["drop-after-create"]
    state = reset(env, provider, fault.scenario)
    row = await _run(ROUTES[provider], tmp_path, fault, state)
    assert row.state == "ambiguous"
    resumed = await runner.resume(tmp_path, policy=FAST)
    assert [r.state for r in resumed.rows] == ["ambiguous"]
    assert state.count("create") == 1 and len(state.jobs) == 1


@pytest.mark.parametrize("provider", ["runway", "veo", "pika"])
async def test_an_unreadable_status_keeps_the_row_for_resume(
    provider: str, env: Emulators, tmp_path: Path
) -> None:
    """Status answers that stay garbled end the wait, not the job (RELIABILITY F8): the row
    keeps its id and last state, the remote job is not cancelled, and once the provider
    answers sensibly again `resume` collects the video without a second create."""
    fault = Fault(Scenario.fast(malformed_status=1_000).with_times(0.05, 1.0), {})
    state = reset(env, provider, fault.scenario)
    row = await _run(ROUTES[provider], tmp_path, fault, state)
    assert row.state in ("queued", "running") and "resume` asks again" in (row.error or "")
    [job] = state.jobs.values()
    assert _emulator_id(row.job_id) == job.id and state.count("cancel") == 0
    env.set_scenario(Scenario.fast().with_times(0.05, 1.0), provider)
    [resumed] = (await runner.resume(tmp_path, policy=FAST)).rows
    assert (resumed.state, resumed.error, resumed.job_id) == ("succeeded", None, row.job_id)
    assert state.count("create") == 1 and len(state.jobs) == 1
    check_outputs(tmp_path, [resumed])


async def test_generate_does_not_fall_back_past_a_job_it_lost_sight_of(
    env: Emulators, tmp_path: Path
) -> None:
    """A fallback chain stops at a job whose status stays unreadable: the next route would
    be a second paid video while the first may still arrive."""
    runway = reset(env, "runway", Scenario.fast(malformed_status=1_000).with_times(0.05, 1.0))
    pika = reset(env, "pika", Scenario.fast())
    with pytest.raises(ProviderError) as caught:
        await runner.generate(
            PROMPT, [ROUTES["runway"], ROUTES["pika"]], SETTINGS, run_dir=tmp_path, policy=FAST
        )
    assert "no other route was tried" in str(caught.value) and str(tmp_path) in str(caught.value)
    assert runway.count("create") == 1 and pika.count("create") == 0
    env.set_scenario(Scenario.fast().with_times(0.05, 1.0), "runway")
    [row] = (await runner.resume(tmp_path, policy=FAST)).rows
    assert row.state == "succeeded" and runway.count("create") == 1


def _hanging_client(provider: str, emulators: Emulators) -> Provider:
    """A client with a 1 s read timeout, so a hung create gives up quickly."""
    options = emulators.client_options(provider)
    options["api_key"] = CANARY_KEYS[provider]
    if provider == "veo":
        options["timeout_s"] = HANG_TIMEOUT_S
    else:
        options["timeout"] = httpx.Timeout(HANG_TIMEOUT_S)
    return get_provider(provider, **options)


HUNG = [
    # Replicate holds a create up to 60 s (Prefer: wait) and widens its read timeout to
    # 75 s, so a hung create is given up on only after that.
    pytest.param(p, marks=[pytest.mark.slow] if p == "replicate" else [])
    for p in PROVIDERS
]


@pytest.mark.parametrize("provider", HUNG)
async def test_hung_create_is_ambiguous_not_repeated(provider: str, env: Emulators) -> None:
    """A create that hangs after the job exists: the client times out and never re-sends."""
    state = reset(env, provider, Scenario.fast(hang_create=1))
    route = Route.parse(ROUTES[provider])
    request, _ = nearest(REQUEST, route)
    async with _hanging_client(provider, env) as client:
        sent = datetime.now(UTC)
        with pytest.raises(AmbiguousSubmitError) as caught:
            await client.submit(request, route)
        assert leaks(repr(caught.value) + str(caught.value)) == []
        assert state.count("create") == 1 and len(state.jobs) == 1
        if client.can_reconcile:  # Replicate lists predictions: the lost job is found
            found = await client.reconcile(Job(route, "", request, sent))
            assert found is not None and found.id in state.jobs


HANG_GUARD_S = 30.0
"""Far above the 1 s deadline, far below the 60 s client timeouts a regression would wait:
only a guard that turns such a hang into a failure, never a measured figure."""


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_deadline_bounds_a_hung_create(
    provider: str, env: Emulators, tmp_path: Path
) -> None:
    """Through the runner, a create that never answers ends at the deadline (RELIABILITY F10):
    found again and cancelled where the provider lists jobs (Replicate), ambiguous elsewhere;
    never sent twice."""
    state = reset(env, provider, Scenario.fast(hang_create=1).with_times(0.05, NEVER_S))
    run = _run(ROUTES[provider], tmp_path / "run", FAULTS["hang-past-deadline"], state)
    row = await asyncio.wait_for(run, HANG_GUARD_S)
    assert state.count("create") == 1 and len(state.jobs) == 1
    [job] = state.jobs.values()
    if provider == "replicate":
        assert (row.state, row.job_id) == ("canceled", job.id)
        assert "cancelled it" in (row.error or "") and job.phase() == "canceled"
    else:
        assert row.state == "ambiguous" and "within the 1 s deadline" in (row.error or "")
    check_outputs(tmp_path / "run", [row])


REPLICATE_STATUS_FAULTS = {
    "5xx-burst": (FAULTS["5xx-burst"].scenario, None),
    "malformed-json": (FAULTS["malformed-json"].scenario, None),  # asked again: recovers
    "unknown-status": (
        FAULTS["unknown-status"].scenario,
        "unreadable answer: status = 'waiting_for_gpu'",
    ),
}


@pytest.mark.parametrize("fault_name", sorted(REPLICATE_STATUS_FAULTS))
async def test_replicate_status_faults_without_a_hold(
    fault_name: str, env: Emulators, tmp_path: Path
) -> None:
    """Replicate's status path (its create not held) meets the faults HELD hides."""
    scenario, error = REPLICATE_STATUS_FAULTS[fault_name]
    state = reset(env, "replicate", scenario)
    route = Route.parse(ROUTES["replicate"])
    request, _ = nearest(REQUEST, route)
    options = {**env.client_options("replicate"), "api_key": CANARY_KEYS["replicate"], "wait_s": 0}
    async with get_provider("replicate", **options) as client:
        job = await client.submit(request, route)
        try:
            status = (await wait(client, job, policy=FAST)).status
        except LabError as exc:
            assert error is not None and error in str(exc) and leaks(str(exc)) == []
        else:
            assert error is None and status.state is JobState.SUCCEEDED
            await save_output(status.outputs[0], tmp_path / "out.mp4")
    assert state.count("status") >= 1 and len(state.jobs) == 1
    assert leftovers(tmp_path) == []


async def test_replicate_create_without_hold_is_bounded(env: Emulators) -> None:
    reset(env, "replicate", Scenario.fast(hang_create=1))
    route = Route.parse(ROUTES["replicate"])
    request, _ = nearest(REQUEST, route)
    options = {**env.client_options("replicate"), "wait_s": 0}
    options["timeout"] = httpx.Timeout(HANG_TIMEOUT_S)
    async with get_provider("replicate", **options) as client:
        with pytest.raises(AmbiguousSubmitError):
            async with asyncio.timeout(HANG_TIMEOUT_S * OUTER_TIMEOUT_FACTOR):
                await client.submit(request, route)


OUTAGE = Scenario.fast(status_5xx=1_000, retry_after_s=0.05).with_times(0.05, 1.0)
"""Every status read answers 503 (Runway's with a 0.05 s Retry-After, the others without)."""


async def _submitted(provider: str, env: Emulators, client: Provider) -> Job:
    route = Route.parse(ROUTES[provider])
    request, _ = nearest(REQUEST, route)
    reset(env, provider, Scenario.fast().with_times(0.05, 1.0))
    job = await client.submit(request, route)
    env.set_scenario(OUTAGE, provider)
    return job


def _status_client(provider: str, env: Emulators) -> Provider:
    options = {**env.client_options(provider), "api_key": CANARY_KEYS[provider]}
    if provider == "replicate":
        options["wait_s"] = 0  # no hold: the job is waited on by status reads
    return get_provider(provider, **options)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_one_status_read_is_one_request(provider: str, env: Emulators) -> None:
    """A status read is sent once: neither our transport nor an SDK (Replicate's retries a GET
    10 times) retries it under the wait loop. Before: Runway 4, Pika 4, Replicate 10."""
    async with _status_client(provider, env) as client:
        job = await _submitted(provider, env, client)
        with pytest.raises(ProviderHTTPError) as caught:
            await client.status(job)
    assert caught.value.status_code == 503
    assert env.states[provider].count("status") == 1


async def test_an_outage_costs_the_wait_loop_s_own_count_of_status_requests(
    env: Emulators,
) -> None:
    """Under a 503 outage one wait asks exactly `MAX_CONSECUTIVE_ERRORS` times, then gives up
    (the runner keeps such a row for resume). Before: 24 (Runway, Pika), 60 (Replicate)."""

    async def outage(provider: str) -> int:
        async with _status_client(provider, env) as client:
            job = await _submitted(provider, env, client)
            with pytest.raises(ProviderHTTPError):
                await wait(client, job, policy=FAST)
        return env.states[provider].count("status")

    # Concurrently: without a Retry-After the loop's own backoff takes about 15 s.
    asked = await asyncio.gather(*(outage(p) for p in PROVIDERS))
    assert dict(zip(PROVIDERS, asked, strict=True)) == dict.fromkeys(
        PROVIDERS, MAX_CONSECUTIVE_ERRORS
    )
