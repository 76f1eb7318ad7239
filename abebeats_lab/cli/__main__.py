"""``python -m abebeats_lab.cli``: the same as the ``abebeats-lab`` command."""

from __future__ import annotations

import sys

from abebeats_lab.cli import main

sys.exit(main())
