"""Capability data and request validation: clear errors before any network call."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abebeats_lab import Route, VideoRequest
from abebeats_lab.capabilities import all_routes, capabilities_for, nearest, validate
from abebeats_lab.errors import UnknownRouteError, ValidationError

LOCAL = "local:procedural"


def test_every_route_has_a_price_with_source_and_date() -> None:
    for caps in all_routes():
        assert caps.price.source, caps.pattern
        assert caps.price.date, caps.pattern
        assert caps.durations and caps.aspect_ratios and caps.resolutions, caps.pattern


def test_a_valid_request_passes() -> None:
    caps = validate(VideoRequest("a paper boat", duration_s=4), LOCAL)
    assert caps.pattern == LOCAL


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        ({"prompt": "   "}, "prompt", "non-empty"),
        ({"duration_s": 60}, "duration_s", "1, 2, 3"),
        ({"aspect_ratio": "7:3"}, "aspect_ratio", "16:9"),
        ({"resolution": "8k"}, "resolution", "720p"),
        ({"seed": -1}, "seed", "0..4294967295"),
        ({"image": "https://example.invalid/a.png"}, "image", "text-to-video"),
    ],
)
def test_invalid_requests_name_field_value_and_allowed(
    change: dict, field: str, allowed: str
) -> None:
    request = VideoRequest("a paper boat").replace(**change)
    with pytest.raises(ValidationError) as caught:
        validate(request, LOCAL)
    message = str(caught.value)
    assert caught.value.field == field
    assert field in message and allowed in message and LOCAL in message


def test_unknown_route_lists_the_known_ones() -> None:
    """An unknown model lists its provider's routes (not the whole table); an unknown
    provider names the providers; both point at `abebeats-lab routes`."""
    with pytest.raises(UnknownRouteError) as caught:
        capabilities_for("runway:nomodel")
    message = str(caught.value)
    assert "runway:gen4.5" in message and "local:procedural" not in message
    assert "abebeats-lab routes" in message
    with pytest.raises(UnknownRouteError) as caught:
        capabilities_for("nope:model")
    assert "local:<model>" in str(caught.value) and "runway:<model>" in str(caught.value)
    assert "abebeats-lab routes" in str(caught.value)
    assert isinstance(caught.value, KeyError)


@pytest.mark.parametrize("text", ["", "local", ":procedural", "local:"])
def test_malformed_routes_are_rejected(text: str) -> None:
    with pytest.raises(UnknownRouteError):
        Route.parse(text)


def test_route_keeps_colons_after_the_provider() -> None:
    route = Route.parse("replicate:owner/name:abc123")
    assert (route.provider, route.model) == ("replicate", "owner/name:abc123")
    assert str(route) == "replicate:owner/name:abc123"


def test_runway_counts_prompt_length_in_utf16_units() -> None:
    emoji = "🎬" * 501  # 1002 UTF-16 code units, 501 characters
    with pytest.raises(ValidationError, match="utf16"):
        validate(VideoRequest(emoji), "runway:gen4.5")


def test_nearest_snaps_and_reports_each_change() -> None:
    request = VideoRequest("kite", duration_s=5, aspect_ratio="4:3", resolution="720p")
    adjusted, changes = nearest(request, "runway:gen4.5")
    assert adjusted.aspect_ratio == "16:9"
    assert changes == {"aspect_ratio": ("4:3", "16:9")}
    validate(adjusted, "runway:gen4.5")


def test_price_estimate_uses_tiers() -> None:
    caps = capabilities_for("runway:veo3.1_fast")
    silent = caps.estimate_usd(VideoRequest("x", duration_s=8))
    loud = caps.estimate_usd(VideoRequest("x", duration_s=8, generate_audio=True))
    assert silent is not None and loud is not None and loud > silent


requests = st.builds(
    VideoRequest,
    prompt=st.text(max_size=50),
    duration_s=st.integers(-5, 30),
    aspect_ratio=st.sampled_from(["16:9", "9:16", "1:1", "7:3", "", "abc"]),
    resolution=st.sampled_from(["720p", "1080p", "240p", "8k", ""]),
    seed=st.none() | st.integers(-(2**40), 2**40),
    negative_prompt=st.none() | st.text(max_size=10),
    generate_audio=st.booleans(),
)


@given(
    request=requests,
    route=st.sampled_from([c.pattern for c in all_routes() if "*" not in c.pattern]),
)
def test_any_request_validates_or_raises_validation_error(
    request: VideoRequest, route: str
) -> None:
    try:
        validate(request, route)
    except ValidationError as exc:
        assert exc.field in str(exc)
