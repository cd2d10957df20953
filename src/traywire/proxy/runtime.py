"""What the proxy holds while it runs: config, health, keys, preference, active
vLLM members, the one HTTP client (`transport.Pool`) and the prober.

Everything here lives on the proxy's event-loop thread. Other threads (the
tray) read immutable snapshots (`status()`) and change things only through
the admin API or `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .. import __version__, config, threads
from ..clock import SYSTEM, Clock
from ..core.routing import special_needs
from ..core.schema import Backend, Config
from ..redact import REDACTOR, install_logging
from ..types import PREFERENCES, Feature, LiveState, Preference, RequestRecord, RouteRequest
from . import learn
from .health import Health
from .launch import Switcher
from .probe import Prober, ProbeResult, ProbeTarget
from .switch import SwitchState
from .transport import Pool

if TYPE_CHECKING:  # loaded where the config shares state (`_share`)
    from .shared import Shared

log = logging.getLogger("traywire")


def expected_models(cfg: Config) -> dict[str, list[str]]:
    """Upstream ids each backend is expected to list (skipped for single-model servers)."""
    out: dict[str, list[str]] = {name: [] for name in cfg.backends}
    for m in cfg.models.values():
        if not cfg.backends[m.backend].single_model:
            out[m.backend].append(m.upstream)
    return out


_NO_ACTIVE: Mapping[str, str] = MappingProxyType({})


class Runtime:
    def __init__(
        self,
        cfg: Config,
        *,
        keys: Mapping[str, str | None] | None = None,
        clock: Clock = SYSTEM,
    ) -> None:
        self.cfg = cfg
        # The file given with --config (read over the user's on reload).
        self.config_file: str | None = None
        # Everything on the request path reads time from here (tests drive it).
        self.clock = clock
        self.started = clock.monotonic()
        h = cfg.health
        self.health = Health(
            cfg.backends,
            expected=expected_models(cfg),
            failure_threshold=h.failure_threshold,
            cooldown_s=h.cooldown,
            usage_window_s=h.usage_window,
            clock=clock,
        )
        self.preference: Preference | None = None
        self.active: dict[str, str] = {}
        # backend name -> key value (None: referenced but not set)
        self.keys: dict[str, str | None] = dict(keys or {})
        self.key_problem: str | None = None
        # The one HTTP client towards backends: the request path, probes,
        # listings (/api/ps) and the switch's readiness checks.
        self.pool: Pool | None = None
        self.prober: Prober | None = None
        # Other instances' view, through Redis (config shared_state; None: alone).
        self.shared: Shared | None = None
        # The port the proxy listens on (the server sets it): part of this
        # instance's id in the shared state.
        self.listen_port: int | None = None
        self._rng = random.Random()
        # Stops and starts servers of exclusive groups (config: exclusive_groups.G.switch).
        self.switcher = Switcher(self)
        # Called with every RequestRecord (request log, metrics). Observers
        # must not block: they run on the proxy's loop, on the request path.
        self.observers: list[Callable[[RequestRecord], None]] = []
        # The tasks serving inference requests right now (see `failover`), and
        # whether the proxy is stopping: once the grace period is over, the
        # server cancels what is left with this set, and each answer ends with
        # a clean error in its dialect rather than a cut connection.
        self.inflight: set[asyncio.Task[Any]] = set()
        self.stopping = False
        # Called (on the loop) when the preference or an active member
        # changes: what keeps them across restarts (`traywire.statefile`).
        self.state_listeners: list[Callable[[], None]] = []
        # what servers said models cannot do (see `learn_lack`) and can (`_learn`)
        self._lacks: dict[str, frozenset[Feature]] = {}
        self._lacks_view: Mapping[str, frozenset[Feature]] = MappingProxyType({})
        self._features: dict[str, frozenset[Feature]] = {}
        self._features_view: Mapping[str, frozenset[Feature]] = MappingProxyType({})
        self._asked: set[str] = set()  # backends asked since they were last seen up
        self.health.add_listener(self._forget_lacks)
        install_logging()  # key values never reach a log line
        self._apply_keys()

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self, *, resolve_keys: bool = True, probes: bool = True, launch: bool = True
    ) -> None:
        """Open the HTTP client, read the keys, start the probes and (``launch``)
        the active member's server of each managed exclusive group."""
        self.pool = Pool()
        if resolve_keys:
            await threads.run_blocking(self._resolve_keys)
        if probes:
            self.prober = Prober(
                self.health,
                self._probe_targets(),
                interval_s=self.cfg.health.probe_interval,
                timeout_s=min(5.0, self.cfg.health.probe_interval * 0.8),
                pool=self.pool,
                clock=self.clock.monotonic,
                learn=self._learn,
            )
            self.prober.start()
        if launch:
            for group in self.cfg.groups:
                self.switcher.launch(group)
        if self.cfg.shared_state.url is not None:
            await self._share()

    async def _share(self) -> None:
        from .. import secrets
        from . import shared
        from .shared import Shared

        ref, password = self.cfg.shared_state.password, None
        if ref is not None:
            try:
                password = await threads.run_blocking(secrets.resolve, ref)
            except secrets.SecretsError as exc:
                log.warning("shared state: no password (%s): %s", ref, exc)
            REDACTOR.set_secrets("shared state password", [password])
        machine = await threads.run_blocking(shared.machine_tag)
        self.shared = Shared(
            self,
            self.cfg.shared_state,
            password,
            instance=shared.instance_id(self.listen_port, machine),
        )
        self.switcher.coordinator = self.shared
        self.shared.start()

    async def close(self) -> None:
        await self.switcher.close()  # also stops the servers it started
        if self.shared is not None:
            await self.shared.close()
            self.shared = None
            self.switcher.coordinator = None
        if self.prober is not None:
            await self.prober.stop()
            self.prober = None
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def reload(self, cfg: Config, *, resolve_keys: bool = True) -> None:
        """Apply a new config while running (on the loop): backends keep their
        health, new ones start unknown; keys are read again; probes restart.
        Server settings (host, port, token) need a restart to change.

        Managed exclusive groups: servers whose member is removed, renamed or
        no longer the active one are drained and stopped, and the active
        member's server is started if it changed (`launch.Switcher`)."""
        old_groups = list(self.cfg.groups)
        for group in old_groups:
            self.switcher.ensure_idle(group)
        if cfg.shared_state != self.cfg.shared_state:
            log.warning("shared_state changed: restart traywire to apply it")
        self.cfg = cfg
        self._lacks.clear()
        self._lacks_view = MappingProxyType({})
        self._features.clear()
        self._features_view = MappingProxyType({})
        self._asked.clear()
        for group in list(self.active):
            g = cfg.groups.get(group)
            if g is None or (self.active[group] and self.active[group] not in g.members):
                del self.active[group]
        self.switcher.retire(cfg)
        # members being retired stay known until drained (their in-flight counts)
        self.health.configure([*cfg.backends, *self.switcher.retiring()], expected_models(cfg))
        if resolve_keys:
            self.keys = {}
            self.key_problem = None
            await threads.run_blocking(self._resolve_keys)
        else:
            self._apply_keys()
        if self.prober is not None:
            await self.prober.stop()
            self.prober = Prober(
                self.health,
                self._probe_targets(),
                interval_s=cfg.health.probe_interval,
                timeout_s=min(5.0, cfg.health.probe_interval * 0.8),
                pool=self.pool,
                clock=self.clock.monotonic,
                learn=self._learn,
            )
            self.prober.start()
        if self.pool is not None:  # started: what runs follows the new config
            for group in dict.fromkeys([*cfg.groups, *old_groups]):
                self.switcher.launch(group)
        self._state_changed()

    async def reload_config(self, source: str, *, resolve_keys: bool = True) -> tuple[str, bool]:
        """Read the config file(s) again (``config_file`` over the user's and
        the built-in one) and apply them: SIGHUP, ``/admin/reload``, the
        dashboard, the tray. Returns the message (logged, with ``source``) and
        whether server settings need a restart. Raises `ConfigError` (a bad
        config changes nothing) or `SwitchBusy` (a group is switching)."""
        cfg = await threads.run_blocking(config.load, self.config_file)
        old = self.cfg.server
        await self.reload(cfg, resolve_keys=resolve_keys)
        message = (
            f"config reloaded: {len(cfg.backends)} backends, {len(cfg.models)} models, "
            f"{len(cfg.routes)} routes"
        )
        new = cfg.server
        restart = (new.host, new.port, new.token) != (old.host, old.port, old.token)
        if restart:
            message += "; restart traywire to apply the server settings"
        log.info("%s (%s)", message, source)
        return message, restart

    def retired(self, members: list[str]) -> None:
        """The servers of ``members`` (retired by a reload) are stopped."""
        self.health.configure(
            [*self.cfg.backends, *self.switcher.retiring()], expected_models(self.cfg)
        )

    def _probe_targets(self) -> list[ProbeTarget]:
        return [
            ProbeTarget(b.name, b.kind, b.url, self.auth_headers(b))
            for b in self.cfg.backends.values()
            if b.enabled
        ]

    # ------------------------------------------------------------------ keys

    def _resolve_keys(self) -> None:
        unavailable: list[str] = []
        for b in self.cfg.backends.values():
            if b.key is None or b.name in self.keys:
                continue
            from .. import secrets  # loaded only where a backend has a key

            try:
                self.keys[b.name] = secrets.resolve(b.key)
            except secrets.SecretsError as exc:
                self.keys[b.name] = None
                self.key_problem = str(exc)
                unavailable.append(f"{b.name} ({b.key})")
        if unavailable:  # the start-up notice says it (traywire.startup); details here
            log.debug("no key for %s: %s", ", ".join(unavailable), self.key_problem)
        self._apply_keys()

    def _apply_keys(self) -> None:
        REDACTOR.set_secrets("keys", self.keys.values())
        for b in self.cfg.backends.values():
            missing = b.key is not None and b.name in self.keys and not self.keys[b.name]
            self.health.set_no_key(b.name, missing)

    def auth_headers(self, backend: Backend) -> dict[str, str]:
        key = self.keys.get(backend.name)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def key_for(self, backend: str) -> str | None:
        return self.keys.get(backend)

    async def refresh_keys(self) -> None:
        """Read every key again (one was set or deleted) and swap them in at
        once, so no request sees a half-read set; probes use them next round."""
        from .. import secrets

        refs = {b.name: b.key for b in self.cfg.backends.values() if b.key is not None}

        def read() -> tuple[dict[str, str | None], str | None]:
            keys: dict[str, str | None] = {}
            problem = None
            for name, ref in refs.items():
                try:
                    keys[name] = secrets.resolve(ref)
                except secrets.SecretsError as exc:
                    keys[name], problem = None, str(exc)
            return keys, problem

        self.keys, self.key_problem = await threads.run_blocking(read)
        self._apply_keys()
        if self.prober is not None:
            self.prober.set_targets(self._probe_targets())
            self.prober.probe_soon()

    # ------------------------------------------------------------------ state

    def observe(self, record: RequestRecord) -> None:
        for fn in self.observers:
            try:
                fn(record)
            except Exception:
                log.exception("request observer failed")

    def snapshot(self) -> LiveState:
        # with shared state, Health adds the other instances' counts
        return self.health.snapshot(
            self.clock.monotonic(),
            active=MappingProxyType(dict(self.active)) if self.active else _NO_ACTIVE,
            preference=self.preference,
            random=self._rng.random(),
            features=self._features_view,
            lacks=self._lacks_view,
        )

    def learn_lack(self, model: str, request: RouteRequest, said: str) -> None:
        """``model``'s server answered that it cannot do what ``request`` needs:
        the router skips it for that need from now on (see `lacking`), until
        its backend comes back after being down (it may have been restarted
        with other options) or the config is reloaded. Features the config
        declares are not affected (the router reads those as declared)."""
        lacks = lacking(request, said)
        if not lacks:
            return
        have = self._lacks.get(model, frozenset())
        if lacks <= have:
            return
        self._lacks[model] = have | lacks
        self._lacks_view = MappingProxyType(dict(self._lacks))
        log.info("%s cannot do %s (its server said: %s)", model, ", ".join(sorted(lacks)), said)

    def _forget_lacks(self, backend: str, old: str, new: str) -> None:
        if new == "down":
            self._asked.discard(backend)  # ask again once it is back
        if new == "up" and old in ("down", "unknown") and self._lacks:
            for name, m in self.cfg.models.items():
                if m.backend == backend:
                    self._lacks.pop(name, None)
            self._lacks_view = MappingProxyType(dict(self._lacks))

    async def _learn(self, target: ProbeTarget, result: ProbeResult) -> None:
        """Ask a backend that is up what its models can do (once per time up)."""
        b = self.cfg.backends.get(target.backend)
        if b is None or b.name in self._asked or b.location != "local" or self.pool is None:
            return
        self._asked.add(b.name)
        models = [m for m in self.cfg.models.values() if m.backend == b.name]
        models = [m for m in models if not m.features_declared]
        if not models:
            return
        timeout = min(5.0, self.cfg.health.probe_interval)
        said: dict[str, frozenset[Feature]] = {}
        if b.kind == "ollama":
            got = await learn.ollama_features(
                self.pool, b.url, self.auth_headers(b), [m.upstream for m in models], timeout
            )
            said = {m.name: got[m.upstream] for m in models if m.upstream in got}
        elif b.single_model:
            one = await learn.llama_cpp_features(
                self.pool, b.url, self.auth_headers(b), models[0].features, timeout
            )
            said = {m.name: one for m in models} if one is not None else {}
        if said:
            self._features.update(said)
            self._features_view = MappingProxyType(dict(self._features))

    def set_preference(self, value: str | None) -> None:
        """Set the runtime preference; None: back to the config's."""
        if value is not None and value not in PREFERENCES:
            raise ValueError(
                f"preference must be one of: {', '.join(PREFERENCES)} (or null: the config's)"
            )
        self.preference = value
        self._state_changed()

    def _state_changed(self) -> None:
        for fn in self.state_listeners:
            try:
                fn()
            except Exception:
                log.exception("state listener failed")

    def remembered_active(self) -> dict[str, str]:
        """Each group's member to keep across a restart: the active one; while
        a group switches, the one that was really active before (a member
        being started at launch: that one); after a failed switch that left
        no member, the one before it. The config's own active member is left
        out: the config stays the one place that names it."""
        out: dict[str, str] = {}
        for group, g in self.cfg.groups.items():
            st = self.switcher.state(group)
            member = self.active.get(group)
            if st is not None and (st.running or member == ""):
                member = st.to if st.kind == "start" else st.previous
            if member and member != g.active:
                out[group] = member
        return out

    def member(self, group: str) -> str | None:
        """The group's active member now (None: none, e.g. while switching)."""
        g = self.cfg.groups.get(group)
        return self.active.get(group, g.active if g is not None else "") or None

    def assign(self, group: str, member: str) -> None:
        """Set the group's active member (`switch.NO_MEMBER`: none): the one
        place it changes, for the admin API and the switcher."""
        self.active[group] = member
        self._state_changed()

    def set_active(self, group: str, member: str) -> None:
        g = self.cfg.groups.get(group)
        if g is None:
            raise ValueError(f"no exclusive group {group!r}; groups: {', '.join(self.cfg.groups)}")
        if member not in g.members:
            raise ValueError(f"{member!r} is not a member of {group!r}: {', '.join(g.members)}")
        self.switcher.ensure_idle(group)
        self.assign(group, member)

    async def switch(self, group: str, member: str) -> SwitchState:
        """Switch ``group`` to ``member``: drain, stop, start, wait until ready.

        Returns the finished switch (phase "done" or "failed"; a failure is
        reported there, not raised). Raises ValueError for a bad group or
        member or a group without a ``switch`` section, and `SwitchBusy` while
        the group is already switching. Cancelling the caller does not cancel
        the switch.
        """
        return await asyncio.shield(self.switcher.begin(group, member))

    def status(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        health = self.health.status(now)
        backends = {}
        for name, b in self.cfg.backends.items():
            entry: dict[str, Any] = {
                "kind": b.kind,
                "url": b.url,
                "location": b.location,
                "capacity": b.capacity,
                "enabled": b.enabled,
                "exclusive_group": b.exclusive_group,
                "key": b.key,  # the reference, never the value
            }
            entry.update(health.get(name, {}))
            if self.shared is not None:
                entry["in_flight_elsewhere"] = self.shared.view.in_flight.get(name, 0)
            backends[name] = entry
        return {
            "version": __version__,
            "uptime_s": round(now - self.started, 1),
            "preference": self.preference or self.cfg.preference,
            "preference_source": "runtime" if self.preference else "config",
            "preference_config": self.cfg.preference,
            "active": {
                g: self.active.get(g, grp.active) or None for g, grp in self.cfg.groups.items()
            },
            # group -> its running or last switch; member -> server traywire runs for it
            "switching": self.switcher.status(now),
            "managed_servers": self.switcher.servers(),
            # servers that outlived SIGTERM by stop_timeout and were killed
            "forced_kills": self.switcher.forced_kills(),
            "saturation": self.cfg.saturation,
            # what the router reads besides the backends (`traywire route --live`)
            "usage": dict(self.health.snapshot(now).usage),  # every instance's, when shared
            "learned": {m: sorted(f) for m, f in self._lacks.items()},
            "features": {m: sorted(f) for m, f in self._features.items()},
            "backends": backends,
            "keyring": self.key_problem,
            # the one HTTP client: idle keep-alive connections, connections made
            "pool": self.pool.status() if self.pool is not None else None,
            # several instances' one view (config shared_state), None: alone
            "shared_state": self.shared.status() if self.shared is not None else None,
        }


_SAYS: dict[Feature, re.Pattern[str]] = {
    "vision": re.compile(r"image|vision|mmproj|multimodal|multi-modal", re.IGNORECASE),
    "tools": re.compile(r"tool|function", re.IGNORECASE),
    "json": re.compile(r"json|grammar|schema|response_format|format", re.IGNORECASE),
}


def lacking(request: RouteRequest, said: str) -> frozenset[Feature]:
    """What a model lacks, from a request it refused as unsupported and what
    its server said: the request's kind when it is embeddings or a plain
    completion, else the special need the message names (or the only one)."""
    if request.kind == "embedding":
        return frozenset({"embed"})
    wanted = special_needs(request)
    named = [f for f in wanted if _SAYS[f].search(said)]
    if named:
        return frozenset(named)
    if len(wanted) == 1:
        return frozenset(wanted)
    if request.kind == "completion" and not wanted:
        return frozenset({"completion"})
    return frozenset()
