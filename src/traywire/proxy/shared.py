"""Several traywire instances share one view of the backends, through Redis.

Optional (config ``shared_state``). One background task on the proxy's loop
exchanges this instance's state with the server every ``interval`` seconds
(one script call per exchange: `shared_view.TICK`) and keeps the view of the
others (`shared_view.View`); the request path never waits on the server:

* the router's snapshot adds the others' in-flight counts to the local ones
  (`Health.set_elsewhere`: where Health builds a backend's entry, so a
  request costs nothing more) (so the saturation overflow and ``least_loaded`` see the whole
  load), their usage to the local usage window (``usage_based``), and
  averages the smoothed latencies. Nothing is sent per request: each
  exchange publishes this instance's current counts, so what a lost
  exchange missed, the next one carries;
* an open circuit or a 429 cooldown of one instance is published with its
  remaining time and opened on every other (`Health.shared_open`), so they
  skip the backend without trying it;
* with ``share_preference``, the routing preference and the exclusive
  groups' active members follow the last instance that changed them, and a
  vLLM switch on one instance takes every instance's requests off the old
  member and waits for all of them to drain (`switch.Coordinator`). A switch
  takes a lock with a lease (``lock:switch:<group>``) in any case: one switch
  of a group at a time across instances.

The view is at most about two intervals old (the others' last exchange, then
this one's): ≤ 100 ms with the default 50 ms interval, plus two round trips.

The server unreachable is not an outage: the view of the others is dropped
(routing on the local view), `/status`, the dashboard and the tray say so,
and the task reconnects with a growing back-off (0.1 s to 2 s). Each instance
republishes its whole state once back, so the view converges within a few
intervals, also after the server restarted empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import secrets as pysecrets
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ..core.schema import SharedStateSettings
from . import shared_view as sv
from .circuit import OpenReason
from .switch import NO_MEMBER, SwitchError

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["UNREACHABLE", "Shared"]

log = logging.getLogger("traywire")

UNREACHABLE = "shared state: unreachable, routing on local view"
Link = Literal["connecting", "connected", "unreachable"]
_MIN_BACKOFF, _MAX_BACKOFF = 0.1, 2.0
_UNSENT = "\0unsent"  # a choice whose write failed: differs from any value


def _near(a: float, b: float | None) -> bool:
    return b is not None and abs(a - b) < 1e-3


def machine_tag() -> str:
    """A few characters that tell this machine from another of the same host
    name (a hash of the OS's machine id), "" where there is none. Blocking: a
    small file read."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            text = Path(path).read_text(encoding="ascii", errors="replace").strip()
            if text:
                return hashlib.sha256(text.encode()).hexdigest()[:6]
    return ""


def instance_id(port: int | None = None, machine: str = "") -> str:
    """Who this instance is, in the shared state: the host name, and the
    machine's tag and listen port where both are known (the same id again
    after a restart, so a restarted instance replaces its old entries at
    once, and its usage is not counted twice); otherwise the process id and
    a few random characters."""
    host = socket.gethostname().split(".")[0][:40] or "host"
    if port and machine:
        return f"{host}-{machine}-{port}"
    return f"{host}-{os.getpid()}-{pysecrets.token_hex(2)}"


def redacted_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def password_warning(url: str, has_password: bool) -> str | None:
    """What to say of a server that is not on this machine and has no password."""
    if has_password or is_loopback_url(url):
        return None
    return (
        f"{redacted_url(url)} is not on this machine and has no password: anyone who "
        "reaches it can read and change traywire's shared view "
        "(set shared_state.password: keyring:NAME)"
    )


class Shared:
    """This instance's link to the shared state (see the module docstring)."""

    def __init__(
        self,
        rt: Runtime,
        settings: SharedStateSettings,
        password: str | None = None,
        *,
        instance: str | None = None,
    ) -> None:
        assert settings.url is not None
        self.rt = rt
        self.settings = settings
        self.password = password
        self.id = instance or instance_id()
        self.url = redacted_url(settings.url)
        self.link: Link = "connecting"
        self.error: str | None = None
        self.warning = password_warning(settings.url, bool(password))
        self.view = sv.EMPTY
        self.last_ok: float | None = None  # monotonic, the last good exchange
        self.exchanges = 0  # good ones
        self.failures = 0  # exchanges (or connections) that failed
        self._client: Any = None
        self._tick: Any = None
        self._task: asyncio.Task[None] | None = None
        self._renewers: dict[str, asyncio.Task[None]] = {}
        # circuits: backend -> open_until this instance published / took from another
        self._mine: dict[str, float] = {}
        self._adopted: dict[str, float] = {}
        # share_preference: what was last written or taken ("pref", "active:<g>"),
        # and the newest version seen of each
        self._applied: dict[str, str] = {}
        self._seen: dict[str, int] = {}
        # group -> the instance holding its switch lock (as of the last exchange)
        self._locks: dict[str, str] = {}

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        if self.warning:
            log.warning("shared state: %s", self.warning)
        self._applied = self._choices()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="traywire-shared-state"
        )

    async def close(self) -> None:
        for t in self._renewers.values():
            t.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._leave(), timeout=1.0)
            await self._drop_client()
        self.view = sv.EMPTY
        self.rt.health.set_elsewhere(None)

    async def _leave(self) -> None:
        """Withdraw this instance's in-flight lease at once (a clean stop)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(f"{sv.PREFIX}i:{self.id}")
        pipe.zrem(f"{sv.PREFIX}inst", self.id)
        await pipe.execute()

    def _connect(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        timeout = max(0.5, self.settings.interval * 10)
        assert self.settings.url is not None
        self._client = aioredis.Redis.from_url(
            self.settings.url,
            password=self.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # this task retries, with its own back-off
            client_name=f"traywire-{self.id}",
        )
        self._tick = self._client.register_script(sv.TICK)

    async def _drop_client(self) -> None:
        client, self._client, self._tick = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _run(self) -> None:
        from redis.exceptions import RedisError

        backoff = _MIN_BACKOFF
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                if self._client is None:
                    self._connect()
                await self._exchange()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError, ValueError) as exc:
                self._lost(exc)
                await self._drop_client()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            except Exception:  # a bug must not end sharing for good
                log.exception("shared state: exchange failed")
                self._lost(RuntimeError("internal error"))
                await asyncio.sleep(_MAX_BACKOFF)
                continue
            backoff = _MIN_BACKOFF
            # one exchange per interval, however long this one took
            await asyncio.sleep(max(0.0, started + self.settings.interval - loop.time()))

    def _lost(self, exc: BaseException) -> None:
        from ..redact import REDACTOR

        self.failures += 1
        self.error = REDACTOR.text(f"{type(exc).__name__}: {exc}")[:300]
        if self.link != "unreachable":
            log.warning("%s (%s: %s); retrying", UNREACHABLE, self.url, self.error)
        self.link = "unreachable"
        if self.view is not sv.EMPTY:
            self.view = sv.EMPTY
            self.rt.health.set_elsewhere(None)
        # republish everything once back (the server may have restarted empty)
        self._mine.clear()
        self._locks.clear()
        self._seen.clear()  # a restarted server counts versions from 1 again

    # ------------------------------------------------------------------ exchange

    async def _exchange(self) -> None:
        rt = self.rt
        now = rt.clock.monotonic()
        h, names = rt.health, rt.health.backends
        writes, versioned = self._writes(now)
        reads = [f"c:{b}" for b in rt.cfg.backends]
        reads += [f"lock:switch:{g}" for g in rt.cfg.groups]
        if self.settings.share_preference:
            reads += ["pref", *(f"active:{g}" for g in rt.cfg.groups)]
        window_ms = int(rt.cfg.health.usage_window * 1000)
        try:
            result = await self._tick(
                args=[
                    sv.PREFIX,
                    self.id,
                    int(self.settings.lease * 1000),
                    max(window_ms, 1000),
                    sv.my_state(
                        {n: h.in_flight(n) for n in names}, {n: h.latency_ms(n) for n in names}
                    ),
                    sv.dumps(rt.health.usage(now)),
                    sv.dumps(writes),
                    sv.dumps(reads),
                    sv.MAX_INSTANCES,
                ]
            )
        except BaseException:
            for name in versioned:  # not written: write them again next time
                self._applied[name] = _UNSENT
            raise
        # one JSON text (parsed in C); an empty Lua table reads as {}
        parts = json.loads(result)
        states, usage, versions, got = (x if isinstance(x, list) else [] for x in parts)
        for name, v in zip(versioned, versions, strict=False):
            self._seen[name] = int(v)
        view = sv.view(states, usage)
        if view != self.view:
            self.view = view
            rt.health.set_elsewhere(view if view.instances else None)
        values = {
            reads[i]: (sv.as_text(got[2 * i]), int(got[2 * i + 1])) for i in range(len(reads))
        }
        now = rt.clock.monotonic()
        self._take_circuits(values, now)
        self._locks = {
            k.removeprefix("lock:switch:"): v
            for k, (v, _) in values.items()
            if k.startswith("lock:switch:") and v
        }
        if self.settings.share_preference:
            self._take_choices(values)
        if self.link != "connected":
            log.info(
                "shared state: connected to %s as %s (%d other instance(s))",
                self.url,
                self.id,
                len(self.view.instances),
            )
        self.link, self.error, self.last_ok = "connected", None, now
        self.exchanges += 1

    def _writes(self, now: float) -> tuple[list[list[Any]], list[str]]:
        """Circuits this instance opened or saw close, and (share_preference)
        its changed choices: [op, key, value, px] each, and the versioned keys."""
        h = self.rt.health
        out: list[list[Any]] = []
        for b in self.rt.cfg.backends:
            wait = h.retry_in(b, now)
            reason = h.open_reason(b)
            if wait is not None and wait > 0 and reason is not None:
                until = now + wait
                if not _near(until, self._mine.get(b)) and not _near(until, self._adopted.get(b)):
                    out.append(["set", f"c:{b}", f"{reason}|{self.id}", max(1, int(wait * 1000))])
                    self._mine[b] = until
            elif wait is None and (b in self._mine or b in self._adopted):
                # closed here (a success): the backend works again
                out.append(["del", f"c:{b}", "", 0])
                self._mine.pop(b, None)
                self._adopted.pop(b, None)
        names: list[str] = []
        if self.settings.share_preference:
            for name, value in self._choices().items():
                if self._applied.get(name) != value:
                    out.append(["ver", name, value, 0])
                    names.append(name)
                    self._applied[name] = value
        return out, names

    def _take_circuits(self, values: dict[str, tuple[str, int]], now: float) -> None:
        h = self.rt.health
        for b in self.rt.cfg.backends:
            raw, pttl = values.get(f"c:{b}", ("", -2))
            reason, _, who = raw.partition("|")
            if not raw or pttl <= 0 or who == self.id or reason not in ("failures", "rate_limited"):
                continue
            # no longer than this instance would open it for itself
            seconds = min(pttl / 1000, max(h.breaker.max_cooldown_s, h.breaker.max_retry_after_s))
            wait = h.retry_in(b, now)
            if wait is not None and wait + 0.05 >= seconds:
                continue  # already open here at least as long
            why: OpenReason = "rate_limited" if reason == "rate_limited" else "failures"
            h.shared_open(b, now, seconds, why, f"instance {who}")
            self._adopted[b] = now + seconds

    def _choices(self) -> dict[str, str]:
        rt = self.rt
        out: dict[str, str] = {"pref": rt.preference or ""}
        for g in rt.cfg.groups:
            out[f"active:{g}"] = rt.member(g) or NO_MEMBER
        return out

    def _take_choices(self, values: dict[str, tuple[str, int]]) -> None:
        rt = self.rt
        for name, (raw, _) in values.items():
            if name != "pref" and not name.startswith("active:"):
                continue
            got = sv.versioned(raw) if raw else None
            if got is None or got[0] <= self._seen.get(name, 0):
                continue
            version, value = got
            self._seen[name] = version
            if name == "pref":
                if value != (rt.preference or ""):
                    try:
                        rt.set_preference(value or None)  # "": back to the config's
                    except ValueError:
                        continue
                    log.info("preference %s (set on another instance)", value or "the config's")
            else:
                group = name.removeprefix("active:")
                g = rt.cfg.groups.get(group)
                if g is None or (value and value not in g.members) or rt.switcher.busy(group):
                    continue
                if (rt.member(group) or NO_MEMBER) != value:
                    rt.assign(group, value)
                    log.info("%s: active member %s (another instance)", group, value or "none")
            self._applied[name] = value

    # ------------------------------------------------------------------ switches

    def busy(self, group: str) -> str | None:
        """Why ``group`` may not switch now: another instance holds its lock."""
        holder = self._locks.get(group)
        if holder and holder != self.id:
            return f"exclusive group {group!r} is switching on instance {holder}"
        return None

    def in_flight(self, members: Iterable[str]) -> int:
        """Requests the other instances have in flight on these backends, for a
        switch to drain: with ``share_preference`` only (without it the others
        keep their own active member, and go on routing to it)."""
        if not self.settings.share_preference:
            return 0
        return sum(self.view.in_flight.get(m, 0) for m in members)

    async def lock(self, group: str) -> None:
        """Take ``group``'s switch lock (a lease renewed while the switch runs);
        `SwitchError` if another instance holds it. Unreachable: go on alone."""
        from redis.exceptions import RedisError

        if self._client is None or self.link != "connected":
            log.warning("switching %s without the cross-instance lock: %s", group, UNREACHABLE)
            return
        key = f"{sv.PREFIX}lock:switch:{group}"
        lease = int(self.settings.lease * 1000)
        try:
            if not await self._client.set(key, self.id, nx=True, px=lease):
                holder = await self._client.get(key)
                raise SwitchError(
                    f"another instance ({sv.as_text(holder) if holder else 'unknown'}) is "
                    f"switching {group}; try again when it is done"
                )
        except RedisError as exc:
            log.warning("switching %s without the cross-instance lock: %s", group, exc)
            return
        self._locks[group] = self.id
        self._renewers[group] = asyncio.get_running_loop().create_task(
            self._renew(key, lease), name=f"traywire-switch-lock-{group}"
        )
        if self.settings.share_preference:
            # the group has no member here since the switch began: the others
            # read that within two exchanges and stop routing to it; what they
            # still have in flight is in the view two exchanges later
            # (`in_flight`, which the drain waits on)
            await asyncio.sleep(self.settings.interval * 5)

    async def _renew(self, key: str, lease: int) -> None:
        from redis.exceptions import RedisError

        while True:
            await asyncio.sleep(lease / 3000)
            with contextlib.suppress(RedisError, OSError):
                if self._client is not None:
                    await self._client.eval(sv.RENEW, 1, key, self.id, lease)

    async def unlock(self, group: str) -> None:
        from redis.exceptions import RedisError

        task = self._renewers.pop(group, None)
        if task is None:
            return
        task.cancel()
        self._locks.pop(group, None)
        with contextlib.suppress(RedisError, OSError):
            if self._client is not None:
                await self._client.eval(sv.RELEASE, 1, f"{sv.PREFIX}lock:switch:{group}", self.id)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        now = self.rt.clock.monotonic()
        return {
            "url": self.url,
            "state": self.link,
            "note": UNREACHABLE if self.link == "unreachable" else None,
            "error": self.error,
            "warning": self.warning,
            "instance": self.id,
            "instances": [self.id, *self.view.instances],
            "age_ms": round((now - self.last_ok) * 1000) if self.last_ok is not None else None,
            "interval_ms": round(self.settings.interval * 1000),
            "share_preference": self.settings.share_preference,
            "in_flight_elsewhere": dict(self.view.in_flight),
            "switch_locks": dict(self._locks),
        }
