"""The package's layout: no import circles, the parts depend downwards only.

Every module under ``src/traywire`` is parsed with `ast` (nothing is
imported). An edge A → B means that executing A imports B:

* an ``import`` at module level (also inside a module-level ``if``/``try``);
  ``from . import x`` where ``x`` is a module is an edge to ``x``, and
  ``from .pkg import name`` one to ``pkg`` (and to ``pkg.name`` when that is a
  module);
* importing ``a.b.c`` also runs the packages ``a`` and ``a.b``: an edge to
  each package whose ``__init__`` the importer is not itself inside.

Imports inside ``if TYPE_CHECKING:`` (never run) and inside functions (run
when called, once everything is loaded) are *lazy*: they cannot break
loading, so they are not edges of the graph that must have no cycle. They
are listed here all the same (``-s`` shows them), and the rule for them is:

* a ``TYPE_CHECKING`` import may close a circle: it names a type and runs
  nothing;
* a function-level import may not close a circle, except the ones in
  `LAZY_CIRCLES`, each with the reason it is lazy (a module kept out of a
  light process, a pystray that must not load before a display is known). A
  lazy import that only hides a two-way dependency between two parts is a
  design fault, and this test fails on it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "traywire"

# Which part may not import which: (importer prefix, forbidden prefixes).
FORBIDDEN = (
    (
        "traywire.core",
        ("traywire.proxy", "traywire.observe", "traywire.desktop", "traywire.config"),
    ),
    ("traywire.proxy", ("traywire.desktop",)),
    ("traywire.observe", ("traywire.desktop",)),
)

# Function-level imports allowed to close a circle: (importer, imported) ->
# why the import is in a function. Keep this short; every entry is a
# dependency that runs both ways.
LAZY_CIRCLES: dict[tuple[str, str], str] = {}


class Import(NamedTuple):
    source: str  # the importing module
    target: str  # the imported traywire module
    line: int
    lazy: str  # "" (at module level), "function" or "type_checking"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


MODULES = _modules()
PACKAGES = {_module_name(p) for p in PKG.rglob("__init__.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(body: list[ast.stmt], lazy: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement in ``body``, with how lazily it runs."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    yield sub, lazy or "function"
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, lazy or "type_checking")
            yield from _walk(node.orelse, lazy)
        else:
            # classes, if/try/with/for at module level: their bodies run at import
            inner: list[ast.stmt] = []
            for field in ("body", "orelse", "finalbody"):
                inner += getattr(node, field, None) or []
            for handler in getattr(node, "handlers", None) or []:
                inner += handler.body
            yield from _walk(inner, lazy)


def _base(source: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        assert node.module is not None
        return node.module
    package = source if source in PACKAGES else source.rpartition(".")[0]
    parts = package.split(".")
    parent = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parent, *([node.module] if node.module else [])])


def _targets(source: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The traywire modules an import statement runs (packages on the way included)."""
    named: list[str] = []
    if isinstance(node, ast.Import):
        named = [a.name for a in node.names]
    else:
        base = _base(source, node)
        named = [base]
        named += [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    out: list[str] = []
    for name in named:
        if not name.startswith("traywire"):
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            mod = ".".join(parts[:i])
            if mod not in MODULES or mod == source:
                continue
            if mod in PACKAGES and (
                source.startswith(mod + ".") or not MODULES[mod].read_text().strip()
            ):
                # a package runs its __init__, unless the importer is inside it
                # (it is already running) or it is empty
                continue
            out.append(mod)
    return list(dict.fromkeys(out))


def _imports() -> list[Import]:
    out: list[Import] = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, lazy in _walk(tree.body, ""):
            for target in _targets(name, node):
                out.append(Import(name, target, node.lineno, lazy))
    return out


IMPORTS = _imports()


def _graph(kinds: tuple[str, ...]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        if imp.lazy in kinds:
            graph[imp.source].add(imp.target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _describe(comp: list[str], kinds: tuple[str, ...]) -> str:
    members = set(comp)
    edges = [
        f"  {i.source}:{i.line} → {i.target}" + (f" ({i.lazy})" if i.lazy else "")
        for i in IMPORTS
        if i.lazy in kinds and i.source in members and i.target in members
    ]
    return " ⇄ ".join(comp) + "\n" + "\n".join(edges)


def test_every_module_is_found() -> None:
    assert "traywire.core.routing" in MODULES
    assert "traywire.proxy.failover" in MODULES
    assert len(MODULES) > 60


def test_no_import_circles_at_module_level() -> None:
    cycles = _cycles(_graph(("",)))
    assert not cycles, "import circles:\n" + "\n".join(_describe(c, ("",)) for c in cycles)


def test_function_level_imports_close_no_circle_but_the_listed_ones() -> None:
    """A lazy import that closes a circle must be in `LAZY_CIRCLES` with its reason."""
    graph = _graph(("", "function"))
    problems: list[str] = []
    used: set[tuple[str, str]] = set()
    for imp in IMPORTS:
        if imp.lazy != "function":
            continue
        # does the target (by imports at module level or in functions) lead back?
        path = _path(graph, imp.target, imp.source)
        if not path:
            continue
        key = (imp.source, imp.target)
        if key in LAZY_CIRCLES:
            used.add(key)
            continue
        problems.append(
            f"{imp.source}:{imp.line} imports {imp.target} in a function, and "
            + " → ".join(path)
            + " leads back"
        )
    assert not problems, "\n".join(problems)
    assert used == set(LAZY_CIRCLES), f"stale entries: {set(LAZY_CIRCLES) - used}"


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str]:
    prev: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        if v == goal:
            path = [v]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        for w in sorted(graph[v]):
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return []


def _part(module: str) -> str:
    """The part a module belongs to: ``traywire.proxy``, ``traywire.cli``..."""
    return ".".join(module.split(".")[:2])


def test_no_circles_between_parts() -> None:
    """The parts (traywire's packages and top-level modules) depend one way,
    lazy imports included: `traywire.server` puts the proxy and the observers
    together because the observers read the proxy's runtime."""
    graph: dict[str, set[str]] = {_part(m): set() for m in MODULES}
    for imp in IMPORTS:
        if _part(imp.source) != _part(imp.target):
            graph[_part(imp.source)].add(_part(imp.target))
    cycles = _cycles(graph)
    detail = [
        f"  {i.source}:{i.line} → {i.target}" + (f" ({i.lazy})" if i.lazy else "")
        for c in cycles
        for i in IMPORTS
        if _part(i.source) in c and _part(i.target) in c and _part(i.source) != _part(i.target)
    ]
    assert not cycles, "circles between parts:\n" + "\n".join(detail)


@pytest.mark.parametrize(("part", "forbidden"), FORBIDDEN)
def test_parts_depend_downwards_only(part: str, forbidden: tuple[str, ...]) -> None:
    """Counting every import, lazy ones included."""
    bad = [
        f"{i.source}:{i.line} imports {i.target}" + (f" ({i.lazy})" if i.lazy else "")
        for i in IMPORTS
        if (i.source == part or i.source.startswith(part + "."))
        and any(i.target == f or i.target.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, "\n".join(bad)


def test_lazy_imports_are_listed() -> None:
    """Not a check: prints every lazy import between traywire modules (see them with -s)."""
    lazy = sorted({(i.source, i.target, i.lazy) for i in IMPORTS if i.lazy})
    for source, target, kind in lazy:
        print(f"lazy ({kind}): {source} → {target}")
    assert all(kind in ("function", "type_checking") for _, _, kind in lazy)


def test_the_readme_layout_names_every_module() -> None:
    """Every module and package under src/traywire is named in the README's
    Layout section (as `name`, `path/name` or `name/`)."""
    readme = (SRC.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout", 1)[1].split("\nWhere to change what", 1)[0]
    missing = []
    for name in MODULES:
        if name == "traywire":
            continue
        short = name.rsplit(".", 1)[-1]
        path = name.removeprefix("traywire.").replace(".", "/")
        if not any(f in section for f in (f"`{short}`", f"`{path}`", f"`{short}/`")):
            missing.append(name)
    assert missing == [], missing
