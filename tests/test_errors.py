"""The error tree drawn in `abebeats_lab.errors` is the real one."""

from __future__ import annotations

import importlib
import pkgutil

import abebeats_lab
from abebeats_lab import errors


def _every_error() -> set[type[errors.LabError]]:
    for module in pkgutil.walk_packages(abebeats_lab.__path__, "abebeats_lab."):
        if not module.name.endswith(".__main__"):  # importing it would run the command line
            importlib.import_module(module.name)
    found: set[type[errors.LabError]] = set()
    pending = [errors.LabError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


INDENT = 4
"""Each level of the drawn tree sits this many characters right of its parent."""
TOP = 1
"""Where ``── `` sits on a line of the first level (``├── ConfigError``)."""


def test_every_public_error_is_drawn_in_the_tree_under_its_parent() -> None:
    tree = errors.__doc__ or ""
    lines = {line.split("── ")[-1].split()[0]: line for line in tree.splitlines() if "── " in line}
    public = {cls for cls in _every_error() if not cls.__name__.startswith("_")}
    missing = sorted(
        cls.__name__ for cls in public if cls is not errors.LabError and cls.__name__ not in lines
    )
    assert missing == []
    for cls in public - {errors.LabError}:
        parent = next(base for base in cls.__bases__ if issubclass(base, errors.LabError))
        depth = lines[cls.__name__].index("── ")
        parent_depth = (
            lines[parent.__name__].index("── ") if parent is not errors.LabError else TOP - INDENT
        )
        assert depth == parent_depth + INDENT, (
            f"{cls.__name__} is not drawn under {parent.__name__}"
        )
