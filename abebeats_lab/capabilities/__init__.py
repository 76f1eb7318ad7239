"""What each route accepts and costs (step one of a split: the code moved to `table`)."""

from __future__ import annotations

from abebeats_lab.capabilities.table import *  # noqa: F403
from abebeats_lab.capabilities.table import HOUSE_DEFAULTS, UNKNOWN_PREFIX, nearest  # noqa: F401
