"""The automatic quality metrics as a user calls them: `score(run_dir)`, `measure(path)`, `METRICS`.

Weight-free figures from decoded frames (PyAV and numpy) plus the CLIP score, which needs the
``[metrics]`` extra and CLIP weights. This module only gathers the names the README, the
notebooks and the CLI point users to; the code lives in modules with one job each:

- `quality.catalogue`: what each metric is (`METRICS`: definition, reference, direction,
  unit, measured CPU cost per second of 720p video);
- `quality.figures`: the picture and motion figures of sampled frames;
- `quality.measure`: one video's figures from one decode pass (`measure`, `profile`);
- `quality.scores`: a run's figures, measured through an Executor and kept in the run
  folder's ``quality.sqlite`` (`score`, `score_async`, `load_scores`).
"""

from __future__ import annotations

from abebeats_lab.quality.catalogue import METRICS, Metric, Value
from abebeats_lab.quality.measure import measure
from abebeats_lab.quality.scores import QUALITY_DB, load_scores, score, score_async

__all__ = [
    "METRICS",
    "QUALITY_DB",
    "Metric",
    "Value",
    "load_scores",
    "measure",
    "score",
    "score_async",
]
