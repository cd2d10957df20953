"""Threads and child processes start in one place: `traywire.threads`.

The rule is checked on the source (every module's syntax tree), so a new
``threading.Thread(...)`` or ``subprocess.Popen(...)`` anywhere else fails
here before it ships; and the helpers themselves do what they say.
"""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from traywire import threads

SRC = Path(threads.__file__).resolve().parent
RULE_MODULE = SRC / "threads.py"

# Fully qualified callables that start a thread or a process (or hand work to
# a pool of threads or processes).
FORBIDDEN_CALLS = frozenset(
    {
        "threading.Thread",
        "threading.Timer",
        "_thread.start_new_thread",
        "_thread.start_new",
        "asyncio.to_thread",
        "asyncio.create_subprocess_exec",
        "asyncio.create_subprocess_shell",
        "concurrent.futures.ThreadPoolExecutor",
        "concurrent.futures.ProcessPoolExecutor",
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.popen",
        "os.startfile",
        "os.posix_spawn",
        "os.posix_spawnp",
        "os.spawnl",
        "os.spawnle",
        "os.spawnlp",
        "os.spawnlpe",
        "os.spawnv",
        "os.spawnve",
        "os.spawnvp",
        "os.spawnvpe",
        "os.execv",
        "os.execve",
        "os.execvp",
        "os.execvpe",
        "pty.spawn",
    }
)
# Any call into these modules.
FORBIDDEN_MODULES = ("subprocess", "multiprocessing", "concurrent.futures.process")
# Methods that start work elsewhere, whatever object they are called on.
FORBIDDEN_METHODS = frozenset({"run_in_executor", "subprocess_exec", "subprocess_shell"})
# Constants and exception classes of those modules are fine (not calls).
ALLOWED_CALLS = frozenset({"subprocess.CompletedProcess"})


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> what it stands for: ``import subprocess as sp`` gives
    sp -> subprocess; ``from threading import Thread`` gives Thread -> threading.Thread."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Each place in ``source`` that starts a thread or a process, as
    ``file:line: what``."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)

    def resolve(expr: ast.expr) -> str | None:
        dotted = _dotted(expr)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        full = aliases.get(head, head)
        return f"{full}.{rest}" if rest else full

    def forbidden(name: str) -> bool:
        if name in ALLOWED_CALLS:
            return False
        return name in FORBIDDEN_CALLS or any(
            name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES
        )

    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = resolve(node.func)
            if name is not None and forbidden(name):
                found.append(f"{filename}:{node.lineno}: {name}(...)")
            elif isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_METHODS:
                found.append(f"{filename}:{node.lineno}: .{node.func.attr}(...)")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = resolve(base)
                if name is not None and forbidden(name):
                    found.append(f"{filename}:{node.lineno}: class {node.name}({name})")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            mods = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for mod in mods:
                if mod == "multiprocessing" or mod.startswith("multiprocessing."):
                    found.append(f"{filename}:{node.lineno}: import {mod}")
    return found


def test_only_the_threads_module_starts_threads_and_processes() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 30  # the whole package, not an empty glob
    found: list[str] = []
    for path in modules:
        if path == RULE_MODULE:
            continue
        found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(SRC.parent)))
    assert found == [], "start threads and processes through traywire.threads:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import threading\nthreading.Thread(target=f).start()",
        "import threading as t\nt.Timer(1, f)",
        "from threading import Thread\nThread(target=f)",
        "import threading\nclass W(threading.Thread): pass",
        "import subprocess\nsubprocess.run(['x'])",
        "import subprocess as sp\nsp.Popen(['x'])",
        "from subprocess import check_output\ncheck_output(['x'])",
        "import asyncio\nasyncio.to_thread(f)",
        "import asyncio\nasyncio.create_subprocess_exec('x')",
        "loop.run_in_executor(None, f)",
        "asyncio.get_running_loop().run_in_executor(None, f)",
        "import os\nos.fork()",
        "import os\nos.system('x')",
        "import multiprocessing",
        "from multiprocessing import Process",
        "from concurrent.futures import ThreadPoolExecutor\nThreadPoolExecutor()",
    ],
)
def test_the_scan_catches_each_way_to_start_one(source: str) -> None:
    assert violations(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import threading\nthreading.Event(); threading.Lock(); threading.current_thread()",
        "import subprocess\ntry:\n    pass\nexcept subprocess.SubprocessError:\n    pass",
        "import subprocess\nx = subprocess.DEVNULL",
        "import asyncio\nasyncio.create_task(f()); asyncio.run_coroutine_threadsafe(c, loop)",
        "from traywire import threads\nthreads.start_thread(f, 'x')",
    ],
)
def test_the_scan_lets_the_rest_through(source: str) -> None:
    assert violations(source) == [], source


# --------------------------------------------------------------------------- the helpers


def test_start_thread_starts_a_named_thread() -> None:
    seen: list[str] = []
    done = threading.Event()

    def work() -> None:
        seen.append(threading.current_thread().name)
        done.set()

    t = threads.start_thread(work, "traywire-test")
    assert done.wait(10)
    t.join(10)
    assert seen == ["traywire-test"] and t.daemon
    t2 = threads.start_thread(lambda: None, "traywire-test-2", daemon=False)
    t2.join(10)
    assert not t2.daemon and not t2.is_alive()


def test_run_blocking_runs_off_the_loop() -> None:
    async def main() -> tuple[int, bool]:
        loop_thread = threading.current_thread()
        return await threads.run_blocking(
            lambda a, b: (a + b, threading.current_thread() is not loop_thread), 2, b=3
        )

    assert asyncio.run(main()) == (5, True)


def test_processes_start_and_run() -> None:
    code = "import sys; sys.stdout.write(sys.stdin.read().upper())"
    done = threads.run_process(
        [sys.executable, "-c", code], input=b"hi", capture_output=True, timeout=30
    )
    assert done.stdout == b"HI"
    p = threads.start_process(
        [sys.executable, "-c", "pass"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert p.wait(30) == 0

    async def child() -> bytes:
        proc = await threads.start_process_async(
            [sys.executable, "-c", "print('async')"], stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        return out

    assert asyncio.run(child()).strip() == b"async"
