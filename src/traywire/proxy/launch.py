"""Starting what is active, and retiring what a reload leaves behind (managed mode).

`Switcher` here is `switch.Switcher` plus two duties, both run as a group's
switch task (kind ``"start"``, one per group at a time, so `/admin/switch`
and `/admin/active` get 409 meanwhile, and `/status` shows its phases):

* `Switcher.launch`: the group's active member's server is started (when
  the proxy starts, and after a reload that changed what runs), through the
  same ``starting`` / ``waiting`` phases and readiness gate as a switch: the
  router sees no active member until it is ready. If the member already
  answers (a server the user started), it is adopted: traywire starts no
  second one, and does not stop it either (it stops only what it started).
* `Switcher.retire`, before a reload is applied: the servers whose member
  the new config removes, renames, no longer manages or no longer makes the
  active one are noted; the next `launch` of their group first drains them
  (their in-flight requests finish, within ``drain_timeout``) and stops them,
  then starts the new active member. A group the reload removed has its
  servers drained and stopped all the same.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..core.schema import Config, ExclusiveGroup, SwitchSettings
from . import switch
from .commands import Child
from .switch import NO_MEMBER, SwitchState

__all__ = ["Switcher"]

log = logging.getLogger("traywire")


class Switcher(switch.Switcher):
    """`switch.Switcher` that also starts the active member and retires servers."""

    def __init__(
        self, host: switch.Host, *, log_dir: Path | None = None, poll_interval: float = 0.5
    ) -> None:
        super().__init__(host, log_dir=log_dir, poll_interval=poll_interval)
        self._retire: dict[str, list[Child]] = {}  # group -> servers a reload retires

    def launch(self, group: str) -> asyncio.Task[SwitchState] | None:
        """Start ``group``'s active member's server (managed mode; call on
        the proxy's loop): at launch, and after a reload (`retire`) changed
        what runs. None when there is nothing to do: another mode, no active
        member and nothing to retire, or its server already runs here."""
        g = self.host.cfg.groups.get(group)
        retiring = self._retire.pop(group, [])
        member = self.host.member(group)
        if g is None or g.switch is None or g.switch.mode != "managed" or self._closed:
            member = None
        elif member is not None and not retiring:
            child = self._children.get(member)
            if child is not None and child.proc.returncode is None:
                return None  # its server runs (a dead one is started again)
        if member is None and not retiring:
            return None
        if self.busy(group):
            self._retire.setdefault(group, []).extend(retiring)
            return None
        loop = asyncio.get_running_loop()
        now = loop.time()
        st = SwitchState(group, member or NO_MEMBER, None, "managed", now, "start", "starting", now)
        self._states[group] = st
        if member is not None:
            self.host.assign(group, NO_MEMBER)
            log.info("starting %s's active member %s", group, member)
        run = self._run_start(g, st, retiring) if g is not None else self._retire_only(st, retiring)
        task = loop.create_task(run, name=f"traywire-start-{group}")
        self._tasks[group] = task
        return task

    def retire(self, new: Config) -> None:
        """Before a reload to ``new``: note the servers it retires (their
        member is gone, renamed, no longer managed, or no longer the group's
        active one); `launch` drains and stops them."""
        for member, child in self._children.items():
            g = new.groups.get(child.group)
            keep = (
                g is not None
                and g.switch is not None
                and g.switch.mode == "managed"
                and member in g.members
                and member == self.host.member(child.group)
            )
            if not keep:
                self._retire.setdefault(child.group, []).append(child)

    def retiring(self) -> list[str]:
        """Members whose servers a reload retires and that are not stopped yet."""
        return [c.member for cs in self._retire.values() for c in cs]

    async def _run_start(
        self, g: ExclusiveGroup, st: SwitchState, retiring: list[Child]
    ) -> SwitchState:
        sw = g.switch
        assert sw is not None

        async def steps() -> None:
            await self._retire_children(sw, st, retiring)
            if st.to:
                self._phase(st, "starting")
                ok, _, _ = await self._check(st.to, timeout=2.0)
                if ok:
                    st.notes.append(f"{st.to} already answers: its server was adopted")
                else:
                    await self._start(g, sw, st)
                self._phase(st, "waiting")
                await self._wait_ready(sw, st)

        if await self._guarded(g, sw, st, "start", steps):
            if st.to:
                self.host.assign(g.name, st.to)
                log.info("%s's server is ready", st.to)
            self._phase(st, "done")
        return st

    async def _retire_only(self, st: SwitchState, retiring: list[Child]) -> SwitchState:
        """A group the reload removed (or no longer manages): drain and stop its servers."""
        try:  # the default drain_timeout: the group's own settings are gone
            await self._retire_children(SwitchSettings(mode="managed"), st, retiring)
        finally:
            self._phase(st, "done")
        return st

    async def _retire_children(
        self, sw: SwitchSettings, st: SwitchState, retiring: list[Child]
    ) -> None:
        if not retiring:
            return
        self._phase(st, "draining")
        await self._drain([c.member for c in retiring], sw, st)
        self._phase(st, "stopping")
        for child in retiring:
            await self._stop_child(child)
            st.notes.append(f"stopped {child.member}'s server (pid {child.proc.pid})")
        self.host.retired([c.member for c in retiring])
