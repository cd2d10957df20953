"""``traywire doctor``: what traywire needs, checked one by one, each with
its fix.

Checks, in order: the config (it loads and validates), the OS keyring, each
key the config refers to, the tray (a graphical session, pystray, a tray
host), desktop notifications, each enabled backend (one probe, as the proxy
makes them), and the listen port. Each `Finding` is ``ok``, ``missing`` (the
thing is not there; traywire works without it) or ``failed`` (something the
config asks for does not work). `run` prints them and returns 0 only when
nothing is missing or failed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Literal, NamedTuple, TextIO

from . import config, secrets, startup
from .errors import ConfigError

__all__ = ["Finding", "check_all", "render", "run"]

Status = Literal["ok", "missing", "failed"]


class Finding(NamedTuple):
    what: str  # "config", "keyring", "key ollama_cloud", "tray", "backend ollama"...
    status: Status
    detail: str  # what was found
    fix: str = ""  # how to fix it ("" when ok)


def check_config(config_file: str | None) -> tuple[Finding, config.Config | None]:
    try:
        cfg = config.load(config_file)
    except ConfigError as exc:
        return Finding("config", "failed", str(exc), "edit the file at the line it names"), None
    detail = (
        f"{len(cfg.backends)} backends, {len(cfg.models)} models, {len(cfg.routes)} routes "
        f"(from {', '.join(cfg.sources)})"
    )
    return Finding("config", "ok", detail), cfg


def check_keyring(cfg: config.Config) -> Finding:
    problem = secrets.keyring_problem()
    if problem is None:
        return Finding("keyring", "ok", secrets.backend_name())
    users = [o for o, r in startup.key_refs(cfg).items() if r.startswith("keyring:")]
    status: Status = "failed" if users else "missing"
    needed = f"used by {', '.join(users)}" if users else "no key of the config uses it"
    detail = f"{problem.reason or 'not usable'} ({needed})"
    return Finding("keyring", status, detail, problem.fix or str(problem))


def check_keys(cfg: config.Config, keyring_ok: bool, env: Mapping[str, str]) -> list[Finding]:
    out = []
    for owner, ref in sorted(startup.key_refs(cfg).items()):
        kind, name = ref.split(":", 1)
        what = f"key {ref}"
        if kind == "env":
            if env.get(name):
                out.append(Finding(what, "ok", f"set (used by {owner})"))
            else:
                out.append(
                    Finding(
                        what,
                        "missing",
                        f"{name} is not set (used by {owner})",
                        f"export {name}=...",
                    )
                )
            continue
        if not keyring_ok:
            var = secrets.env_name_for(name)
            out.append(
                Finding(
                    what,
                    "missing",
                    f"cannot be read: no usable keyring (used by {owner})",
                    f"export {var}=... and refer to it as env:{var}; or fix the keyring (above)",
                )
            )
            continue
        try:
            value = secrets.resolve(ref)
        except secrets.SecretsError as exc:
            out.append(Finding(what, "failed", str(exc), "see the keyring finding"))
            continue
        if value:
            out.append(Finding(what, "ok", f"set (used by {owner})"))
        else:
            out.append(
                Finding(
                    what,
                    "missing",
                    f"not set (used by {owner})",
                    f"traywire keys set {name} (or the dashboard's Keys)",
                )
            )
    return out


def check_desktop(env: Mapping[str, str], platform: str) -> list[Finding]:
    from .desktop.probes import SystemProbes, diagnose, notifications_problem

    probes = SystemProbes(env)
    problem = diagnose(probes, env, platform)
    if problem is not None:
        return [
            Finding("tray", "missing", problem.what, problem.fix),
            Finding("notifications", "missing", "not checked (no tray)"),
        ]
    tray = Finding("tray", "ok", f"pystray's {probes.load_backend()} backend, a tray host")
    silent = notifications_problem(probes, platform)
    if silent is not None:
        return [tray, Finding("notifications", "missing", silent.what, silent.fix)]
    return [tray, Finding("notifications", "ok", "a notification service")]


def check_backends(cfg: config.Config, timeout_s: float = 3.0) -> list[Finding]:
    from .proxy.probe import probe
    from .proxy.transport import Pool

    keys: dict[str, str | None] = {}
    for b in cfg.backends.values():
        if b.enabled and b.key:
            try:
                keys[b.name] = secrets.resolve(b.key)
            except secrets.SecretsError:
                keys[b.name] = None

    async def probe_all() -> list[Finding]:
        pool = Pool()
        try:
            enabled = [b for b in cfg.backends.values() if b.enabled]
            results = await asyncio.gather(
                *(
                    probe(
                        pool,
                        b.kind,
                        b.url,
                        {"Authorization": f"Bearer {keys[b.name]}"} if keys.get(b.name) else {},
                        timeout_s,
                    )
                    for b in enabled
                )
            )
        finally:
            await pool.close()
        out = []
        for b, r in zip(enabled, results, strict=True):
            what = f"backend {b.name}"
            group = b.exclusive_group
            if not r.ok and group:
                detail = f"{b.url}: {r.detail} (fine unless it is {group}'s active member)"
                out.append(Finding(what, "ok", detail))
                continue
            if r.ok:
                out.append(Finding(what, "ok", f"{b.url}: {r.detail} ({r.latency_ms:.0f} ms)"))
            else:
                fix = (
                    "set its key (above)"
                    if b.key and not keys.get(b.name) and r.detail.startswith("HTTP 401")
                    else f"start it, or set backends.{b.name}.enabled: false"
                )
                out.append(Finding(what, "missing", f"{b.url}: {r.detail}", fix))
        return out

    return asyncio.run(probe_all())


def check_port(host: str, port: int, running: Callable[[], str | None]) -> Finding:
    what = f"port {host}:{port}"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            url = running()
            if url:
                return Finding(what, "ok", f"in use by the running traywire ({url})")
            why = "in use by another program" if exc.errno == errno.EADDRINUSE else str(exc)
            return Finding(what, "failed", why, "stop that program, or use --port / server.port")
    return Finding(what, "ok", "free")


def _running_url() -> str | None:
    """Where the running traywire app listens (its instance file, if the process
    that wrote it is alive), or None."""
    import json

    from . import statefile
    from .desktop import instance

    try:
        info = json.loads((statefile.state_dir() / instance.INFO_NAME).read_text("utf-8"))
        pid, url = int(info["pid"]), str(info["url"])
        if sys.platform != "win32":  # (on Windows os.kill would end the process)
            os.kill(pid, 0)  # alive?
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return url


def check_all(
    config_file: str | None,
    *,
    host: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    platform: str | None = None,
    backends: bool = True,
) -> list[Finding]:
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    found, cfg = check_config(config_file)
    findings = [found]
    if cfg is None:
        return findings
    keyring = check_keyring(cfg)
    findings.append(keyring)
    findings += check_keys(cfg, keyring.status == "ok", env)
    findings += check_desktop(env, platform)
    if backends:
        findings += check_backends(cfg)
    findings.append(
        check_port(
            host or cfg.server.host,
            cfg.server.port if port is None else port,
            _running_url,
        )
    )
    return findings


_MARK = {"ok": "ok", "missing": "MISSING", "failed": "FAILED"}


def render(findings: Iterable[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{_MARK[f.status]:8} {f.what}: {f.detail}")
        if f.fix:
            lines.append(f"{'':8}   fix: {f.fix}")
    return "\n".join(lines) + "\n"


def run(
    config_file: str | None,
    out: TextIO,
    *,
    host: str | None = None,
    port: int | None = None,
    backends: bool = True,
) -> int:
    findings = check_all(config_file, host=host, port=port, backends=backends)
    out.write(render(findings))
    bad = [f for f in findings if f.status != "ok"]
    out.write("all good\n" if not bad else f"{len(bad)} of {len(findings)} checks need attention\n")
    return 1 if bad else 0
