"""What several instances tell each other through the shared-state server, and
how this instance's router sees it (`proxy.shared` runs the exchange).

One exchange ("tick") is one server-side script (`TICK`), so it costs one
round trip whatever the number of instances and backends. The script reads
the server's own clock (``TIME``), so leases do not depend on the machines'
clocks agreeing. Keys, under the prefix ``traywire:``:

* ``inst`` (sorted set: instance id -> lease end, ms) and ``i:<id>`` (this
  instance's in-flight counts and smoothed latencies, JSON, expiring with the
  lease): a dead instance's counts vanish within the lease;
* ``uinst`` and ``u:<id>``: its tokens per public model name within its usage
  window, kept for one window after its last tick (tokens spent stay spent
  when an instance stops);
* ``c:<backend>``: an open circuit (``<reason>|<instance id>``), expiring when
  the circuit's cooldown or the 429's Retry-After ends;
* ``pref``, ``active:<group>``: ``<version>|<value>`` (``share_preference``),
  versions from ``seq``, the last writer wins;
* ``lock:switch:<group>``: the instance switching that group (a lease).

Only instance ids, backend, model and group names, counts, milliseconds and
the preference word are written: never a key, a prompt or an answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ..types import BackendState

PREFIX = "traywire:"

# What other instances wrote is bounded like any input: entries past these
# are left out, counts capped.
MAX_ENTRY = 64 << 10  # bytes of one instance's entry
MAX_INSTANCES = 256
MAX_COUNT = 1 << 20

TICK = """
local p, id = ARGV[1], ARGV[2]
local lease, uttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function exchange(set, pre, ttl, mine)
  redis.call('SET', pre .. id, mine, 'PX', ttl)
  redis.call('ZADD', set, now + ttl, id)
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
  local out = {}
  for _, other in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    if #out >= 2 * tonumber(ARGV[9]) then break end
    if other ~= id then
      local v = redis.call('GET', pre .. other)
      if v then table.insert(out, other); table.insert(out, v) end
    end
  end
  return out
end
local states = exchange(p .. 'inst', p .. 'i:', lease, ARGV[5])
local usage = exchange(p .. 'uinst', p .. 'u:', uttl, ARGV[6])
local versions = {}
for _, w in ipairs(cjson.decode(ARGV[7])) do
  local key = p .. w[2]
  if w[1] == 'del' then
    redis.call('DEL', key)
  elseif w[1] == 'ver' then
    local v = redis.call('INCR', p .. 'seq')
    redis.call('SET', key, v .. '|' .. w[3])
    table.insert(versions, v)
  else
    redis.call('SET', key, w[3], 'PX', w[4])
  end
end
local reads = {}
for _, k in ipairs(cjson.decode(ARGV[8])) do
  table.insert(reads, redis.call('GET', p .. k) or '')
  table.insert(reads, redis.call('PTTL', p .. k))
end
return cjson.encode({states, usage, versions, reads})
"""

# Lock helpers: only the holder renews or releases its lease.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class View(NamedTuple):
    """What the other live instances said at the last exchange."""

    instances: tuple[str, ...] = ()
    # backend -> in-flight requests on the other instances
    in_flight: Mapping[str, int] = MappingProxyType({})
    # backend -> the other instances' smoothed latencies (ms)
    latency: Mapping[str, tuple[float, ...]] = MappingProxyType({})
    # public model name -> tokens the other instances served in their window
    usage: Mapping[str, int] = MappingProxyType({})


EMPTY = View()


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def my_state(in_flight: Mapping[str, int], latency: Mapping[str, float | None]) -> str:
    """This instance's own in-flight counts and latencies, for ``i:<id>``
    (never the merged ones: the others would count themselves again)."""
    f = {n: c for n, c in in_flight.items() if c}
    lat = {n: round(ms, 1) for n, ms in latency.items() if ms is not None}
    return dumps({"f": f, "l": lat})


def as_text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _pairs(raw: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    items = list(raw or [])[: 2 * MAX_INSTANCES]
    for i in range(0, len(items) - 1, 2):
        if len(items[i + 1]) > MAX_ENTRY:
            continue
        try:
            data = json.loads(items[i + 1])
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            out.append((as_text(items[i]), data))
    return out


def _count(v: Any) -> int:
    return min(v, MAX_COUNT) if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def view(states: Any, usage: Any) -> View:
    """The others' states and usage (as the script returns them) -> a `View`;
    anything malformed is left out."""
    flight: dict[str, int] = {}
    lat: dict[str, list[float]] = {}
    ids: list[str] = []
    for iid, data in _pairs(states):
        ids.append(iid)
        for name, n in _obj(data.get("f")).items():
            if _count(n):
                flight[name] = flight.get(name, 0) + _count(n)
        for name, ms in _obj(data.get("l")).items():
            if isinstance(ms, int | float) and not isinstance(ms, bool) and 0 <= ms < 1e9:
                lat.setdefault(name, []).append(float(ms))
    used: dict[str, int] = {}
    for _, data in _pairs(usage):
        for model, n in data.items():
            if _count(n):
                used[model] = used.get(model, 0) + _count(n)
    return View(
        instances=tuple(sorted(ids)),
        in_flight=MappingProxyType(flight),
        latency=MappingProxyType({k: tuple(v) for k, v in lat.items()}),
        usage=MappingProxyType(used),
    )


def merge_one(name: str, s: BackendState, v: View) -> BackendState:
    """One local backend with the others' in-flight requests added and its
    latency the mean of every instance's that has one."""
    n = v.in_flight.get(name, 0)
    lats = v.latency.get(name)
    if not n and not lats:
        return s
    latency = s.latency_ms
    if lats:
        both = (*lats, latency) if latency is not None else lats
        latency = sum(both) / len(both)
    return BackendState(s.in_flight + n, s.circuit, latency, s.no_key, s.missing_models)


def merge_backends(local: Mapping[str, BackendState], v: View) -> Mapping[str, BackendState]:
    """Every local backend merged (`merge_one`)."""
    return MappingProxyType({name: merge_one(name, s, v) for name, s in local.items()})


def merge_usage(local: Mapping[str, int], v: View) -> Mapping[str, int]:
    if not v.usage:
        return local
    out = dict(local)
    for model, n in v.usage.items():
        out[model] = out.get(model, 0) + n
    return MappingProxyType(out)


def versioned(raw: str) -> tuple[int, str] | None:
    """``<version>|<value>`` -> (version, value); None for anything else."""
    head, sep, value = raw.partition("|")
    if not sep or not head.isdigit():
        return None
    return int(head), value
