"""The quality metrics' public face (step one of a split: the code moved to `scores`)."""

from __future__ import annotations

from abebeats_lab.quality.scores import *  # noqa: F403
from abebeats_lab.quality.scores import _measure_job, _MetricsStore, prepare_clip  # noqa: F401
