"""Switching the active member of an exclusive group: stop one vLLM, start another.

vLLM holds one model on the GPU, so a group's members never serve at once.
A switch of group G to member M runs on the proxy's event loop, as a task the
`Switcher` (owned by the `Runtime`) keeps, one per group at a time:

1. ``draining``: G gets no active member at once (``""`` in ``Runtime.active``;
   the router then skips every member of G and requests go down their
   fallback chains). Requests already in flight on G's members may finish, for
   up to ``drain_timeout`` seconds; after that the switch goes on anyway.
2. ``stopping``: the old member's server is stopped. ``commands`` mode runs the
   ``stop`` command (for every member when G had no active member, identical
   commands once); without a ``stop`` command the ``start`` command is trusted
   to replace what runs. ``managed`` mode stops the servers traywire started
   for G: SIGTERM to the server's process group, SIGKILL after ``stop_timeout``.
3. ``starting``: ``commands`` mode runs ``start``; ``managed`` mode runs M's
   ``serve`` argv as a child in its own process group, output to
   ``<log dir>/<member>.log``.
4. ``waiting``: until M's ``/v1/models`` lists every upstream id the config
   routes to M (any answer will do for ``single_model`` backends), within
   ``ready_timeout``; a managed server that exits meanwhile fails at once.
5. ``done``: M is the active member; its health is set from that probe (so a
   circuit opened while it was down closes at once).

``failed``: the error (and the command's stderr / the server log's tail) is
kept for ``/status``. A member that was being started is stopped again (the
GPU is freed). Then, if the old member still answers with its models (e.g. its
stop command failed), it is the active member again; otherwise G keeps no
active member, requests keep going down the chains, until a later switch
succeeds or ``/admin/active`` names a member.

While a group switches, another switch of it and ``/admin/active`` for it are
refused (`SwitchBusy`, HTTP 409). Switching to the member that is already
active restarts it.

*Starting what is active* (`launch.Switcher`, kind ``"start"``): in managed
mode the active member's server is started when the proxy starts, and after a
reload that changes the active member, through the same phases and readiness
gate (the router sees no active member until it is ready; `/status` and the
tray say "starting"). A server that already answers for that member (one the
user started) is adopted, not started twice. A reload that removes or renames
a managed member, or makes another one active, first drains the members whose
servers it retires, then stops those servers.

traywire stops only servers it started. A server that outlives
SIGTERM by ``stop_timeout`` is killed and the kill is kept for `/status`
(``forced_kills``).

Commands are argv lists (never a shell) with placeholders ``{group}``,
``{member}`` (the member the command acts on: the old one for ``stop``, the new
one for ``start``), ``{member_alias}`` and ``{port}`` (of that member's URL).
They run in their own session with stdin from /dev/null and output to files
(so a server the command leaves running in the background cannot hold up the
switch), and are killed with their process group after ``command_timeout``
(`commands`: how commands and managed servers are run and stopped).

Managed servers are stopped on switch and on `close` (the proxy's shutdown);
an ``atexit`` hook kills any still running if the process exits without it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from ..clock import Clock
from ..core.schema import (
    APP_NAME,
    Backend,
    Config,
    ExclusiveGroup,
    SwitchMode,
    SwitchSettings,
)
from .commands import (
    Child,
    SwitchError,
    child_env,
    exit_text,
    run_command,
    signal_group,
    start_server,
    tail_file,
    terminate,
)
from .health import Health
from .probe import ProbeResult, probe
from .transport import Pool


class Host(Protocol):
    """What a `Switcher` needs from the proxy that owns it (the `Runtime`):
    it reads the config, health and clock, and changes a group's active
    member only through `assign`."""

    @property
    def cfg(self) -> Config: ...

    @property
    def health(self) -> Health: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def pool(self) -> Pool | None:
        """The proxy's HTTP client (None before it starts and after it stops)."""
        ...

    def member(self, group: str) -> str | None:
        """The group's active member now (None: none)."""
        ...

    def assign(self, group: str, member: str) -> None:
        """Make ``member`` the group's active one (`NO_MEMBER`: none)."""
        ...

    def auth_headers(self, backend: Backend) -> dict[str, str]: ...

    def retired(self, members: list[str]) -> None:
        """Servers a reload retired are stopped: forget those members."""
        ...


class Coordinator(Protocol):
    """Other instances sharing this one's backends (`proxy.shared`): one
    switch of a group at a time across them, and their in-flight requests."""

    def busy(self, group: str) -> str | None:
        """Why ``group`` may not switch now (another instance is switching it)."""
        ...

    async def lock(self, group: str) -> None:
        """Take the group's switch lock; `SwitchError` if another holds it."""
        ...

    async def unlock(self, group: str) -> None: ...

    def in_flight(self, members: Iterable[str]) -> int:
        """Requests the other instances have in flight on these backends."""
        ...


__all__ = [
    "NO_MEMBER",
    "Coordinator",
    "Phase",
    "SwitchBusy",
    "SwitchError",
    "SwitchState",
    "Switcher",
]

log = logging.getLogger("traywire")

# The value of Runtime.active[group] while the group has no active member.
NO_MEMBER = ""

Phase = Literal["draining", "stopping", "starting", "waiting", "done", "failed"]
_FINISHED: tuple[Phase, ...] = ("done", "failed")


class SwitchBusy(ValueError):
    """A switch of this group is already running (HTTP 409)."""


@dataclass
class SwitchState:
    """One switch of one group, as `/status` shows it (the last one stays visible)."""

    group: str
    to: str
    previous: str | None
    mode: SwitchMode
    started: float
    kind: Literal["switch", "start"] = "switch"
    phase: Phase = "draining"
    phase_started: float = 0.0
    ended: float | None = None
    failed_in: Phase | None = None
    error: str | None = None
    output: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.phase not in _FINISHED

    def as_dict(self, now: float) -> dict[str, Any]:
        end = self.ended if self.ended is not None else now
        return {
            "kind": self.kind,
            "from": self.previous,
            "to": self.to,
            "mode": self.mode,
            "phase": self.phase,
            "failed_in": self.failed_in,
            "error": self.error,
            "output": self.output,
            "notes": list(self.notes),
            "elapsed_s": round(end - self.started, 1),
            "phase_s": round(end - self.phase_started, 1),
        }


class Switcher:
    """Runs the switches of a `Host`'s exclusive groups and owns managed servers."""

    def __init__(
        self, host: Host, *, log_dir: Path | None = None, poll_interval: float = 0.5
    ) -> None:
        self.host = host
        self._log_dir = log_dir
        # Seconds between readiness probes.
        self.poll_interval = poll_interval
        self._states: dict[str, SwitchState] = {}
        self._tasks: dict[str, asyncio.Task[SwitchState]] = {}
        self._children: dict[str, Child] = {}
        self._forced: list[dict[str, Any]] = []  # servers killed after stop_timeout
        self._pool: Pool | None = None  # only while the host has none
        self._closed = False
        self._atexit = False
        # other instances (shared state): their lock and in-flight requests
        self.coordinator: Coordinator | None = None

    # ------------------------------------------------------------------ queries

    @property
    def log_dir(self) -> Path:
        if self._log_dir is None:
            import platformdirs

            self._log_dir = platformdirs.user_log_path(APP_NAME, appauthor=False) / "servers"
        return self._log_dir

    def busy(self, group: str) -> bool:
        task = self._tasks.get(group)
        return task is not None and not task.done()

    def ensure_idle(self, group: str) -> None:
        """Raise `SwitchBusy` if ``group`` is switching."""
        if self.busy(group):
            st = self._states[group]
            raise SwitchBusy(
                f"exclusive group {group!r} is switching to {st.to!r} (phase: {st.phase}); "
                "wait until it is done or failed (see /status)"
            )

    def state(self, group: str) -> SwitchState | None:
        return self._states.get(group)

    def status(self, now: float) -> dict[str, dict[str, Any]]:
        """Group -> its running or last switch."""
        return {g: st.as_dict(now) for g, st in self._states.items()}

    def servers(self) -> dict[str, dict[str, Any]]:
        """Member -> the server traywire runs for it (managed mode)."""
        return {
            m: {
                "group": c.group,
                "pid": c.proc.pid,
                "running": c.proc.returncode is None,
                "exit_code": c.proc.returncode,
                "log": str(c.log),
            }
            for m, c in self._children.items()
        }

    def forced_kills(self) -> list[dict[str, Any]]:
        """Servers that outlived SIGTERM by their stop_timeout and were killed."""
        return list(self._forced)

    # ------------------------------------------------------------------ switching

    def begin(self, group: str, member: str) -> asyncio.Task[SwitchState]:
        """Start switching ``group`` to ``member``; call on the proxy's loop.

        Raises ValueError (an unknown group or member, a group without a
        ``switch`` section) or `SwitchBusy`. From the moment it returns, the
        router sees the group without an active member.
        """
        loop = asyncio.get_running_loop()
        g = self.host.cfg.groups.get(group)
        if g is None:
            known = ", ".join(self.host.cfg.groups) or "none"
            raise ValueError(f"no exclusive group {group!r}; groups: {known}")
        if member not in g.members:
            raise ValueError(f"{member!r} is not a member of {group!r}: {', '.join(g.members)}")
        if g.switch is None:
            raise ValueError(
                f"exclusive group {group!r} has no 'switch' section in the config, so traywire "
                "cannot stop or start its servers; /admin/active changes which member is "
                "routed to"
            )
        if self._closed:
            raise ValueError("traywire is shutting down")
        self.ensure_idle(group)
        elsewhere = self.coordinator.busy(group) if self.coordinator is not None else None
        if elsewhere:
            raise SwitchBusy(f"{elsewhere}; wait until it is done or failed")
        now = loop.time()
        previous = self.host.member(group)
        st = SwitchState(group, member, previous, g.switch.mode, started=now, phase_started=now)
        self._states[group] = st
        self.host.assign(group, NO_MEMBER)
        log.info("switching %s from %s to %s (%s)", group, previous, member, g.switch.mode)
        task = loop.create_task(self._run(g, g.switch, st), name=f"traywire-switch-{group}")
        self._tasks[group] = task
        return task

    async def _run(self, g: ExclusiveGroup, sw: SwitchSettings, st: SwitchState) -> SwitchState:
        async def steps() -> None:
            if self.coordinator is not None:
                await self.coordinator.lock(g.name)
            await self._drain(g.members, sw, st)
            self._phase(st, "stopping")
            await self._stop_old(g, sw, st)
            self._phase(st, "starting")
            await self._start(g, sw, st)
            self._phase(st, "waiting")
            await self._wait_ready(sw, st)

        try:
            if await self._guarded(g, sw, st, "switch", steps):
                self.host.assign(g.name, st.to)
                self._phase(st, "done")
                log.info("switched %s to %s", g.name, st.to)
        finally:
            if self.coordinator is not None:
                await self.coordinator.unlock(g.name)
        return st

    async def _guarded(
        self,
        g: ExclusiveGroup,
        sw: SwitchSettings,
        st: SwitchState,
        what: str,
        steps: Callable[[], Awaitable[None]],
    ) -> bool:
        """Run a switch's (or a start's) steps; any failure fails ``st``, with
        its cause. True when the steps ran through."""
        try:
            await steps()
        except SwitchError as exc:
            await self._fail(g, sw, st, exc)
        except asyncio.CancelledError:
            st.failed_in, st.error = st.phase, "cancelled: traywire is shutting down"
            self._phase(st, "failed")
            raise
        except Exception as exc:  # a bug must not leave the group switching forever
            log.exception("%s of %s failed unexpectedly", what, g.name)
            await self._fail(g, sw, st, SwitchError(f"internal error: {exc!r}"))
        else:
            return True
        return False

    def _phase(self, st: SwitchState, phase: Phase) -> None:
        now = asyncio.get_running_loop().time()
        st.phase, st.phase_started = phase, now
        if phase in _FINISHED:
            st.ended = now

    # -- 1. drain

    async def _drain(self, members: Sequence[str], sw: SwitchSettings, st: SwitchState) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + sw.drain_timeout
        while True:
            n = sum(self.host.health.in_flight(m) for m in members)
            if self.coordinator is not None:
                n += self.coordinator.in_flight(members)
            if n == 0:
                return
            left = deadline - loop.time()
            if left <= 0:
                st.notes.append(
                    f"drain timed out after {sw.drain_timeout:g} s with {n} request(s) "
                    "in flight; stopped anyway"
                )
                return
            await asyncio.sleep(min(0.05, left))

    # -- 2. stop

    async def _stop_old(self, g: ExclusiveGroup, sw: SwitchSettings, st: SwitchState) -> None:
        if sw.mode == "managed":
            if st.previous is not None and st.previous not in self._children:
                ok, _, _ = await self._check(st.previous, timeout=2.0)
                if ok:
                    st.notes.append(
                        f"{st.previous} answers but its server was not started by traywire, "
                        "so it was not stopped"
                    )
            for child in [c for c in self._children.values() if c.group == g.name]:
                await self._stop_child(child)
            return
        if not sw.stop:
            st.notes.append("no stop command: the start command replaces the running server")
            return
        done: set[tuple[str, ...]] = set()
        for m in [st.previous] if st.previous else g.members:
            argv = self._fill(sw.stop, g, sw, m)
            if argv not in done:
                done.add(argv)
                await run_command("stop", argv, sw, child_env(self.host.cfg))

    # -- 3. start

    async def _start(self, g: ExclusiveGroup, sw: SwitchSettings, st: SwitchState) -> None:
        if sw.mode == "commands":
            await run_command(
                "start", self._fill(sw.start, g, sw, st.to), sw, child_env(self.host.cfg)
            )
            return
        argv = sw.serve[st.to]
        path = self.log_dir / f"{st.to}.log"
        env = child_env(self.host.cfg)
        now = self.host.clock.time()
        proc, at = await start_server(st.to, argv, path, sw.cwd, env, now=now)
        self._children[st.to] = Child(st.to, g.name, proc, path, sw.stop_timeout, at)
        if not self._atexit:
            atexit.register(self._kill_now)
            self._atexit = True
        st.notes.append(f"started {st.to}'s server: pid {proc.pid}, log {path}")

    # -- 4. wait

    async def _wait_ready(self, sw: SwitchSettings, st: SwitchState) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + sw.ready_timeout
        child = self._children.get(st.to) if sw.mode == "managed" else None
        last = "no answer yet"
        while True:
            if child is not None and child.proc.returncode is not None:
                ended = exit_text(child.proc.returncode)
                raise SwitchError(
                    f"{st.to}'s server exited ({ended}) before it was ready",
                    tail_file(child.log, child.log_start),
                )
            left = deadline - loop.time()
            if left <= 0:
                raise SwitchError(
                    f"{st.to} was not ready within {sw.ready_timeout:g} s: {last}",
                    tail_file(child.log, child.log_start) if child is not None else "",
                )
            ok, last, result = await self._check(st.to, timeout=min(5.0, max(left, 0.2)))
            if ok:
                self.host.health.probe_result(
                    st.to,
                    self.host.clock.monotonic(),
                    True,
                    result.latency_ms,
                    result.models,
                    result.detail,
                )
                return
            await asyncio.sleep(max(0.0, min(self.poll_interval, deadline - loop.time())))

    async def _check(self, member: str, timeout: float) -> tuple[bool, str, ProbeResult]:
        """Does ``member`` answer and list every upstream id the config routes to it?"""
        cfg = self.host.cfg
        b = cfg.backends[member]
        r = await probe(self._http(), b.kind, b.url, self.host.auth_headers(b), timeout)
        if not r.ok:
            return False, f"last probe: {r.detail}", r
        want = (
            set()
            if b.single_model
            else {m.upstream for m in cfg.models.values() if m.backend == member}
        )
        if not want:
            return True, "ok", r
        if r.models is None:
            return False, "it answers but lists no models", r
        missing = want - r.models
        if missing:
            listed = ", ".join(sorted(r.models)) or "no models"
            return False, f"it lists {listed}, not {', '.join(sorted(missing))}", r
        return True, "ok", r

    # -- failure

    async def _fail(
        self, g: ExclusiveGroup, sw: SwitchSettings, st: SwitchState, exc: SwitchError
    ) -> None:
        st.failed_in, st.error, st.output = st.phase, str(exc), exc.output or None
        what = "start of" if st.kind == "start" else "switch of"
        log.warning("%s %s to %s failed (%s): %s", what, g.name, st.to, st.phase, exc)
        if st.phase in ("starting", "waiting"):
            try:
                await self._stop_new(g, sw, st)
            except SwitchError as again:
                st.notes.append(f"stopping {st.to} after the failure failed too: {again}")
        restored = False
        if st.previous is not None:
            ok, _, _ = await self._check(st.previous, timeout=3.0)
            if ok:
                self.host.assign(g.name, st.previous)
                restored = True
                st.notes.append(f"{st.previous} still answers: it is the active member again")
        if not restored:
            st.notes.append(
                f"group {g.name} has no active member: requests go down the fallback chains "
                "until a switch succeeds or /admin/active names a member"
            )
        self._phase(st, "failed")

    async def _stop_new(self, g: ExclusiveGroup, sw: SwitchSettings, st: SwitchState) -> None:
        if sw.mode == "managed":
            child = self._children.get(st.to)
            if child is not None:
                await self._stop_child(child)
        elif sw.stop:
            await run_command(
                "stop", self._fill(sw.stop, g, sw, st.to), sw, child_env(self.host.cfg)
            )

    # ------------------------------------------------------------------ processes

    def _fill(
        self, argv: tuple[str, ...], g: ExclusiveGroup, sw: SwitchSettings, member: str
    ) -> tuple[str, ...]:
        url = urlsplit(self.host.cfg.backends[member].url)
        port = url.port or (443 if url.scheme == "https" else 80)
        values = {"group": g.name, "member": member, "member_alias": sw.alias(member)}
        return tuple(a.format(port=port, **values) for a in argv)

    async def _stop_child(self, child: Child) -> None:
        try:
            if await terminate(child.proc, child.stop_timeout):
                self._forced.append(
                    {
                        "member": child.member,
                        "group": child.group,
                        "pid": child.proc.pid,
                        "at": self.host.clock.time(),
                        "why": f"still running {child.stop_timeout:g} s after SIGTERM: SIGKILL",
                    }
                )
                del self._forced[:-20]
                st = self._states.get(child.group)
                if st is not None and st.running:
                    st.notes.append(f"{child.member}'s server ignored SIGTERM: killed")
        finally:
            if self._children.get(child.member) is child and child.proc.returncode is not None:
                del self._children[child.member]

    def _kill_now(self) -> None:
        """SIGKILL every managed server at once (atexit, or an interrupted close)."""
        for child in self._children.values():
            if child.proc.returncode is None:
                signal_group(child.proc, signal.SIGKILL)

    def _http(self) -> Pool:
        if self.host.pool is not None:
            return self.host.pool
        if self._pool is None:
            self._pool = Pool()
        return self._pool

    async def close(self) -> None:
        """Cancel running switches and stop every managed server (SIGTERM, then SIGKILL)."""
        self._closed = True
        try:
            for group, st in self._states.items():
                if st.running and st.phase == "waiting" and self.busy(group):
                    ok, _, _ = await self._check(st.to, timeout=1.0)
                    if ok:  # ready: what was chosen is what runs (and is remembered)
                        self.host.assign(group, st.to)
            tasks = [t for t in self._tasks.values() if not t.done()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(self._stop_child(c) for c in list(self._children.values())))
        finally:
            self._kill_now()
            if self._atexit:
                atexit.unregister(self._kill_now)
                self._atexit = False
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
