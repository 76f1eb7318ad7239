"""``/_emulator/*``: read an emulator's truth and switch its scenario from another process.

Benchmarks run the emulators in a separate process (so the client's CPU is measured alone);
these routes let them set scenarios and read back what really happened.
"""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from abebeats_lab.emulator.core import EmulatorState
from abebeats_lab.emulator.scenario import Scenario

__all__ = ["control_routes"]


def control_routes(state: EmulatorState) -> list[Route]:
    """Routes for truth, the request log and the scenario of one emulator."""

    async def truth(_: Request) -> JSONResponse:
        return JSONResponse({"provider": state.provider, "jobs": state.truth()})

    async def requests(_: Request) -> JSONResponse:
        return JSONResponse([asdict(r) for r in state.requests])

    async def scenario(request: Request) -> JSONResponse:
        if request.method == "PUT":
            try:
                state.set_scenario(Scenario.from_dict(await request.json()))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(state.scenario.to_dict())

    async def reset(_: Request) -> JSONResponse:
        state.jobs.clear()
        state.requests.clear()
        return JSONResponse({"ok": True})

    return [
        Route("/_emulator/truth", truth, methods=["GET"]),
        Route("/_emulator/requests", requests, methods=["GET"]),
        Route("/_emulator/scenario", scenario, methods=["GET", "PUT"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
    ]
