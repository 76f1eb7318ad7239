"""Each peer's default way of waiting, driven unchanged against our emulators.

Every function submits one job, waits the way that SDK (or its documentation) does, and
returns ``(job id, wall-clock time the caller held the result)``. They are synchronous (the
official SDKs' waiters are) and run in threads. ``scale`` shrinks the peers' sleep constants
in ``--quick`` runs only; the full run uses every SDK's own constants.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from abebeats_lab._types import Route, VideoRequest
from abebeats_lab.emulator import EMULATOR_KEYS, EMULATOR_LOCATION, EMULATOR_PROJECT

__all__ = ["PEERS", "PeerContext", "PeerWaiter"]

RUNWAY_POLL_TIME_S = 6.0  # runwayml.lib.polling.POLL_TIME
RUNWAY_POLL_JITTER_S = 3.0  # runwayml.lib.polling.POLL_JITTER
GENAI_DOC_SLEEPS_S = (10.0, 20.0)  # operations.get docstring; README examples and genai tests
FAL_INTERVAL_S = 0.1  # fal_client DEFAULT_QUEUE_POLL_INTERVAL
REPLICATE_POLL_S = 0.5  # replicate poll_interval default
TAG_KEY = "benchmark_tag"
"""An extra Replicate input that names the job; run() hides the prediction id, the list shows it."""


@dataclass(frozen=True)
class PeerContext:
    """Where the emulators are and what every waiter sends (the same prompt everywhere)."""

    urls: dict[str, str]
    routes: dict[str, Route]
    requests: dict[str, VideoRequest]
    scale: float = 1.0
    """Multiplier on peer sleep constants (1.0 in the full run)."""


Outcome = tuple[str, float]
PeerWaiter = Callable[[PeerContext, int], Outcome]


def runway_sdk(ctx: PeerContext, index: int) -> Outcome:
    """runwayml: ``create(...).wait_for_task_output()`` (sleeps 4.5-7.5 s before each GET)."""
    from runwayml import RunwayML

    from abebeats_lab.providers.runway import build_payload

    body = build_payload(ctx.requests["runway"], ctx.routes["runway"])
    with RunwayML(api_key=EMULATOR_KEYS["runway"], base_url=ctx.urls["runway"]) as client:
        created = client.text_to_video.create(
            model=body["model"],
            prompt_text=body["promptText"],
            ratio=body["ratio"],
            duration=body["duration"],
            seed=body["seed"],
        )
        created.wait_for_task_output()
        return created.id, time.time()


def _replicate_input(ctx: PeerContext) -> dict[str, Any]:
    from abebeats_lab import capabilities
    from abebeats_lab.providers.replicate import build_input

    route = ctx.routes["replicate"]
    return build_input(ctx.requests["replicate"], capabilities.capabilities_for(route))


def _replicate_client(ctx: PeerContext) -> Any:
    from replicate.client import Client

    client = Client(api_token=EMULATOR_KEYS["replicate"], base_url=ctx.urls["replicate"])
    client.poll_interval = REPLICATE_POLL_S * ctx.scale
    return client


def replicate_run(ctx: PeerContext, index: int) -> Outcome:
    """replicate: ``run()``, a create held with ``Prefer: wait`` (60 s), then 0.5 s polling."""
    client = _replicate_client(ctx)
    tag = f"run-{index}-{time.time_ns()}"
    client.run(ctx.routes["replicate"].model, input={**_replicate_input(ctx), TAG_KEY: tag})
    return "tag:" + tag, time.time()


def replicate_wait(ctx: PeerContext, index: int) -> Outcome:
    """replicate: create without a hold, then ``Prediction.wait()`` (GET every 0.5 s)."""
    client = _replicate_client(ctx)
    prediction = client.models.predictions.create(
        model=ctx.routes["replicate"].model, input=_replicate_input(ctx)
    )
    prediction.wait()
    return prediction.id, time.time()


def _genai_loop(ctx: PeerContext, sleep_s: float) -> Outcome:
    from google import genai
    from google.oauth2.credentials import Credentials

    from abebeats_lab.providers.veo import API_VERSION, build_config

    source, config = build_config(ctx.requests["veo"], ctx.routes["veo"])
    client = genai.Client(
        vertexai=True,
        project=EMULATOR_PROJECT,
        location=EMULATOR_LOCATION,
        credentials=Credentials(token=EMULATOR_KEYS["veo"]),  # type: ignore[no-untyped-call]
        http_options={"base_url": ctx.urls["veo"], "api_version": API_VERSION},
    )
    with client:
        operation = client.models.generate_videos(
            model=ctx.routes["veo"].model, source=source, config=config
        )
        while not operation.done:
            time.sleep(sleep_s * ctx.scale)
            operation = client.operations.get(operation)
        assert operation.name is not None
        return operation.name, time.time()


def genai_10s(ctx: PeerContext, index: int) -> Outcome:
    """google-genai's documented loop: ``operations.get`` after ``time.sleep(10)``."""
    return _genai_loop(ctx, GENAI_DOC_SLEEPS_S[0])


def genai_20s(ctx: PeerContext, index: int) -> Outcome:
    """The same loop with the README examples' ``time.sleep(20)``."""
    return _genai_loop(ctx, GENAI_DOC_SLEEPS_S[1])


def fal_subscribe(ctx: PeerContext, index: int) -> Outcome:
    """fal_client: ``submit`` then ``handle.get()`` (status GET every 0.1 s, then the result)."""
    import fal_client

    from abebeats_lab.providers.pika import build_input

    client = fal_client.SyncClient(key=EMULATOR_KEYS["pika"])
    try:
        handle = client.submit(
            ctx.routes["pika"].model, arguments=build_input(ctx.requests["pika"])
        )
        handle.get(interval=FAL_INTERVAL_S)
        return handle.request_id, time.time()
    finally:
        client._client.close()  # the SDK has no close(); its cached httpx client holds sockets


def configure(ctx: PeerContext) -> None:
    """Point the SDKs that take no base URL at the emulators; scale runwayml's constants."""
    from fal_client import client as fal_module
    from runwayml.lib import polling

    fal_module.QUEUE_URL_FORMAT = ctx.urls["pika"] + "/"
    polling.POLL_TIME = RUNWAY_POLL_TIME_S * ctx.scale  # type: ignore[assignment]
    polling.POLL_JITTER = RUNWAY_POLL_JITTER_S * ctx.scale  # type: ignore[assignment]


PEERS: dict[str, dict[str, PeerWaiter]] = {
    "runway": {"runwayml wait_for_task_output": runway_sdk},
    "replicate": {
        "replicate run() (Prefer: wait)": replicate_run,
        "replicate Prediction.wait()": replicate_wait,
    },
    "veo": {"genai loop, sleep 10 s": genai_10s, "genai loop, sleep 20 s": genai_20s},
    "pika": {"fal_client subscribe": fal_subscribe},
}
"""Peer waiters per provider, by the label the table shows."""
