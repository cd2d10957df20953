"""The routing core stays pure: it imports no I/O library (issue 10).

`traywire.core` (request + config schema + live-state snapshot → plan) may
use only itself, `traywire.types`, `traywire.errors` and pure modules of the
standard library; no clock, no randomness, no network, no files.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
CORE = SRC / "traywire" / "core"

CORE_MODULES = (
    "traywire.core.routing",
    "traywire.core.principles",
    "traywire.core.classify",
    "traywire.core.tokens",
    "traywire.core.request",
    "traywire.core.schema",
)
# What importing the core must not load (directly or through anything it imports).
FORBIDDEN = (
    "aiohttp",
    "yaml",
    "keyring",
    "pystray",
    "sqlite3",
    "asyncio",
    "socket",
    "ssl",
    "prometheus_client",
)
# traywire modules the core may import: itself and the shared contracts.
ALLOWED_OWN = ("traywire.core", "traywire.types", "traywire.errors")
# Standard-library modules that do no I/O and read no clock or randomness.
PURE_STDLIB = frozenset(
    {
        "__future__",
        "abc",
        "array",  # the classifier's vocabulary columns, from bytes it is handed
        "bisect",
        "collections",
        "collections.abc",
        "dataclasses",
        "difflib",
        "enum",
        "functools",
        "gc",  # is_tracked only: the nesting walk skips leaf containers (fields)
        "heapq",
        "itertools",
        "json",
        "math",
        "operator",
        "re",
        "string",
        "types",
        "typing",
        "unicodedata",
        "zlib",  # crc32, the classifier's feature hash (no compression here)
    }
)


def test_importing_the_core_loads_no_io_library() -> None:
    # the named modules, and any module added to the core since
    found = [f"traywire.core.{p.stem}" for p in sorted(CORE.glob("*.py")) if p.stem != "__init__"]
    names = list(dict.fromkeys([*CORE_MODULES, *found]))
    code = (
        "import json, sys\n"
        f"for name in {names!r}:\n"
        "    __import__(name)\n"
        f"print(json.dumps(sorted(m for m in {list(FORBIDDEN)!r} if m in sys.modules)))\n"
    )
    # -I: no user site, no PYTHONPATH/PYTHONSTARTUP that could import things
    # first; the package is found through SRC alone.
    proc = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(SRC)!r})\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(proc.stdout) == [], proc.stdout


def _imports(path: Path, package: str = "traywire.core") -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module of ``package``."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert node.module is not None
                base = node.module
            else:
                parts = package.split(".")
                parent = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            if node.module is None:  # from . import x: each name is a module
                out.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
            else:
                out.append((node.lineno, base))
    return out


def _allowed(module: str) -> bool:
    if module in PURE_STDLIB:
        return True
    return any(module == own or module.startswith(own + ".") for own in ALLOWED_OWN)


def test_core_modules_import_only_the_core_the_contracts_and_pure_stdlib() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= len(CORE_MODULES)
    bad = [
        f"{path.relative_to(SRC)}:{line} imports {module}"
        for path in files
        for line, module in _imports(path)
        if not _allowed(module)
    ]
    assert bad == []


@pytest.mark.parametrize("name", ["types.py", "errors.py"])
def test_the_contracts_the_core_uses_import_only_pure_stdlib(name: str) -> None:
    path = SRC / "traywire" / name
    bad = [
        f"{name}:{line} imports {m}"
        for line, m in _imports(path, "traywire")
        if m not in PURE_STDLIB
    ]
    assert bad == []


def test_the_import_check_sees_what_it_must_refuse(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "import time\n"
        "from ..config import Config\n"
        "from .. import secrets\n"
        "from .schema import Model\n"
        "def f():\n"
        "    import yaml\n"
    )
    refused = [m for _, m in _imports(path) if not _allowed(m)]
    assert refused == ["time", "traywire.config", "traywire.secrets", "yaml"]
