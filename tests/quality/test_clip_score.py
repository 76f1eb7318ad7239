"""The CLIP score: real loading and scoring code, run on a tiny model built here.

No weights are downloaded. `_clip_models.write_tiny_clip` builds a stand-in image tower and
text tower with ``onnx.helper`` and a BPE ``tokenizer.json`` with ``tokenizers``, in the files
and layout of the real CLIP export; the tests put them where the loader looks (the per-user
cache, moved by ``ABEBEATS_LAB_CACHE_DIR``) or serve them from a loopback HTTP server, and run
them through the very same `quality.clip.prepare`, `ClipModel` and `metrics.score` a user runs.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _clip_models import CROP, write_tiny_clip
from _quality_clips import HEIGHT, WIDTH, count, write_clip

from abebeats_lab import Settings, VideoRequest
from abebeats_lab.errors import DownloadError, MissingExtraError
from abebeats_lab.media.weights import WeightFile, fetch
from abebeats_lab.quality import clip, metrics
from abebeats_lab.run import api as runner
from abebeats_lab.views import report

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _solid(colour: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (HEIGHT, WIDTH, 3)).copy()


def _closed_port() -> int:
    """A loopback port nothing listens on: a connection there is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def no_weights_server(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv(clip.WEIGHTS_URL_ENV, url)
    return url


@pytest.fixture
def tiny_in_cache() -> Path:
    """The tiny model where `prepare` looks first: models/clip-ViT-B-32 in the user cache."""
    return write_tiny_clip(clip.models_dir())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    settings = Settings(duration_s=1, resolution="240p")
    prompts = ["a red kite", "a blue boat"]
    done = asyncio.run(runner.compare(prompts, ["local:procedural"], settings, run_dir=folder))
    assert {r.state for r in done.rows} == {"succeeded"}
    return folder


def test_a_clip_scores_high_against_its_own_colour_and_zero_against_another(
    tmp_path: Path, tiny_in_cache: Path
) -> None:
    folder = clip.prepare(fetch=False)
    assert folder == tiny_in_cache
    red = write_clip(tmp_path / "red.mp4", [_solid(RED)] * count())
    said_red = metrics.measure(red, VideoRequest("a red kite"), clip=folder)["clip_score"]
    said_blue = metrics.measure(red, VideoRequest("a blue boat"), clip=folder)["clip_score"]
    assert isinstance(said_red, float) and said_red > 30  # of 100; the other words dilute it
    assert said_blue == 0.0  # a negative cosine is clipped to 0, as CLIPScore does
    assert clip.load(str(folder)).preprocess.crop == (CROP, CROP)  # the config was read


def test_frames_are_sampled_uniformly_through_the_clip(tmp_path: Path, tiny_in_cache: Path) -> None:
    half = count() // 2
    red_then_blue = [_solid(RED)] * half + [_solid(BLUE)] * half
    mixed = write_clip(tmp_path / "mixed.mp4", red_then_blue)
    all_red = write_clip(tmp_path / "red.mp4", [_solid(RED)] * count())
    request = VideoRequest("red")
    both = metrics.measure(mixed, request, clip=tiny_in_cache)["clip_score"]
    full = metrics.measure(all_red, request, clip=tiny_in_cache)["clip_score"]
    assert isinstance(both, float) and isinstance(full, float)
    # Half the sampled frames are red: half the score (only the start would give all of it).
    assert both == pytest.approx(full / 2, rel=0.05)


def test_score_of_a_run_fills_clip_score_for_every_clip(
    run_dir: Path, tiny_in_cache: Path, no_weights_server: str
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        table = metrics.score(run_dir, executor=pool, refresh=True)
    assert table.attrs["notes"] == []
    assert table["clip_score"].notna().all() and table["clip_score"].ge(0).all()
    assert metrics.load_scores(run_dir)["clip_score"].equals(table["clip_score"])


def test_a_missing_weight_file_is_one_line_and_the_other_metrics_still_run(
    tmp_path: Path, run_dir: Path, tiny_in_cache: Path, no_weights_server: str
) -> None:
    (tiny_in_cache / "text" / "tokenizer.json").unlink()
    with pytest.raises(clip.WeightsUnavailable) as caught:
        clip.prepare()
    line = str(caught.value)
    assert "\n" not in line and "text/tokenizer.json" in line and clip.WEIGHTS_URL_ENV in line
    with ThreadPoolExecutor(max_workers=2) as pool:
        table = metrics.score(run_dir, executor=pool, refresh=True)
    assert table.attrs["notes"] == [line]
    assert table["clip_score"].isna().all()
    assert table["error"].isna().all() and table["flicker"].notna().all()
    assert table["conforms"].eq(True).all()
    # The command line says the same one line and scores the rest.
    done = subprocess.run(
        [sys.executable, "-m", "abebeats_lab.cli", "score", str(run_dir), "--refresh"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "clip_score not measured" in done.stderr and "Traceback" not in done.stderr
    assert "local:procedural" in done.stdout
    # --no-clip: the user asked for no CLIP score, so nothing is said about its weights.
    skipped = subprocess.run(
        [sys.executable, "-m", "abebeats_lab.cli", "score", str(run_dir), "--refresh", "--no-clip"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert skipped.returncode == 0, skipped.stderr
    assert "clip_score not measured" not in skipped.stderr and "local:procedural" in skipped.stdout
    page = report.write_report(run_dir, tmp_path / "report.html").read_text()
    assert "<code>clip_score</code>" in page and "It was not measured for this run" in page


def test_without_the_metrics_extra_the_score_says_what_to_install(run_dir: Path) -> None:
    # onnxruntime hidden from the import system, as when the extra is not installed.
    script = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from abebeats_lab.quality import clip, metrics\n"
        "try:\n    clip.prepare()\nexcept ImportError as exc:\n    print('raised:', exc)\n"
        f"table = metrics.score({str(run_dir)!r}, refresh=True)\n"
        "print('notes:', table.attrs['notes'])\n"
        "print('flicker measured:', bool(table['flicker'].notna().all()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    install = "pip install 'abebeats-lab[metrics]'"
    raised = next(line for line in done.stdout.splitlines() if line.startswith("raised:"))
    assert install in raised and "onnxruntime" in raised
    assert f"notes: [{str(MissingExtraError('the CLIP score', 'metrics', 'onnxruntime'))!r}]" in (
        done.stdout
    )
    assert "flicker measured: True" in done.stdout


# -- fetching at first use, from a real loopback server ----------------------------------------


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serves a folder laid out as ``REPO/resolve/REVISION/FILE``, counting the requests."""

    served: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.served.append(self.path)


@pytest.fixture
def weights_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A real HTTP server on 127.0.0.1 (port 0) serving the tiny model's files, which
    ``ABEBEATS_LAB_WEIGHTS_URL`` points at; yields the paths requested."""
    built = write_tiny_clip(tmp_path / "built")
    root = tmp_path / "published"
    for item in clip.MODEL_FILES:
        target = root / item.repo / "resolve" / clip.REVISION / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((built / item.path).read_bytes())
    served: list[str] = []
    handler = type("Handler", (_Files,), {"served": served})

    def factory(*args: object) -> _Files:
        return handler(*args, directory=str(root))  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(clip.WEIGHTS_URL_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_first_use_fetches_the_weights_into_the_cache_once(
    weights_server: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not clip.models_dir().exists()
    folder = clip.prepare()
    assert folder == clip.models_dir()
    assert "fetching vision/model.onnx" in capsys.readouterr().err  # the progress bar
    for item in clip.MODEL_FILES:
        published = tmp_path / "built" / item.path
        assert (folder / item.path).read_bytes() == published.read_bytes()
    assert len(weights_server) == len(clip.MODEL_FILES)
    assert not list(folder.rglob("*.part"))
    clip.prepare(progress=False)
    assert len(weights_server) == len(clip.MODEL_FILES)  # cached: nothing fetched again
    red = write_clip(tmp_path / "red.mp4", [_solid(RED)] * count())
    assert metrics.measure(red, VideoRequest("red"), clip=folder)["clip_score"] > 50


def test_a_file_whose_digest_differs_is_refused_and_not_kept(
    weights_server: list[str], tmp_path: Path
) -> None:
    item = clip.MODEL_FILES[1]
    url = f"{os.environ[clip.WEIGHTS_URL_ENV]}/{item.repo}/resolve/{clip.REVISION}/{item.name}"
    with pytest.raises(DownloadError, match="SHA-256"):
        fetch(WeightFile(item.path, url, sha256="0" * 64), tmp_path / "cache", progress=False)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    missing = url.replace(item.name, "absent.json")
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(WeightFile("absent.json", missing), tmp_path / "cache", progress=False)
