"""Each official SDK's own way of waiting, driven unchanged against our emulators.

A `PeerWaiter` opens the SDK's client once (shared by every job of that waiter, as a script
that starts several jobs would), then each call submits one job, waits the way that SDK (or
its documentation) does, and returns ``(job id, wall-clock time the caller held the result)``.
The ``PEERS`` waiters are the SDKs' synchronous ones and run one thread per job;
``ASYNC_PEERS`` holds each SDK's asynchronous twin (same calls through its async client, same
cadence), whose jobs all run on one event loop, like ours. ``scale``
shrinks the peers' sleep constants and the Replicate hold in ``--quick`` runs only; the full
run uses every SDK's own constants.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from abebeats_lab._types import Route, VideoRequest
from abebeats_lab.emulator import EMULATOR_KEYS, EMULATOR_LOCATION, EMULATOR_PROJECT

__all__ = ["ASYNC_PEERS", "PEERS", "AsyncPeerWaiter", "PeerContext", "PeerWaiter", "configure"]

RUNWAY_POLL_TIME_S = 6.0  # runwayml.lib.polling.POLL_TIME
RUNWAY_POLL_JITTER_S = 3.0  # runwayml.lib.polling.POLL_JITTER
GENAI_DOC_SLEEPS_S = (10.0, 20.0)  # operations.get docstring; README examples and genai tests
FAL_INTERVAL_S = 0.1  # fal_client DEFAULT_QUEUE_POLL_INTERVAL
REPLICATE_POLL_S = 0.5  # replicate poll_interval default
REPLICATE_HOLD_S = 60  # run()'s Prefer: wait, the server's maximum
TAG_KEY = "benchmark_tag"
"""An extra Replicate input that names the job; run() hides the prediction id, the list shows it."""


@dataclass(frozen=True)
class PeerContext:
    """One route on one emulator, and what every waiter sends (the same prompt everywhere)."""

    provider: str
    url: str
    route: Route
    request: VideoRequest
    scale: float = 1.0
    """Multiplier on peer sleep constants and the Replicate hold (1.0 in the full run)."""

    @property
    def hold_s(self) -> int:
        """Seconds a Replicate ``Prefer: wait`` create holds (60 unless scaled down)."""
        return max(1, round(REPLICATE_HOLD_S * self.scale))


Outcome = tuple[str, float]


@dataclass(frozen=True)
class PeerWaiter:
    """One SDK waiter: open its client once, wait on one job per call, close the client."""

    open: Callable[[PeerContext], Any]
    wait: Callable[[PeerContext, Any, int], Outcome]
    close: Callable[[Any], None]
    cadence_s: Callable[[float], float]
    """Its status-request cadence at a given scale (the CPU scenario polls ours at the same)."""


@dataclass(frozen=True)
class AsyncPeerWaiter:
    """One SDK's async waiter: open its async client once (inside the event loop), await one
    job per call, close the client."""

    open: Callable[[PeerContext], Any]
    wait: Callable[[PeerContext, Any, int], Awaitable[Outcome]]
    close: Callable[[Any], Awaitable[None]]
    cadence_s: Callable[[float], float]


def _close(client: Any) -> None:
    client.close()


async def _aclose(client: Any) -> None:
    await client.close()


# -- runwayml ------------------------------------------------------------------------------


def _runway_open(ctx: PeerContext) -> Any:
    from runwayml import RunwayML

    return RunwayML(api_key=EMULATOR_KEYS["runway"], base_url=ctx.url)


def runway_sdk(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """runwayml: ``create(...).wait_for_task_output()`` (sleeps 4.5-7.5 s before each GET)."""
    from abebeats_lab.providers.runway import build_payload

    body = build_payload(ctx.request, ctx.route)
    created = client.text_to_video.create(
        model=body["model"],
        prompt_text=body["promptText"],
        ratio=body["ratio"],
        duration=body["duration"],
        seed=body["seed"],
    )
    created.wait_for_task_output()
    return created.id, time.time()


def _runway_async_open(ctx: PeerContext) -> Any:
    from runwayml import AsyncRunwayML

    return AsyncRunwayML(api_key=EMULATOR_KEYS["runway"], base_url=ctx.url)


async def runway_sdk_async(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """runwayml: ``await (await create(...)).wait_for_task_output()`` on ``AsyncRunwayML``."""
    from abebeats_lab.providers.runway import build_payload

    body = build_payload(ctx.request, ctx.route)
    created = await client.text_to_video.create(
        model=body["model"],
        prompt_text=body["promptText"],
        ratio=body["ratio"],
        duration=body["duration"],
        seed=body["seed"],
    )
    await created.wait_for_task_output()
    return created.id, time.time()


# -- replicate -----------------------------------------------------------------------------


def _replicate_input(ctx: PeerContext) -> dict[str, Any]:
    from abebeats_lab import capabilities
    from abebeats_lab.providers.replicate import build_input

    return build_input(ctx.request, capabilities.capabilities_for(ctx.route))


def _replicate_open(ctx: PeerContext) -> Any:
    from replicate.client import Client

    client = Client(api_token=EMULATOR_KEYS["replicate"], base_url=ctx.url)
    client.poll_interval = REPLICATE_POLL_S * ctx.scale
    return client


def _replicate_close(client: Any) -> None:
    client._client.close()  # the SDK has no close(); its httpx client holds sockets


def replicate_run(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """replicate: ``run()``, a create held with ``Prefer: wait`` (60 s), then 0.5 s polling."""
    tag = f"run-{index}-{time.time_ns()}"
    hold: int | bool = True if ctx.scale == 1.0 else ctx.hold_s  # True is the SDK's default
    client.run(ctx.route.model, input={**_replicate_input(ctx), TAG_KEY: tag}, wait=hold)
    return "tag:" + tag, time.time()


def replicate_wait(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """replicate: create without a hold, then ``Prediction.wait()`` (GET every 0.5 s)."""
    prediction = client.models.predictions.create(
        model=ctx.route.model, input=_replicate_input(ctx)
    )
    prediction.wait()
    return prediction.id, time.time()


async def _replicate_aclose(client: Any) -> None:
    await client._async_client.aclose()  # the SDK has no close(); its httpx client holds sockets


async def replicate_async_wait(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """replicate: ``async_create`` without a hold, then ``Prediction.async_wait()`` (0.5 s)."""
    prediction = await client.models.predictions.async_create(
        model=ctx.route.model, input=_replicate_input(ctx)
    )
    await prediction.async_wait()
    return prediction.id, time.time()


# -- google-genai --------------------------------------------------------------------------


def _genai_open(ctx: PeerContext) -> Any:
    from google import genai
    from google.oauth2.credentials import Credentials

    from abebeats_lab.providers.veo import API_VERSION

    return genai.Client(
        vertexai=True,
        project=EMULATOR_PROJECT,
        location=EMULATOR_LOCATION,
        credentials=Credentials(token=EMULATOR_KEYS["veo"]),  # type: ignore[no-untyped-call]
        http_options={"base_url": ctx.url, "api_version": API_VERSION},
    )


def _genai_loop(ctx: PeerContext, client: Any, sleep_s: float) -> Outcome:
    from abebeats_lab.providers.veo import build_config

    source, config = build_config(ctx.request, ctx.route)
    operation = client.models.generate_videos(model=ctx.route.model, source=source, config=config)
    while not operation.done:
        time.sleep(sleep_s * ctx.scale)
        operation = client.operations.get(operation)
    assert operation.name is not None
    return operation.name, time.time()


def genai_10s(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """google-genai's documented loop: ``operations.get`` after ``time.sleep(10)``."""
    return _genai_loop(ctx, client, GENAI_DOC_SLEEPS_S[0])


def genai_20s(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """The same loop with the README examples' ``time.sleep(20)``."""
    return _genai_loop(ctx, client, GENAI_DOC_SLEEPS_S[1])


async def _genai_aclose(client: Any) -> None:
    await client.aio.aclose()
    client.close()  # aio.aclose() leaves the sync half's httpx client open


async def genai_10s_async(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """google-genai's documented async loop: ``aio.operations.get`` after ``asyncio.sleep(10)``."""
    from abebeats_lab.providers.veo import build_config

    source, config = build_config(ctx.request, ctx.route)
    operation = await client.aio.models.generate_videos(
        model=ctx.route.model, source=source, config=config
    )
    while not operation.done:
        await asyncio.sleep(GENAI_DOC_SLEEPS_S[0] * ctx.scale)
        operation = await client.aio.operations.get(operation)
    assert operation.name is not None
    return operation.name, time.time()


# -- fal_client ----------------------------------------------------------------------------


def _fal_open(ctx: PeerContext) -> Any:
    import fal_client

    return fal_client.SyncClient(key=EMULATOR_KEYS["pika"])


def _fal_close(client: Any) -> None:
    client._client.close()  # the SDK has no close(); its cached httpx client holds sockets


def fal_subscribe(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """fal_client: ``submit`` then ``handle.get()`` (status GET every 0.1 s, then the result)."""
    from abebeats_lab.providers.fal import build_input

    handle = client.submit(ctx.route.model, arguments=build_input(ctx.request))
    handle.get(interval=FAL_INTERVAL_S)
    return handle.request_id, time.time()


def _fal_async_open(ctx: PeerContext) -> Any:
    import fal_client

    return fal_client.AsyncClient(key=EMULATOR_KEYS["pika"])


async def _fal_aclose(client: Any) -> None:
    await (await client._client).aclose()  # no close() either; its cached httpx client


async def fal_subscribe_async(ctx: PeerContext, client: Any, index: int) -> Outcome:
    """fal_client: ``AsyncClient.submit`` then ``await handle.get()`` (status every 0.1 s)."""
    from abebeats_lab.providers.fal import build_input

    handle = await client.submit(ctx.route.model, arguments=build_input(ctx.request))
    await handle.get(interval=FAL_INTERVAL_S)
    return handle.request_id, time.time()


def configure(scale: float, fal_url: str | None = None) -> None:
    """Point fal_client (which takes no base URL) at an emulator; scale runwayml's constants."""
    from fal_client import client as fal_module
    from runwayml.lib import polling

    if fal_url is not None:
        fal_module.QUEUE_URL_FORMAT = fal_url + "/"
    polling.POLL_TIME = RUNWAY_POLL_TIME_S * scale  # type: ignore[assignment]
    polling.POLL_JITTER = RUNWAY_POLL_JITTER_S * scale  # type: ignore[assignment]


def _fixed(seconds: float) -> Callable[[float], float]:
    return lambda scale: seconds * scale


PEERS: dict[str, dict[str, PeerWaiter]] = {
    "runway": {
        "runwayml wait_for_task_output": PeerWaiter(
            _runway_open, runway_sdk, _close, _fixed(RUNWAY_POLL_TIME_S)
        )
    },
    "replicate": {
        "replicate run() (Prefer: wait)": PeerWaiter(
            _replicate_open, replicate_run, _replicate_close, _fixed(REPLICATE_POLL_S)
        ),
        "replicate Prediction.wait()": PeerWaiter(
            _replicate_open, replicate_wait, _replicate_close, _fixed(REPLICATE_POLL_S)
        ),
    },
    "veo": {
        "genai loop, sleep 10 s": PeerWaiter(
            _genai_open, genai_10s, _close, _fixed(GENAI_DOC_SLEEPS_S[0])
        ),
        "genai loop, sleep 20 s": PeerWaiter(
            _genai_open, genai_20s, _close, _fixed(GENAI_DOC_SLEEPS_S[1])
        ),
    },
    "pika": {
        "fal_client subscribe": PeerWaiter(
            _fal_open, fal_subscribe, _fal_close, lambda scale: FAL_INTERVAL_S
        )
    },
}
"""Peer waiters per provider, by the label the tables show."""

ASYNC_PEERS: dict[str, dict[str, AsyncPeerWaiter]] = {
    "runway": {
        "AsyncRunwayML wait_for_task_output": AsyncPeerWaiter(
            _runway_async_open, runway_sdk_async, _aclose, _fixed(RUNWAY_POLL_TIME_S)
        )
    },
    "replicate": {
        "replicate Prediction.async_wait()": AsyncPeerWaiter(
            _replicate_open, replicate_async_wait, _replicate_aclose, _fixed(REPLICATE_POLL_S)
        )
    },
    "veo": {
        "genai aio loop, sleep 10 s": AsyncPeerWaiter(
            _genai_open, genai_10s_async, _genai_aclose, _fixed(GENAI_DOC_SLEEPS_S[0])
        )
    },
    "pika": {
        "fal_client AsyncClient subscribe": AsyncPeerWaiter(
            _fal_async_open, fal_subscribe_async, _fal_aclose, lambda scale: FAL_INTERVAL_S
        )
    },
}
"""Each SDK's async waiter per provider, by label: one async client, every job on one loop."""
