"""The command line as a user meets it: real subprocesses, real files, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from abebeats_lab.media import probe

BOAT = "a paper boat on a neon river"
EMULATED_ROUTES = [
    "runway:gen4.5",
    "replicate:google/veo-3-fast",
    "veo:veo-3.1-fast-generate-001",
    "pika:fal-ai/pika/v2.2/text-to-video",
]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "abebeats_lab.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_generate_local_writes_the_asked_for_video(tmp_path: Path) -> None:
    done = run_cli(
        "generate",
        "--route",
        "local:procedural",
        BOAT,
        "--duration",
        "4",
        "--ratio",
        "16:9",
        "--seed",
        "3",
        "--out",
        "boat.mp4",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    info = probe(tmp_path / "boat.mp4")
    assert info.codec == "h264"
    assert abs(info.duration_s - 4) < 0.1
    assert info.width * 9 == info.height * 16
    again = run_cli(
        "generate",
        "--route",
        "local:procedural",
        BOAT,
        "--duration",
        "4",
        "--seed",
        "3",
        "--out",
        "again.mp4",
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.mp4").read_bytes() == (tmp_path / "boat.mp4").read_bytes()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["", "--route", "local:procedural"], ["prompt", "non-empty"]),
        ([BOAT, "--route", "local:procedural", "--duration", "60"], ["duration_s=60", "1, 2, 3"]),
        ([BOAT, "--route", "nope:thing"], ["nope:thing", "local:procedural", "runway:gen4.5"]),
        ([BOAT, "--route", "local:procedural", "--ratio", "7:3"], ["aspect_ratio", "16:9"]),
    ],
)
def test_bad_input_is_one_line_naming_the_allowed_values(
    tmp_path: Path, args: list[str], expected: list[str]
) -> None:
    done = run_cli("generate", *args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert all(word in lines[0] for word in expected), lines[0]
    assert "Traceback" not in done.stderr


def test_missing_key_names_the_variable_and_emulate(tmp_path: Path) -> None:
    done = run_cli("generate", BOAT, "--route", "runway:gen4.5", cwd=tmp_path)
    assert done.returncode == 1
    assert "RUNWAYML_API_SECRET" in done.stderr and "--emulate" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("route", "duration"), list(zip(EMULATED_ROUTES, ["4", "4", "4", "5"], strict=True))
)
def test_generate_against_each_emulator_writes_a_playable_video(
    tmp_path: Path, route: str, duration: str
) -> None:
    done = run_cli(
        "generate",
        BOAT,
        "--route",
        route,
        "--emulate",
        "--duration",
        duration,
        "--resolution",
        "720p",
        "--out",
        "clip.mp4",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    info = probe(tmp_path / "clip.mp4")
    assert info.codec == "h264" and info.duration_s > 3


def test_routes_lists_every_provider_and_key_state(tmp_path: Path) -> None:
    done = run_cli("routes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    patterns = [
        "local:procedural",
        "runway:gen4.5",
        "replicate:google/veo-3*",
        "veo:veo-3.1-fast-generate-001",
        "pika:fal-ai/pika/v2.2/text-to-video",
    ]
    for pattern in patterns:
        assert pattern in done.stdout
    assert "missing (use --emulate)" in done.stdout


def test_demo_runs_every_route_offline_and_writes_the_report(tmp_path: Path) -> None:
    done = run_cli("demo", "--out", "runs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from abebeats_lab.runner import load_run

    (run_dir,) = (tmp_path / "runs").iterdir()
    comparison = load_run(run_dir)
    rows = comparison.to_rows()
    assert len(rows) == 15
    assert {row["state"] for row in rows} == {"succeeded"}
    assert {row["route"] for row in rows} == {"local:procedural", *EMULATED_ROUTES}
    assert all(row["emulated"] for row in rows if row["route"] != "local:procedural")
    for row in rows:
        for field in ("submit_s", "queue_s", "run_s", "download_s", "total_s"):
            assert row[field] is not None, (row["route"], field)
    assert (run_dir / "report.html").is_file()
    assert "report:" in done.stdout and "emulated" in done.stdout


def test_emulate_serves_on_the_asked_ports_and_prints_the_exports(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    done = run_cli("emulate", "--port", str(port), "--seconds", "0.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"export RUNWAYML_BASE_URL=http://127.0.0.1:{port + 2}" in done.stdout
    assert f"export FAL_QUEUE_BASE_URL=http://127.0.0.1:{port}" in done.stdout
