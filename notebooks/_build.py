"""Write notebooks 01–03 and 05 from the cell texts below, without outputs (``--check`` compares).

The notebooks are generated so they stay valid nbformat, have stable cell ids (clean diffs)
and carry in their metadata what a full run must produce; ``tests/test_notebooks.py`` reads
``metadata.abebeats.expects``: ``jobs`` (rows of the DataFrame shown), ``videos`` (at least
this many video elements) and ``report`` (an HTML report file is written).

    .venv/bin/python notebooks/_build.py          # rewrite the notebooks
    .venv/bin/python notebooks/_build.py --check  # exit 1 if a notebook differs
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

KEYS_CELL = """\
# ── Keys or emulators: the one cell to change ───────────────────────────────────────
# True:  every provider is its built-in emulator on 127.0.0.1: offline, no keys, no cost.
#        Every figure from an emulated route is labelled "emulated".
# False: the real providers, with keys from the environment or ./.env
#        (RUNWAYML_API_SECRET, REPLICATE_API_TOKEN, FAL_KEY, GOOGLE_CLOUD_PROJECT + ADC).
#        Real jobs cost real money: keep MAX_COST_USD as a guard. A route with no known
#        price (Replicate's, see `abebeats-lab routes`) makes any guard refuse the run:
#        drop that route, or set MAX_COST_USD = None once you have checked its price.
EMULATE = True
MAX_COST_USD = 5.0"""

Cell = tuple[str, str]


def md(text: str) -> Cell:
    """A markdown cell."""
    return ("md", text)


def code(text: str) -> Cell:
    """A code cell."""
    return ("code", text)


QUICKSTART = [
    md("""# 01 · Quickstart: one prompt, one route

Send one prompt to one route, wait for the video, and look at the figures. Runs offline by
default: the route is served by the built-in emulator of Runway's API on 127.0.0.1."""),
    code(KEYS_CELL),
    code("""from abebeats_lab import Settings, compare

ROUTE = "runway:gen4.5"
PROMPT = "a paper boat drifting on a calm lake at dawn"
settings = Settings(
    duration_s=2,          # short clips keep a first try quick (and cheap)
    aspect_ratio="16:9",
    resolution="720p",     # the only resolution gen4.5 takes
)"""),
    md("""`compare` is async: in a notebook just `await` it. It validates the prompt and settings
against the route's capabilities before anything is sent, then submits, waits and downloads.
A setting left out (`None`) takes each route's own default."""),
    code("""result = await compare(
    [PROMPT], [ROUTE], settings,
    run_dir="abebeats-runs/01-quickstart", emulate=EMULATE, max_cost_usd=MAX_COST_USD,
)
result"""),
    md("Every job is a row; every timing field says who measured it (`*_source`)."),
    code("""frame = result.to_pandas()
frame[["route", "state", "total_s", "queue_s", "run_s", "download_s", "polls",
       "cost_estimate_usd", "width", "height", "duration_s", "emulated"]]"""),
    md("The video itself, played from the run directory:"),
    code("""from IPython.display import Video

Video(str(result.run_dir / frame.loc[0, "output_path"]), embed=True, width=480)"""),
]

COMPARE = [
    md("""# 02 · Compare providers

The same prompts and settings sent to one route of every provider (plus the `local`
renderer), then the figures side by side: a DataFrame, a summary per route, charts and a
self-contained HTML report."""),
    code(KEYS_CELL),
    code("""from abebeats_lab import Settings, compare

PROMPTS = [
    "a red fox trotting through fresh snow, golden hour",
    "macro shot of rain drops on a green leaf",
]
ROUTES = [
    "runway:gen4.5",
    "veo:veo-3.1-fast-generate-001",
    "replicate:google/veo-3-fast",
    "pika:fal-ai/pika/v2.2/text-to-video",
    "local:procedural",
]
settings = Settings(duration_s=4, aspect_ratio="16:9", resolution="720p")"""),
    md("""The routes do not all take the same durations (Pika only 5 or 10 s). `adapt=True` lets
each route use its nearest allowed value and records the change in the `adjusted` column.
A dry run shows the plan and the cost estimate without sending anything:"""),
    code("""plan = await compare(
    PROMPTS, ROUTES, settings, adapt=True, emulate=EMULATE, dry_run=True
)
print(len(plan), "jobs;", plan.estimate.describe())"""),
    code("""result = await compare(
    PROMPTS, ROUTES, settings, adapt=True,
    run_dir="abebeats-runs/02-compare", emulate=EMULATE, max_cost_usd=MAX_COST_USD,
)
frame = result.to_pandas()
frame[["route", "prompt_index", "state", "total_s", "queue_s", "run_s", "download_s",
       "cost_estimate_usd", "duration_ok", "ratio_ok", "resolution_ok", "emulated"]]"""),
    code("result.summary()"),
    md("The videos side by side, one column per route:"),
    code("result"),
    md("""Where the time goes, and what a second of video costs (charts from
`abebeats_lab.views.plots`, static SVG, so they also work in the report offline):"""),
    code("""from IPython.display import SVG, display
from abebeats_lab.views import plots

display(SVG(plots.figure_svg(plots.timing_figure(frame))))
display(SVG(plots.figure_svg(plots.cost_figure(frame))))"""),
    md("""A single HTML file with everything above (settings, summary, charts, the video grid,
conformance, failures, versions). Same as `abebeats-lab report RUN_DIR`."""),
    code("""from abebeats_lab.views.report import write_report

report_path = write_report(result.run_dir)
print("Report written:", report_path)"""),
]

ITERATION = [
    md("""# 03 · Prompt iteration with the control panel

Type a prompt, tick routes, press **Generate**: each job shows its progress, then the videos
play side by side with their figures. Earlier prompts are in *History*: pick one, edit it,
generate again. The panel never blocks the notebook while jobs run."""),
    code(KEYS_CELL),
    code("""from abebeats_lab.widgets import ControlPanel

panel = ControlPanel(
    selected=["local:procedural", "runway:gen4.5"],
    emulate=EMULATE,
    runs_dir="abebeats-runs/03-panel",
    prompt="a lighthouse on a cliff, waves crashing, stormy sky",
)
panel"""),
    md("""Buttons can also be pressed from code, which is handy for a reproducible notebook:
`click()` schedules the run and returns at once; `await panel.wait()` waits for it."""),
    code("""panel.duration.value = 2
panel.generate_button.click()
await panel.wait()
panel.comparison.to_pandas()[["route", "state", "total_s", "queue_s", "run_s", "emulated"]]"""),
    code("""panel.export_button.click()
await panel.wait()
print("Report written:", panel.report_path)"""),
    md("""## Variants of a prompt across seeds

The same prompt with three seeds on the local renderer: same settings, different seeds,
so any difference comes from the seed alone."""),
    code("""import pandas as pd
from abebeats_lab import Settings, compare

PROMPT = "a lighthouse on a cliff, waves crashing, stormy sky"
SEEDS = [1, 2, 3]
base = Settings(duration_s=2, resolution="360p")
runs = [
    await compare([PROMPT], ["local:procedural"], base.replace(seed=seed),
                  run_dir=f"abebeats-runs/03-seeds/seed-{seed}", emulate=EMULATE)
    for seed in SEEDS
]
seeds = pd.concat([run.to_pandas() for run in runs], ignore_index=True)
seeds[["seed", "route", "state", "total_s", "sha256"]]"""),
    code("""from IPython.display import HTML

HTML("".join(run.to_html() for run in runs))"""),
]

BLIND_VOTE = [
    md("""# 05 · Which video is better? Blind votes and automatic metrics

Two outputs of the same prompt from different routes play side by side, their routes hidden
and their sides random. You answer **left**, **right**, **tie** or **both bad** (buttons, or
the keys `1` `2` `3` `4` after clicking into the arena; `s` skips, `u` undoes). Every vote is
a row in the run folder's `votes.sqlite`; a Bradley–Terry leaderboard with 95 % intervals is
refitted after each one. Automatic metrics (motion, flicker, sharpness, exposure, ...) come
from the decoded frames, and the report shows how well each agrees with your votes.

Offline, each emulated provider renders its own look (colours and layout), so there is a
visible difference to vote on; it says nothing about the real providers."""),
    code(KEYS_CELL),
    code("""from abebeats_lab import Settings, compare

PROMPTS = [
    "a paper boat drifting on a calm lake at dawn",
    "a red kite over desert dunes at golden hour",
]
ROUTES = [
    "local:procedural",
    "runway:gen4.5",
    "replicate:google/veo-3-fast",
    "veo:veo-3.1-fast-generate-001",
]
settings = Settings(duration_s=4, aspect_ratio="16:9", resolution="720p")
result = await compare(
    PROMPTS, ROUTES, settings, adapt=True,
    run_dir="abebeats-runs/05-blind-vote", emulate=EMULATE, max_cost_usd=MAX_COST_USD,
)
print(result.summary_text())"""),
    md("""## Automatic metrics

`score` measures every video of the run (a process pool; pass `executor=` to use your own,
e.g. a Dask cluster's) and keeps the figures in the run folder's `quality.sqlite`. From then
on they are columns of `to_pandas()` and `summary()`. Same as `abebeats-lab score RUN_DIR`."""),
    code("""from abebeats_lab.quality.metrics import score

score(result.run_dir, clip=False)  # clip=True adds the CLIP score: a one-time model download
frame = result.to_pandas()
frame[["route", "prompt_index", "state", "motion", "flicker", "sharpness", "mean_luma",
       "emulated"]]"""),
    md("""## The arena

Vote here. The leaderboard sits in a closed panel at the bottom: opening it while voting can
tell you which route just won. Tick *reveal* to see the routes after each vote."""),
    code("""from abebeats_lab.widgets import Arena

arena = Arena(result.run_dir, seed=7)
arena"""),
    md("""A scripted rater, so this notebook runs unattended (and its CI run proves the buttons
work): it prefers the local render, likes Runway's over the other two, and calls the rest a
tie. It presses the arena's own buttons, exactly as a click would. Skip this cell to vote
yourself."""),
    code("""TASTE = {"local:procedural": 3, "runway:gen4.5": 2}

for _ in range(24):
    left, right = arena.pair.left, arena.pair.right
    gap = TASTE.get(left, 0) - TASTE.get(right, 0)
    arena.buttons["left" if gap > 0 else "right" if gap < 0 else "tie"].click()

board = arena.leaderboard()
assert board.loc[0, "route"] == "local:procedural", board
assert board["votes"].sum() == 2 * 24
board[["route", "rating", "low", "high", "votes", "wins", "ties", "losses"]]"""),
    md("""`low` and `high` are the 95 % interval (wide with few votes): routes whose intervals
overlap are not told apart by these votes. The votes are plain rows (CSV, pandas), and the
ratings join the job rows and the summary:"""),
    code("""from abebeats_lab.quality.votes import VoteStore

with VoteStore(result.run_dir) as store:
    votes = store.to_pandas()
print(len(votes), "votes stored in", store.path)
result.summary()[["median_motion", "median_flicker", "median_sharpness", "rating",
                  "rating_low", "rating_high", "rating_votes"]]"""),
    md("""Ratings per group: tag the prompts (or name a setting, such as `"resolution"`) and each
group gets its own leaderboard, fitted on its own votes with its own intervals. With 24 votes
split in two, the intervals are wide: that is the honest answer."""),
    code("""from abebeats_lab.quality.ratings import leaderboard
from abebeats_lab.quality.votes import grouping

TAGS = {PROMPTS[0]: "water", PROMPTS[1]: "desert"}
with VoteStore(result.run_dir) as store:
    by_tag = leaderboard(store.all(), by=grouping(TAGS, result.run_dir))
assert set(by_tag["group"]) <= {"water", "desert"}, by_tag
by_tag[["group", "route", "rating", "low", "high", "votes"]]"""),
    md("""The report's *Quality* section: metric medians with their spread per route, the
leaderboard, and how well each metric agrees with the votes (Kendall's tau with its
interval), so you learn which metric to trust for your prompts."""),
    code("""from abebeats_lab.views.report import write_report

report_path = write_report(result.run_dir)
print("Report written:", report_path)"""),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": (QUICKSTART, {"jobs": 1, "videos": 1, "report": False}),
    "02_compare_providers.ipynb": (COMPARE, {"jobs": 10, "videos": 10, "report": True}),
    "03_prompt_iteration.ipynb": (ITERATION, {"jobs": 2, "videos": 3, "report": True}),
    "05_blind_vote.ipynb": (BLIND_VOTE, {"jobs": 8, "videos": 2, "report": True}),
}


def build(cells: list[Cell], expects: dict[str, object], stem: str) -> nbformat.NotebookNode:
    """A notebook with stable cell ids and the expectations in its metadata."""
    nb = nbformat.v4.new_notebook()
    for index, (kind, source) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        cell = make(source)
        cell.id = f"{stem}-{index:02d}"
        nb.cells.append(cell)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["abebeats"] = {"expects": expects}
    nbformat.validate(nb)
    return nb


def main(argv: list[str]) -> int:
    """Write (or with ``--check`` compare) every notebook; 1 when a check finds a difference."""
    check = "--check" in argv
    stale = []
    for name, (cells, expects) in NOTEBOOKS.items():
        text = nbformat.writes(build(cells, expects, name.split("_")[0]))
        path = HERE / name
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    for name in stale:
        print(f"{name} differs from notebooks/_build.py; run it to rebuild", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
