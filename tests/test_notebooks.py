"""Every notebook in notebooks/ runs top to bottom, offline, and shows what it promises.

A notebook may declare in ``metadata.abebeats.expects`` what a full run produces: ``jobs``
(a DataFrame with one row per job), ``videos`` (at least this many video elements, HTML or
widget) and ``report`` (a ``Report written: PATH`` line naming an HTML report on disk).
Without a declaration a notebook must still run cleanly and show at least one video.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 180
DEFAULT_EXPECTS: dict[str, Any] = {"videos": 1}
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
REPORT_LINE = re.compile(r"Report written: (\S+)")


class _Tables(HTMLParser):
    """Row counts of the body of every pandas DataFrame table in some HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[int] = []
        self._in_frame = self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and "dataframe" in (dict(attrs).get("class") or ""):
            self._in_frame = True
            self.rows.append(0)
        elif tag == "tbody" and self._in_frame:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows[-1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._in_frame = False


def _outputs(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def _html(nb: nbformat.NotebookNode) -> str:
    return "\n".join(str(o.get("data", {}).get("text/html", "")) for o in _outputs(nb))


def _text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(
        str(o.get("text", "")) for o in _outputs(nb) if o.get("output_type") == "stream"
    )


def _video_count(nb: nbformat.NotebookNode) -> int:
    states = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    widgets = sum(1 for s in states.values() if s.get("model_name") == "VideoModel")
    return _html(nb).count("<video") + widgets


def _execute(path: Path, workdir: Path) -> nbformat.NotebookNode:
    copy = workdir / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return nb


@pytest.fixture
def jupyter_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Jupyter's data and runtime folders in a temporary place, not in $HOME."""
    for name in ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    work = tmp_path / "work"
    work.mkdir()
    return work


def test_notebooks_match_their_generator_and_carry_no_outputs() -> None:
    built = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "_build.py"), "--check"], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_runs_offline_and_shows_its_artefacts(path: Path, jupyter_dirs: Path) -> None:
    nb = _execute(path, jupyter_dirs)
    expects = nb.metadata.get("abebeats", {}).get("expects", DEFAULT_EXPECTS)
    html = _html(nb)
    if "jobs" in expects:
        tables = _Tables()
        tables.feed(html)
        assert expects["jobs"] in tables.rows, (
            f"no DataFrame with {expects['jobs']} rows: {tables.rows}"
        )
    assert _video_count(nb) >= expects.get("videos", 1)
    if expects.get("report"):
        match = REPORT_LINE.search(_text(nb))
        assert match, "no 'Report written: PATH' line"
        report = Path(match.group(1))
        assert report.is_file() and report.is_relative_to(jupyter_dirs)
        assert "<video" in report.read_text(encoding="utf-8")
