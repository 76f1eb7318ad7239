"""The command line as a user meets it: real subprocesses, real files, one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _runner_support import run_cli

from abebeats_lab.cli.run_commands import DEMO_PROMPTS, DEMO_ROUTES, NO_ROUTES
from abebeats_lab.emulator import EMULATED_PROVIDERS, Emulators, Scenario
from abebeats_lab.media.probe import probe
from abebeats_lab.run.api import load_run
from abebeats_lab.run.plan import RUNS_DIR

BOAT = "a paper boat on a neon river"
EMULATED_ROUTES = [
    "runway:gen4.5",
    "replicate:google/veo-3-fast",
    "veo:veo-3.1-fast-generate-001",
    "pika:fal-ai/pika/v2.2/text-to-video",
]


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
        ([BOAT, "--route", "nope:thing"], ["nope:thing", "local:<model>", "abebeats-lab routes"]),
        ([BOAT, "--route", "runway:thing"], ["runway:thing", "runway:gen4.5"]),
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
    assert done.returncode == 2  # nothing was submitted
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
    from abebeats_lab.run.api import load_run

    (run_dir,) = (tmp_path / "runs").iterdir()
    comparison = load_run(run_dir)
    rows = comparison.to_rows()
    assert len(rows) == len(DEMO_PROMPTS) * len(DEMO_ROUTES)
    assert {row["state"] for row in rows} == {"succeeded"}
    assert (
        {row["route"] for row in rows} == set(DEMO_ROUTES) >= {"local:procedural", *EMULATED_ROUTES}
    )
    assert all(row["emulated"] for row in rows if row["route"] != "local:procedural")
    for row in rows:
        for field in ("submit_s", "queue_s", "run_s", "download_s", "total_s"):
            assert row[field] is not None, (row["route"], field)
    assert (run_dir / "report.html").is_file()
    assert "report:" in done.stdout and "emulated" in done.stdout
    # The folder is named after the run inside it, and `runs` lists it from the parent folder.
    assert run_dir.name == comparison.run_id
    assert f"run directory: {Path('runs') / run_dir.name}" in done.stdout
    listed = run_cli("runs", "runs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.strip().splitlines()[:2]
    assert header.split()[:2] == ["folder", "run"]
    assert row.split()[:2] == [str(Path("runs") / run_dir.name), comparison.run_id]


def test_emulate_serves_on_the_asked_ports_and_prints_the_exports(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    done = run_cli("emulate", "--port", str(port), "--seconds", "0.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # Providers take consecutive ports in the order printed (sorted by name).
    listed = [line.split()[0] for line in done.stdout.splitlines()[: len(EMULATED_PROVIDERS)]]
    assert listed == sorted(EMULATED_PROVIDERS)
    at = {name: port + offset for offset, name in enumerate(listed)}
    assert f"export RUNWAYML_BASE_URL=http://127.0.0.1:{at['runway']}" in done.stdout
    assert f"export FAL_QUEUE_BASE_URL=http://127.0.0.1:{at['pika']}" in done.stdout


# -- user mistakes: one line, exit 2, nothing submitted -------------------------------------

LOCAL_JOB = [BOAT, "--route", "local:procedural", "--duration", "1", "--resolution", "240p"]


@pytest.fixture
def made_run(tmp_path: Path) -> Path:
    """A finished one-job run in tmp_path/run (a local render: free and quick)."""
    done = run_cli("generate", *LOCAL_JOB, "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path / "run"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", *LOCAL_JOB, "--out", "a-dir"], "is a directory"),
        (["generate", *LOCAL_JOB, "--run-dir", "a-file"], "is a file"),
        (["compare", *LOCAL_JOB, "--run-dir", "a-file/run"], "is a file"),
        (
            ["compare", BOAT, "--route", EMULATED_ROUTES[0], "--emulate", "--run-dir", "a-file"],
            "is a file",
        ),
        (["demo", "--out", "a-file"], "is a file"),
        (["resume", "a-file"], "not a run directory"),
        (["resume", "a-dir"], "not a run directory"),
        (["report", "nowhere"], "no such directory"),
        (["music-video", BOAT, "--audio", "missing.wav"], "no such file"),
        (["music-video", BOAT, "--audio", "a-dir"], "is a directory"),
        (["music-video", BOAT, "--audio", "a-file", "--out", "a-dir"], "is a directory"),
        (["music-video", "  ", "--audio", "a-file"], "non-empty prompt"),
    ],
)
def test_a_path_mistake_is_one_line_before_anything_is_submitted(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_bytes(b"not audio, not a folder")
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert expected in line and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-dir", "a-file"]  # no run store
    assert list((tmp_path / "a-dir").iterdir()) == []


def test_report_into_a_folder_is_refused_and_leaves_nothing_behind(made_run: Path) -> None:
    from abebeats_lab.views.report import write_report

    before = sorted(made_run.parent.rglob("*"))
    done = run_cli("report", "run", "--out", "run/outputs", cwd=made_run.parent)
    assert done.returncode == 2 and "is a directory" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    with pytest.raises(IsADirectoryError):  # the Python API: no half report left either
        write_report(made_run, out=made_run / "outputs")
    assert sorted(made_run.parent.rglob("*")) == before


def test_an_os_error_on_a_path_is_one_line(made_run: Path) -> None:
    # /proc passes the checks a user's folder gets, yet refuses the file itself.
    done = run_cli("report", "run", "--out", "/proc/abebeats-report.html", cwd=made_run.parent)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("abebeats-lab: ") and "/proc/" in line
    assert "Traceback" not in done.stderr


def test_music_video_with_an_empty_prompt_is_refused_by_the_python_api(tmp_path: Path) -> None:
    from abebeats_lab.errors import ValidationError
    from abebeats_lab.musicvideo.pipeline import make_music_video

    with pytest.raises(ValidationError, match="non-empty prompt"):
        asyncio.run(make_music_video(" \t", tmp_path / "never-read.wav", run_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_compare_with_no_route_and_no_model_is_one_usage_line(tmp_path: Path) -> None:
    done = run_cli("compare", "a kite", "--emulate", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line == f"abebeats-lab: {NO_ROUTES}"
    assert "--route" in line and "--model" in line and "abebeats-lab routes" in line
    assert list(tmp_path.iterdir()) == []  # no run folder, no store


LOCAL_SMALL = ["--route", "local:procedural", "--duration", "1", "--resolution", "240p"]


def test_the_run_folder_a_command_picks_is_named_after_the_run_inside(tmp_path: Path) -> None:
    compared = run_cli("compare", BOAT, *LOCAL_SMALL, cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    (printed,) = re.findall(r"^run directory: (.+)$", compared.stdout, flags=re.MULTILINE)
    run_dir = tmp_path / printed
    assert run_dir.name == load_run(run_dir).run_id
    listed = run_cli("runs", printed, cwd=tmp_path)
    assert listed.stdout.strip().splitlines()[1].split()[0] == run_dir.name

    generated = run_cli("generate", BOAT, *LOCAL_SMALL, cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    (folder,) = {p for p in (tmp_path / RUNS_DIR).iterdir() if p != run_dir}
    assert (tmp_path / generated.stdout.strip()).is_relative_to(folder)  # its video is there
    assert folder.name == load_run(folder).run_id
    # stdout is the video's path alone; the run folder is named on stderr
    assert f"run directory: {Path(RUNS_DIR) / folder.name}" in generated.stderr.splitlines()

    parent = run_cli("runs", RUNS_DIR, cwd=tmp_path)  # a folder of run folders
    assert parent.returncode == 0, parent.stderr
    listed_ids = {line.split()[1] for line in parent.stdout.splitlines()[1:] if line.strip()}
    assert {run_dir.name, folder.name} <= listed_ids
    empty = run_cli("runs", ".", cwd=tmp_path / RUNS_DIR / folder.name / "outputs")
    assert empty.returncode == 2 and "no run in it" in empty.stderr


def test_a_fallback_says_in_one_line_which_route_failed_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = Scenario.fast(fail=True, failure_message="the model is overloaded")
    args = ["generate", BOAT, "--route", "runway:gen4.5", *LOCAL_SMALL, "--adapt"]
    with Emulators(["runway"], failing) as emus:
        for name, value in emus.env().items():
            monkeypatch.setenv(name, value)
        done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stderr.splitlines() if "fell back" in x]
    assert line.startswith("abebeats-lab: fell back after runway:gen4.5: ")
    assert "the model is overloaded" in line and "JobRow" not in done.stderr
    (printed,) = re.findall(r"^run directory: (.+)$", done.stderr, flags=re.MULTILINE)
    rows = {row.route: row for row in load_run(tmp_path / printed).rows}
    failed = rows["runway:gen4.5"]
    assert (failed.state, rows["local:procedural"].state) == ("failed", "succeeded")
    assert failed.error and line.endswith(failed.error)


# -- help and progress a person can read ---------------------------------------------------

SUBCOMMANDS = [
    "demo",
    "generate",
    "compare",
    "resume",
    "report",
    "score",
    "runs",
    "routes",
    "emulate",
    "music-video",
]


def _entries(help_text: str) -> dict[str, str]:
    """Argument (as the help shows it) -> its help text, from every argument section."""
    entries: dict[str, str] = {}
    current = None
    in_section = False
    for line in help_text.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            in_section = line in ("options:", "positional arguments:")
            current = None
            continue
        if not in_section or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 2:  # a new argument: its help follows two or more spaces, or below
            name, *text = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            current = name
            entries[current] = " ".join(text)
        elif current is not None:
            entries[current] = f"{entries[current]} {line.strip()}".strip()
    return entries


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_of_every_command_explains_itself(tmp_path: Path, command: str) -> None:
    done = run_cli(command, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    entries = _entries(done.stdout)
    assert "-h, --help" in entries
    assert [name for name, text in entries.items() if not text] == []
    assert "``" not in done.stdout and "exit codes:" in done.stdout
    assert "130" in done.stdout


def test_help_shows_defaults_and_a_plain_description(tmp_path: Path) -> None:
    top = run_cli("--help", cwd=tmp_path)
    assert "``" not in top.stdout and "`" not in top.stdout.split("exit codes:")[0]
    compare_help = _entries(run_cli("compare", "--help", cwd=tmp_path).stdout)
    assert "(default: 1)" in compare_help["--repeats N"]
    demo_help = _entries(run_cli("demo", "--help", cwd=tmp_path).stdout)
    assert "(default: abebeats-runs)" in demo_help["--out DIR"]


def test_piped_progress_is_one_line_per_new_state_naming_route_and_prompt(tmp_path: Path) -> None:
    routes = [EMULATED_ROUTES[0], "local:procedural"]
    long_prompt = "a paper boat drifting down a neon river at night, slow dolly"
    args = ["compare", long_prompt, "--emulate", "--adapt", "--run-dir", "run"]
    done = run_cli(*args, *(w for r in routes for w in ("--route", r)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    states = {line.split()[-1] for line in lines}
    assert len(lines) <= len(routes) * len(states), lines
    assert states >= {"submitting", "downloading", "succeeded"}
    for line in lines:
        assert any(f"  {route}  " in line for route in routes), line
        assert "'a paper boat drifting down a" in line and long_prompt not in line
        assert "#1" in line
    for route in routes:  # the final state once per job, after its download
        mine = [line.split()[-1] for line in lines if f"  {route}  " in line]
        assert mine.count("succeeded") == 1 and mine[-2:] == ["downloading", "succeeded"]


def test_a_terminal_gets_a_live_bar_per_route(tmp_path: Path) -> None:
    import os
    import pty

    main, terminal = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "abebeats_lab.cli", "compare", "a kite", "a boat", *LOCAL_JOB[1:]],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the child closes its end
        while chunk := os.read(main, 65536):
            chunks.append(chunk)
    os.close(main)
    out, _ = child.communicate(timeout=180)
    assert child.returncode == 0 and b"local:procedural" in out
    shown = b"".join(chunks).decode(errors="replace")
    assert "━" in shown and "2/2" in shown and "2 succeeded" in shown
    assert "  'a kite'  #1" not in shown  # the pipe's lines are for pipes


EMPTY_LATER_RUN = "20991231T235959Z-empty0"
"""Sorts after any real run id: what a compare that failed before planning leaves behind."""
SCORE_TIMEOUT_S = 300.0


def test_score_and_report_pass_over_a_later_run_without_jobs(made_run: Path) -> None:
    from abebeats_lab.quality.metrics import QUALITY_DB
    from abebeats_lab.store import RunStore

    good = load_run(made_run).run_id
    with RunStore(made_run) as store:
        store.add_run(EMPTY_LATER_RUN, "2099-12-31T23:59:59+00:00", "compare", {"prompts": []})
    scored = run_cli(
        "score", str(made_run), "--no-clip", "--workers", "1", timeout_s=SCORE_TIMEOUT_S
    )
    assert scored.returncode == 0, scored.stderr
    assert any(line.startswith("local:procedural") for line in scored.stdout.splitlines())
    with sqlite3.connect(made_run / QUALITY_DB) as db:
        runs = {run for (run,) in db.execute("SELECT DISTINCT run_id FROM metrics")}
    assert runs == {good}


def test_report_scores_without_clip_and_links_videos_over_its_embed_limit(made_run: Path) -> None:
    from abebeats_lab.quality.metrics import QUALITY_DB

    out = made_run.parent / "elsewhere" / "r.html"
    done = run_cli(
        "report", str(made_run), "--out", str(out), "--score", "--no-clip",
        "--embed-max-mb", "0", timeout_s=SCORE_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(made_run / QUALITY_DB) as db:
        names = {name for (name,) in db.execute("SELECT DISTINCT name FROM metrics")}
    assert "sharpness" in names and "clip_score" not in names
    sources = re.findall(r'<video[^>]*\ssrc="([^"]+)"', out.read_text(encoding="utf-8"))
    assert sources and not any(s.startswith("data:") for s in sources)
    assert all((out.parent / s).resolve().is_file() for s in sources)
    embedded = run_cli("report", str(made_run), "--out", str(out))  # default limit: 4 MiB
    assert embedded.returncode == 0, embedded.stderr
    assert re.search(r'<video[^>]*\ssrc="data:', out.read_text(encoding="utf-8"))
    refused = run_cli("report", str(made_run), "--embed-max-mb", "-1")
    assert refused.returncode == 2 and "--embed-max-mb" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
