"""Downloads against a real loopback server: every rejection leaves nothing behind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from abebeats_lab._types import OutputRef
from abebeats_lab.emulator.server import RunningServer, serve
from abebeats_lab.errors import DownloadError
from abebeats_lab.http import DEFAULT_RETRY
from abebeats_lab.media.download import DownloadBudget, DownloadStalled, download, save_output
from abebeats_lab.media.hosts import ALLOW_PRIVATE_ENV
from abebeats_lab.media.probe import output_name, safe_name
from abebeats_lab.media.render import render_video

VIDEO = render_video(prompt="download me", seed=1, duration_s=1, width=320, height=180)
TRICKLE_EVERY_S = 0.2
SMALL_BUDGET = DownloadBudget(min_bytes_per_s=64 * 1024, grace_s=0.5, max_s=30)
PUBLIC_ORIGIN = "https://8.8.8.8"
"""A provider base URL on a public address (literal, so nothing is resolved)."""
METADATA = "http://169.254.169.254/latest/meta-data/"
SEEN: list[dict[str, str]] = []
"""Headers of every request the output server got."""
BUSY_ANSWERS = 2
"""How many times /busy answers 503 (with Retry-After: 0) before it serves the video."""
BUSY_SEEN: list[str] = []


async def _truncated(scope: dict, receive: object, send: object) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,  # type: ignore[operator]
            "headers": [
                (b"content-length", str(len(VIDEO)).encode()),
                (b"content-type", b"video/mp4"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": VIDEO[: len(VIDEO) // 2]})  # type: ignore[operator]


async def _trickle() -> AsyncIterator[bytes]:
    for index in range(len(VIDEO)):
        yield VIDEO[index : index + 1]
        await asyncio.sleep(TRICKLE_EVERY_S)


def _app() -> Starlette:
    async def good(request: Request) -> Response:
        SEEN.append(dict(request.headers))
        return Response(VIDEO, media_type="video/mp4")

    async def trickle(_: Request) -> Response:
        headers = {"content-length": str(len(VIDEO))}
        return StreamingResponse(_trickle(), media_type="video/mp4", headers=headers)

    async def to_metadata(_: Request) -> Response:
        return RedirectResponse(METADATA, status_code=302)

    async def html(_: Request) -> Response:
        return Response(b"<html>not a video</html>" * 10, media_type="video/mp4")

    async def empty(_: Request) -> Response:
        return Response(b"", media_type="video/mp4")

    async def gone(_: Request) -> Response:
        return Response("expired", status_code=403)

    async def busy(request: Request) -> Response:
        BUSY_SEEN.append(request.url.path)
        if request.url.path == "/always-busy" or len(BUSY_SEEN) <= BUSY_ANSWERS:
            return Response("slow down", status_code=503, headers={"retry-after": "0"})
        return Response(VIDEO, media_type="video/mp4")

    async def to_file(_: Request) -> Response:
        return RedirectResponse("file:///etc/passwd", status_code=302)

    async def to_good(_: Request) -> Response:
        return RedirectResponse("/good.mp4", status_code=302)

    async def mp4_header_garbage(_: Request) -> Response:
        return Response(VIDEO[:64] + b"\0" * 4096, media_type="video/mp4")

    app = Starlette(
        routes=[
            Route("/good.mp4", good),
            Route("/html", html),
            Route("/empty", empty),
            Route("/gone", gone),
            Route("/busy", busy),
            Route("/always-busy", busy),
            Route("/to-file", to_file),
            Route("/to-good", to_good),
            Route("/garbage", mp4_header_garbage),
            Route("/trickle", trickle),
            Route("/to-metadata", to_metadata),
        ]
    )
    app.mount("/truncated", _truncated)
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve(_app()) as running:
        yield running


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_good_download_is_verified_and_probed(server: RunningServer, tmp_path: Path) -> None:
    output = await download(f"{server.url}/good.mp4", tmp_path / "v.mp4")
    assert output.path.read_bytes() == VIDEO
    assert output.sha256 == hashlib.sha256(VIDEO).hexdigest()
    assert output.probe.codec == "h264" and output.probe.width == 320
    assert _leftovers(tmp_path) == ["v.mp4"]


async def test_redirect_within_http_is_followed(server: RunningServer, tmp_path: Path) -> None:
    output = await download(f"{server.url}/to-good", tmp_path / "v.mp4")
    assert output.probe.bytes == len(VIDEO)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/truncated/", "truncated"),
        ("/html", "not an MP4"),
        ("/empty", "empty"),
        ("/gone", "HTTP 403"),
        ("/to-file", "only http"),
        ("/garbage", "not a playable video"),
    ],
)
async def test_rejections_leave_no_file(
    server: RunningServer, tmp_path: Path, path: str, reason: str
) -> None:
    with pytest.raises(DownloadError, match=reason):
        await download(f"{server.url}{path}", tmp_path / "v.mp4")
    assert _leftovers(tmp_path) == []


async def test_size_cap(server: RunningServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cap"):
        await download(f"{server.url}/good.mp4", tmp_path / "v.mp4", max_bytes=1000)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.mp4", "/etc/passwd"])
async def test_non_http_urls_are_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="only http"):
        await download(url, tmp_path / "v.mp4")


async def test_inline_bytes_and_data_urls(tmp_path: Path) -> None:
    inline = await save_output(OutputRef(data=VIDEO), tmp_path / "a.mp4")
    encoded = "data:video/mp4;base64," + base64.b64encode(VIDEO).decode()
    from_url = await save_output(OutputRef(url=encoded), tmp_path / "b.mp4")
    assert inline.sha256 == from_url.sha256


async def test_expired_url_is_refreshed_once(server: RunningServer, tmp_path: Path) -> None:
    calls = []

    async def refresh() -> OutputRef:
        calls.append(1)
        return OutputRef(url=f"{server.url}/good.mp4")

    output = await save_output(
        OutputRef(url=f"{server.url}/gone"), tmp_path / "v.mp4", refresh=refresh
    )
    assert calls == [1] and output.probe.bytes == len(VIDEO)


async def test_a_busy_storage_host_is_asked_again(server: RunningServer, tmp_path: Path) -> None:
    """503 with Retry-After is "not now", not "gone": the same URL is fetched again."""
    BUSY_SEEN.clear()
    output = await download(f"{server.url}/busy", tmp_path / "v.mp4")
    assert output.probe.bytes == len(VIDEO)
    assert BUSY_SEEN == ["/busy"] * (BUSY_ANSWERS + 1)
    assert _leftovers(tmp_path) == ["v.mp4"]


async def test_a_host_busy_for_good_fails_after_the_retry_policy(
    server: RunningServer, tmp_path: Path
) -> None:
    BUSY_SEEN.clear()
    with pytest.raises(DownloadError, match="HTTP 503"):
        await download(f"{server.url}/always-busy", tmp_path / "v.mp4")
    assert len(BUSY_SEEN) == DEFAULT_RETRY.max_attempts
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "a/b\\c", "..", "", "ok name?.mp4"])
def test_safe_names_cannot_escape(hostile: str) -> None:
    name = safe_name("runway:gen4.5", hostile, 0)
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert name


def test_output_names_keep_index_repeat_and_hash_whatever_the_route() -> None:
    short = output_name("runway:gen4.5", 3, 1, "0123456789ab")
    assert short == "runway-gen4.5_3_1_0123456789ab"  # the name existing runs already have
    owner = "replicate:bytedance/seedance-1-pro-fast-image-to-video-extended"
    names = {
        output_name(f"{owner}{'/x' * extra}:{version * 64}", index, repeat, tag)
        for extra in (0, 100)
        for version in "ab"
        for index in (1, 10)
        for repeat in (0, 1)
        for tag in ("1111aaaa2222", "3333bbbb4444")
    }
    assert len(names) == 2 * 2 * 2 * 2 * 2
    assert all(len(name) <= len(safe_name("x" * 1000)) for name in names)  # safe_name's bound


# -- the time budget ------------------------------------------------------------------------


async def test_a_trickle_runs_out_of_its_budget(server: RunningServer, tmp_path: Path) -> None:
    """Headers, then a byte now and then: the read timeout never fires, the budget does."""
    with pytest.raises(DownloadStalled, match=r"download too slow: .* under 65536 bytes/s"):
        await download(f"{server.url}/trickle", tmp_path / "v.mp4", budget=SMALL_BUDGET)
    assert _leftovers(tmp_path) == []


async def test_the_ceiling_bounds_even_a_steady_download(
    server: RunningServer, tmp_path: Path
) -> None:
    steady = DownloadBudget(min_bytes_per_s=1, grace_s=0.3, max_s=0.5)
    with pytest.raises(DownloadStalled, match=r"0\.5 s ceiling"):
        await download(f"{server.url}/trickle", tmp_path / "v.mp4", budget=steady)


def test_the_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABEBEATS_LAB_DOWNLOAD_GRACE_S", "2")
    monkeypatch.setenv("ABEBEATS_LAB_DOWNLOAD_MIN_BYTES_PER_S", "100")
    budget = DownloadBudget.from_env()
    assert (budget.grace_s, budget.min_bytes_per_s, budget.max_s) == (2, 100, 1800)
    assert budget.allowed_s(0) == 2 and budget.allowed_s(1000) == 10
    monkeypatch.setenv("ABEBEATS_LAB_DOWNLOAD_MAX_S", "soon")
    with pytest.raises(DownloadError, match="ABEBEATS_LAB_DOWNLOAD_MAX_S"):
        DownloadBudget.from_env()


# -- outputs on internal addresses ----------------------------------------------------------


@pytest.mark.parametrize("where", ["loopback", "localhost", "metadata"])
async def test_a_provider_output_on_an_internal_address_is_refused(
    server: RunningServer, tmp_path: Path, where: str
) -> None:
    url = {
        "loopback": f"{server.url}/good.mp4",
        "localhost": f"{server.url.replace('127.0.0.1', 'localhost')}/good.mp4",
        "metadata": METADATA,
    }[where]
    SEEN.clear()
    with pytest.raises(DownloadError, match="refusing to fetch an output from") as caught:
        await save_output(OutputRef(url=url), tmp_path / "v.mp4", origin=PUBLIC_ORIGIN)
    assert ALLOW_PRIVATE_ENV in str(caught.value) and "\n" not in str(caught.value)
    assert SEEN == [] and _leftovers(tmp_path) == []


async def test_internal_outputs_are_fetched_from_the_providers_own_address_or_when_allowed(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{server.url}/good.mp4"
    # The emulator: the provider's base URL is on the same loopback address.
    output = await save_output(OutputRef(url=url), tmp_path / "a.mp4", origin=server.url)
    assert output.probe.bytes == len(VIDEO)
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    output = await save_output(OutputRef(url=url), tmp_path / "b.mp4", origin=PUBLIC_ORIGIN)
    assert output.probe.bytes == len(VIDEO)


async def test_a_redirect_to_another_internal_address_is_refused(
    server: RunningServer, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError, match=r"169\.254\.169\.254"):
        await save_output(
            OutputRef(url=f"{server.url}/to-metadata"), tmp_path / "v.mp4", origin=server.url
        )
    assert _leftovers(tmp_path) == []


async def test_downloads_carry_no_provider_key(server: RunningServer, tmp_path: Path) -> None:
    SEEN.clear()
    await save_output(OutputRef(url=f"{server.url}/good.mp4"), tmp_path / "v.mp4")
    assert len(SEEN) == 1 and "authorization" not in SEEN[0]
