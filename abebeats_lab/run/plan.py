"""The plan of a run, made before any network call: its rows, limits, price and likely time.

Every (prompt, route, repeat) becomes a `Planned` row: settings left ``None`` take the
route's default, settings given are validated (or snapped with ``adapt``), and each row is
priced. From the plan come one `Limiter` per provider, the estimate `compare` checks
against ``max_cost_usd``, and the time it is likely to take. Nothing here opens a client or
writes the store.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
import secrets
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from abebeats_lab import capabilities
from abebeats_lab._types import ROUTE_DEFAULT_FIELDS, Route, Settings, VideoRequest
from abebeats_lab.errors import LabError, ValidationError
from abebeats_lab.providers import provider_class
from abebeats_lab.run import costs
from abebeats_lab.run.limits import Limiter
from abebeats_lab.store import JobRow

__all__ = [
    "RUNS_DIR",
    "Planned",
    "check_counts",
    "check_prices",
    "cost_of",
    "estimated_time",
    "limiters_for",
    "new_run_id",
    "plan_jobs",
    "run_directory",
    "run_spec",
    "settings_for",
    "unchecked_notes",
]

RUNS_DIR = "abebeats-runs"  # one default folder for every entry point (gitignored)
"""Default parent of run directories, under the working directory."""


@dataclass(frozen=True)
class Planned:
    """One job of a plan: its row (state ``planned``), the request it sends, and its data."""

    row: JobRow
    request: VideoRequest
    caps: capabilities.Capabilities


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_directory(run_dir: Path | str | None, run_id: str) -> Path:
    """The caller's run folder, or a new one per run under `RUNS_DIR`."""
    return Path(run_dir) if run_dir is not None else Path.cwd() / RUNS_DIR / run_id


def _prepare(
    request: VideoRequest, route: Route, *, adapt: bool
) -> tuple[VideoRequest, capabilities.Capabilities, dict[str, list[object]]]:
    """The request this route is sent, its data, and every setting nobody chose as given.

    Fields the caller left ``None`` take the route's default, recorded in ``adjusted`` as
    ``[None, default]``; fields the caller set must be allowed (``ValidationError``) unless
    ``adapt`` snaps them to the nearest allowed value, recorded as ``[asked, used]``.
    """
    filled, defaulted = capabilities.with_defaults(request, route)
    if not adapt:
        return filled, _validate_given(filled, route), dict(defaulted)
    adjusted, changes = capabilities.nearest(filled, route)
    caps = provider_class(route.provider).validate(adjusted, route)
    return adjusted, caps, {**defaulted, **{name: list(pair) for name, pair in changes.items()}}


def _validate_given(request: VideoRequest, route: Route) -> capabilities.Capabilities:
    """The provider's `validate`, saying how to get past a setting the route refuses."""
    try:
        return provider_class(route.provider).validate(request, route)
    except ValidationError as exc:
        if exc.field not in ROUTE_DEFAULT_FIELDS:
            raise
        hint = f"{exc.allowed} (leave it unset for the route's default, or adapt)"
        raise ValidationError(exc.field, exc.value, hint, route=str(route)) from None


_MP_MAIN = "__mp_main__"
"""The name a spawned worker gives the main script it imports again."""
WORKER_IMPORT = (
    "a run was started by a worker process importing the script again (scoring starts "
    "workers, and multiprocessing re-imports the main script in each): put the script's top "
    'level under `if __name__ == "__main__":`'
)
"""What a worker that re-imported a script without a main guard says, once, before it exits."""


def refuse_in_worker_import() -> None:
    """Refuse to start a run from a script's top level while a worker process imports it again.

    Scoring spawns worker processes, and ``spawn`` runs the main script again in each one
    (as ``__mp_main__``, before the worker starts); a script without an ``if __name__ ==
    "__main__":`` guard would then send every paid job once more per worker. Only that
    top-level code is refused: a function of the script that a worker calls runs as usual.
    """
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == _MP_MAIN:
            # One line and a plain exit: a traceback per worker would bury the advice.
            print(f"abebeats-lab: {WORKER_IMPORT}", file=sys.stderr)
            raise SystemExit(1)
        frame = frame.f_back


def _check_text(name: str, text: str | None) -> None:
    """Text must be storable as UTF-8 (a lone surrogate from undecodable command-line bytes
    is not): refused before anything is written, not half-way through writing the run."""
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(name, text, "valid UTF-8 text") from None


def plan_jobs(
    run_id: str,
    prompts: Sequence[str],
    routes: Sequence[Route],
    settings: Settings,
    *,
    repeats: int = 1,
    adapt: bool = False,
    emulate: bool = False,
    prices: Mapping[str, float] | None = None,
) -> list[Planned]:
    """Every (prompt, route, repeat) validated and priced; raises before any network call.

    User prices (``prices``, then the user's ``prices.toml``) replace the price table's.
    """
    for prompt in prompts:
        _check_text("prompt", prompt)
    _check_text("negative_prompt", settings.negative_prompt)
    overrides = capabilities.price_overrides(prices)
    planned = []
    for index, prompt in enumerate(prompts):
        for route in routes:
            sent, caps, adjusted = _prepare(VideoRequest.of(prompt, settings), route, adapt=adapt)
            caps = capabilities.priced(caps, route, overrides)
            emulated = emulate and not caps.runs_locally
            cost = costs.job_cost(caps, sent, emulated=emulated)
            for repeat in range(repeats):
                row = JobRow(
                    run_id=run_id,
                    prompt_index=index,
                    route=str(route),
                    repeat=repeat,
                    provider=route.provider,
                    model=route.model,
                    prompt=prompt,
                    settings=sent.as_dict(),
                    seed=sent.seed,
                    client_ref=uuid.uuid4().hex,
                    cost_usd=cost.charged_usd,
                    cost_estimate_usd=cost.estimate_usd,
                    cost_note=cost.note,
                    price_source=cost.source,
                    price_date=cost.date,
                    emulated=emulated,
                    adjusted=adjusted,
                )
                planned.append(Planned(row, sent, caps))
    return planned


def settings_for(
    prompts: Sequence[str], settings: Settings | Sequence[Settings] | None
) -> list[Settings]:
    """One `Settings` per prompt: the same for all, or the caller's list (same length)."""
    if settings is None or isinstance(settings, Settings):
        return [checked_settings(settings)] * len(prompts)
    if isinstance(settings, VideoRequest) or not isinstance(settings, Sequence):
        checked_settings(settings)  # raises, naming what was given
    if len(settings) != len(prompts):
        raise LabError(f"{len(settings)} settings for {len(prompts)} prompts: give one or one each")
    return [checked_settings(one) for one in settings]


def checked_settings(settings: object) -> Settings:
    """``settings`` as `Settings` (None: the routes' defaults); anything else, a `VideoRequest`
    included, is one clear error before anything is sent."""
    if settings is None:
        return Settings()
    if isinstance(settings, Settings):
        return settings
    hint = " (the prompt goes in the prompts)" if isinstance(settings, VideoRequest) else ""
    raise LabError(
        f"settings must be Settings(...), e.g. Settings(duration_s=4), not "
        f"{type(settings).__name__}{hint}"
    )


def limiters_for(
    pairs: Iterable[tuple[str, capabilities.Capabilities]],
    concurrency: Mapping[str, int] | None = None,
    rate_per_min: Mapping[str, float] | None = None,
) -> dict[str, Limiter]:
    """One limiter per provider from ``(provider, caps)`` pairs: the tightest capability
    data (``concurrency``, ``rate_per_min``) unless the caller overrides it per provider."""
    caps_by: dict[str, list[capabilities.Capabilities]] = {}
    for provider, caps in pairs:
        caps_by.setdefault(provider, []).append(caps)
    limiters: dict[str, Limiter] = {}
    for provider, mine in caps_by.items():
        cap = (concurrency or {}).get(provider, min(c.concurrency for c in mine))
        rates = [c.rate_per_min for c in mine if c.rate_per_min]
        rate = (rate_per_min or {}).get(provider, min(rates) if rates else None)
        limiters[provider] = Limiter(max(1, cap), rate)
    return limiters


def estimated_time(planned: Sequence[Planned], limiters: Mapping[str, Limiter]) -> float:
    """Waves of jobs per provider times the slowest typical run time; the slowest provider wins."""
    worst = 0.0
    for provider, limiter in limiters.items():
        mine = [p for p in planned if p.row.provider == provider]
        waves = math.ceil(len(mine) / limiter.cap)
        worst = max(worst, waves * max(p.caps.typical_run_s for p in mine))
    return worst


def run_spec(
    prompts: Sequence[str], routes: Sequence[Route], settings: Settings, **options: object
) -> dict[str, object]:
    """What a run was asked, as the store keeps it (`resume` reads its options back)."""
    return {
        "prompts": list(prompts),
        "routes": [str(r) for r in routes],
        "settings": settings.as_dict(),
        **options,
    }


def unchecked_notes(planned: Sequence[Planned]) -> list[str]:
    """One note per route planned through a catch-all row (settings and price unchecked)."""
    seen = dict.fromkeys(p.row.route for p in planned if not p.caps.checked)
    return [f"{route}: {capabilities.capabilities_for(route).notes}" for route in seen]


def cost_of(row: JobRow) -> costs.JobCost:
    """The cost figures a planned row carries, as `costs.total` adds them up."""
    source, date = row.price_source or "", row.price_date or ""
    return costs.JobCost(row.cost_usd, row.cost_estimate_usd, row.cost_note, source, date)


def check_prices(prices: Mapping[str, float] | None, routes: Sequence[Route]) -> None:
    """A price (``prices=``, ``--price``) for no route of this call is a typo, not a catalogue
    (that is ``prices.toml``): refused, since it would silently leave a route unpriced."""
    names = [str(r) for r in routes]
    for key in prices or {}:
        pattern = key.strip() if "*" in key else str(Route.parse(key))
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            allowed = f"a route of this run: {', '.join(names)} (keep others in prices.toml)"
            raise ValidationError("route", key, allowed, route="--price (prices=)")


def check_counts(
    what: str, prompts: Sequence[str], routes: Sequence[Route], repeats: int = 1
) -> None:
    """At least one prompt, one route and one repeat, said as the bad input it is."""
    if not prompts:
        raise ValidationError("prompts", [], f"at least one prompt to {what}")
    if not routes:
        raise ValidationError("routes", [], f"at least one route to {what} (see routes)")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValidationError("repeats", repeats, "a whole number of 1 or more")
