"""DESIGN.md's "Layers", checked on the source: every import of the package is read with `ast`.

What counts as an import of ``abebeats_lab.x``:

- ``import``/``from`` statements anywhere: at module level, inside functions (deferred imports
  are still arrows), and under ``if TYPE_CHECKING:`` (a type named in a signature is still
  knowledge of that layer). All of them must follow `ALLOWED`.
- a string that is exactly one of our modules, optionally with ``:attribute``
  (``"abebeats_lab.providers.runway:RunwayProvider"``): the registries and the lazy public API
  import by name, and such an arrow follows `ALLOWED` like any other. Logger names do not count.
- For cycles, only imports that run or are resolved when the module is loaded count: module
  level, ``TYPE_CHECKING`` included (mypy and a reader follow them), function-level and by-name
  ones not (they are how a module reaches upward on purpose, once, when used).

The table encodes the file layout; whoever moves a file updates its row here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "abebeats_lab"
SOURCE = Path(__file__).resolve().parents[1] / PACKAGE

LAYER_OF = {
    # the bottom: plain types, errors, configuration (and the version string of the root)
    "_types": "base",
    "_text": "base",
    "secret": "base",
    "errors": "base",
    "config": "base",
    "__version__": "base",
    "fmt": "base",
    "capabilities": "capabilities",
    # the stock httpx client per event loop and the one retry policy
    "http": "http",
    # video files: procedural frames (the local provider and the emulators both render),
    # downloads, probe + conformance
    "media": "media",
    "media.render": "render",
    "media._font": "render",
    "providers": "providers",
    "waiting": "waiting",
    "store": "store",
    # per-user run times for the wait schedule (DESIGN.md: history lives per user, not per run)
    "history": "history",
    "views": "views",
    # planning, limits, costs, one job's life, timing, opening clients, the run lock
    "run": "run",
    "run.costs": "costs",
    "quality": "quality",
    "musicvideo": "musicvideo",
    "widgets": "widgets",
    "cli": "cli",
    "emulator": "emulator",
    "": "api",  # abebeats_lab/__init__.py
    "_sync": "api",
}
"""Module (its longest dotted prefix listed here) -> layer."""

ALLOWED = {
    "base": {"base"},
    "capabilities": {"base", "capabilities"},
    "costs": {"base", "capabilities"},
    "http": {"base", "http"},
    "render": {"base", "render"},
    "media": {"base", "http", "render", "media"},
    "providers": {"base", "capabilities", "http", "render", "providers"},
    "waiting": {"base", "http", "providers", "waiting"},
    "store": {"base"},
    "history": {"base", "waiting"},
    "views": {"base", "capabilities", "costs", "store", "views", "quality"},
    # `connect` starts the emulators in-process for --emulate; they never import back.
    "run": {
        "base", "capabilities", "costs", "http", "media", "providers", "waiting", "store",
        "history", "views", "run", "emulator", "quality",
    },
    "quality": {"base", "media", "store", "quality"},
    "musicvideo": {
        "base", "capabilities", "render", "media", "waiting", "store", "run", "musicvideo",
    },
    "widgets": {"base", "capabilities", "views", "run", "widgets", "api", "quality"},
    "cli": {
        "base", "capabilities", "views", "run", "musicvideo", "emulator", "history", "api",
        "quality", "cli",
    },
    # the emulator checks the clients rather than copying them: never providers/ or run/
    "emulator": {"base", "render", "media", "emulator"},
    "api": {"base", "waiting", "run", "musicvideo", "views", "widgets", "api"},
}  # fmt: skip
"""Layer -> the layers it may import (DESIGN.md's arrows, in today's module names)."""

EXCEPTIONS = {
    ("views", "run"): "issue 14: the report loads rows through run.load_run, not the store",
}
"""Known arrows against the layers, each named with the issue that removes it."""

HTTP_STACKS = (
    "httpx", "httpx_sse", "httpcore", "httpx2", "httpcore2", "requests", "urllib3", "aiohttp",
    "replicate", "fal_client", "runwayml", "google",
)  # fmt: skip
"""HTTP clients and provider SDKs: only the HTTP stack, the providers and downloads use them."""
NETWORK_LAYERS = {"http", "providers", "media"}

BY_NAME = re.compile(rf"(?P<module>{PACKAGE}(?:\.\w+)+)(?::\w+)?")


@dataclass(frozen=True)
class Arrow:
    """One import: from module ``source`` to ``target`` (dotted names), and how it is made."""

    source: str
    target: str
    line: int
    at_load: bool
    """Executed or resolved when ``source`` is loaded (module level or TYPE_CHECKING)."""

    def __str__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.Module) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement with whether it runs at load (not inside a function body)."""

    def walk(node: ast.AST, at_load: bool) -> Iterator[tuple[ast.stmt, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, at_load
            inside_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from walk(child, at_load and not inside_function)

    return walk(tree, True)


def _targets(source: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Our modules an import statement reaches; a name taken from a package is a module if one."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        return
    if node.level:  # relative: level 1 is this module's package, each further level its parent
        package = (source if _is_package(source) else source.rpartition(".")[0]).split(".")
        base = ".".join(package[: len(package) - node.level + 1])
        module = f"{base}.{node.module}" if node.module else base
    else:
        module = node.module or ""
    if module.split(".")[0] != PACKAGE:
        return
    for alias in node.names:
        submodule = f"{module}.{alias.name}"
        if submodule in MODULES:
            yield submodule
        elif module == PACKAGE and alias.name == "__version__":
            yield f"{PACKAGE}.__version__"
        else:
            yield module


def _arrows(name: str) -> Iterator[Arrow]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    type_checking = {
        id(statement)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for statement in ast.walk(node)
    }
    for node, at_load in _statements(tree):
        assert isinstance(node, ast.Import | ast.ImportFrom)
        for target in _targets(name, node):
            yield Arrow(name, target, node.lineno, at_load or id(node) in type_checking)
    loggers = {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("getLogger")
        for arg in node.args
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in loggers
        ):
            match = BY_NAME.fullmatch(node.value)
            if match and match["module"] in MODULES and match["module"] != name:
                yield Arrow(name, match["module"], node.lineno, at_load=False)


ARROWS = [arrow for name in MODULES for arrow in _arrows(name)]


def _short(module: str) -> str:
    """The key of `LAYER_OF` for a module: its longest listed prefix ("" for the package root)."""
    parts = module.removeprefix(PACKAGE).lstrip(".").split(".")
    for end in range(len(parts), 0, -1):
        if (key := ".".join(parts[:end])) in LAYER_OF:
            return key
    return parts[0]


def _layer(module: str) -> str:
    return LAYER_OF[_short(module)]


def test_every_module_has_a_layer() -> None:
    unknown = sorted({_short(m) for m in MODULES} - set(LAYER_OF))
    assert not unknown, f"add these modules to LAYER_OF (and to DESIGN.md): {unknown}"
    assert set(ALLOWED) == set(LAYER_OF.values())


def test_no_arrow_against_the_layers() -> None:
    wrong = [
        f"{arrow} ({_layer(arrow.source)} may not import {_layer(arrow.target)})"
        for arrow in ARROWS
        if _layer(arrow.target) not in ALLOWED[_layer(arrow.source)]
        and (_short(arrow.source), _short(arrow.target)) not in EXCEPTIONS
    ]
    assert not wrong, "\n".join(wrong)


def test_every_named_exception_is_still_needed() -> None:
    """An exception whose arrow is gone must leave the table, so the list only shrinks."""
    present = {(_short(a.source), _short(a.target)) for a in ARROWS}
    assert set(EXCEPTIONS) <= present, set(EXCEPTIONS) - present


def _third_party(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.lineno, node.module


def test_only_the_http_stack_providers_and_downloads_use_an_http_client() -> None:
    found = [
        f"{name}:{line} imports {imported} ({_layer(name)})"
        for name, path in MODULES.items()
        if _layer(name) not in NETWORK_LAYERS
        for line, imported in _third_party(ast.parse(path.read_text(encoding="utf-8")))
        if imported.split(".")[0] in HTTP_STACKS
    ]
    assert not found, "\n".join(found)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a closed path), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None


def _parent_packages(module: str) -> set[str]:
    """Importing ``a.b.c`` first imports ``a`` and ``a.b``: those are not arrows of the design."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_cycle_at_load() -> None:
    graph: dict[str, set[str]] = {}
    for arrow in ARROWS:
        if arrow.at_load and arrow.target in MODULES:
            if arrow.target in _parent_packages(arrow.source):
                continue  # a submodule may use its own package's names
            graph.setdefault(arrow.source, set()).add(arrow.target)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_sees_a_cycle() -> None:
    """The checker itself: a two-module knot like issue 14's _jobs <-> runner is found."""
    graph = {"a._jobs": {"a.runner", "a.store"}, "a.runner": {"a._jobs"}, "a.store": set()}
    assert _cycle(graph) in (
        ["a._jobs", "a.runner", "a._jobs"],
        ["a.runner", "a._jobs", "a.runner"],
    )


PROVIDER_AWARE = {"providers", "capabilities", "emulator", "base"}
"""Layers that may name a provider: the clients, their data, the emulators, and `config`'s
table of environment variables. Everywhere else a difference between routes is a capability
field (``runs_locally``, ``cancel``, ...), never a test on a provider's name."""


def test_no_provider_name_outside_the_provider_layers() -> None:
    from abebeats_lab.providers import available_providers

    names = set(available_providers())
    found = [
        f"{name}:{node.lineno} names {node.value!r}"
        for name, path in MODULES.items()
        if _layer(name) not in PROVIDER_AWARE
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert not found, "\n".join(found)
