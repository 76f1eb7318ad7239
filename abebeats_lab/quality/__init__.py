"""How good is each video: weight-free metrics, blind pairwise votes, Bradley–Terry ratings.

Submodules, each imported on its own so nothing heavy loads with the package:

- `abebeats_lab.quality.metrics`: automatic per-video figures from decoded frames
  (`measure`, `score`, the `METRICS` registry), gathered from `catalogue` (what each
  metric is), `figures` (what sampled frames give), `measure` (one video's decode pass) and
  `scores` (a run's figures in ``quality.sqlite``).
- `abebeats_lab.quality.clip` and `abebeats_lab.quality.auto`: the CLIP score, and scoring
  each output while its run goes on.
- `abebeats_lab.quality.votes`: the `Vote` record and `VoteStore` (``votes.sqlite``).
- `abebeats_lab.quality.ratings`: Bradley–Terry fit with 95 % intervals, the pair
  chooser and Kendall's tau between a metric and the ratings.
"""

from __future__ import annotations
