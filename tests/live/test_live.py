"""Real provider APIs, opt-in: each test spends real money, so it runs only when asked twice.

Set the provider's key (e.g. ``RUNWAYML_API_SECRET``) and ``ABEBEATS_LIVE=1``. Without both the
test is skipped with a reason that says so. These tests assert the same contract as the
emulated ones: one short clip, downloaded, probed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from abebeats_lab import VideoRequest
from abebeats_lab.capabilities import nearest

# Read at import, before the autouse fixture clears provider variables for every other test.
_ENV = dict(os.environ)
_LIVE = _ENV.get("ABEBEATS_LIVE") == "1"
CASES = {
    "runway:gen4.5": ("RUNWAYML_API_SECRET", "RUNWAY_API_KEY"),
    "replicate:google/veo-3-fast": ("REPLICATE_API_TOKEN",),
    "veo:veo-3.1-fast-generate-001": ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_PROJECT_ID"),
    "pika:fal-ai/pika/v2.2/text-to-video": ("FAL_KEY", "PIKA_API_KEY"),
}
PASS_THROUGH = (
    "RUNWAYML_API_SECRET",
    "RUNWAY_API_KEY",
    "REPLICATE_API_TOKEN",
    "FAL_KEY",
    "PIKA_API_KEY",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_PROJECT_ID",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
)

pytestmark = pytest.mark.live


@pytest.mark.parametrize("route", sorted(CASES))
async def test_one_short_clip_end_to_end(
    route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = CASES[route]
    if not _LIVE or not any(_ENV.get(name) for name in variables):
        pytest.skip(f"live test: set {' or '.join(variables)} and ABEBEATS_LIVE=1 (spends money)")
    for name in PASS_THROUGH:
        if _ENV.get(name):
            monkeypatch.setenv(name, _ENV[name])
    from abebeats_lab.run.api import generate

    request, _ = nearest(VideoRequest("a red kite over desert dunes", duration_s=5, seed=7), route)
    result = await generate(
        request.prompt, [route], request.settings, run_dir=tmp_path, fallback=False
    )
    assert Path(result.output_path).is_file()
