"""Where a backend's base URL leads: its origin, and the proxy (if any) on the way.

`origin_of` splits a base URL into what a connection serves (scheme, host,
port), its Host header, and the path and query every request's own path goes
between. `route_for` adds the proxy from ``HTTPS_PROXY``/``HTTP_PROXY``/
``NO_PROXY`` for backends that are not on loopback: a CONNECT tunnel for
https, absolute-form requests for http. Pure functions of their arguments
(and a small cache); no I/O.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from typing import Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

from ..errors import TransportError

__all__ = ["Origin", "Proxy", "Route", "authority", "no_proxy", "origin_of", "route_for", "target"]


class Origin(NamedTuple):
    key: tuple[str, str, int]  # scheme, host, port: what a pooled connection serves
    host: str
    port: int
    tls: bool
    host_header: str
    prefix: str  # the base URL's path, before each request's own path
    query: str  # the base URL's query string, after each request's own


_ORIGINS: dict[str, Origin] = {}


def origin_of(base: str) -> Origin:
    """The parts of a backend's base URL (cached: there are a handful)."""
    o = _ORIGINS.get(base)
    if o is None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("refused", f"invalid URL (not http or https): {base!r}")
        tls = parts.scheme == "https"
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as exc:
            raise TransportError("refused", f"invalid URL (bad port): {base!r}") from exc
        host = parts.hostname
        default = port == (443 if tls else 80)
        o = Origin(
            (parts.scheme, host, port),
            host,
            port,
            tls,
            authority(host, None if default else port),
            parts.path.rstrip("/"),
            parts.query,
        )
        if len(_ORIGINS) < 256:
            _ORIGINS[base] = o
    return o


def authority(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def target(o: Origin, path: str) -> str:
    """The request target: the base's path, then ``path``, the queries merged."""
    t = o.prefix + path if path else o.prefix or "/"
    if o.query:
        t += ("&" if "?" in t else "?") + o.query
    return t


# ------------------------------------------------------------------ proxies


class Proxy(NamedTuple):
    host: str
    port: int
    headers: tuple[tuple[str, str], ...]  # Proxy-Authorization, when the URL has credentials

    @property
    def where(self) -> str:
        return authority(self.host, self.port)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def no_proxy(host: str, port: int, rule: str | None) -> bool:
    """Does the NO_PROXY ``rule`` (``*``, host names and domains, IP networks,
    each with an optional port) exempt ``host``?"""
    if not rule:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in rule.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip(".")
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if host.lower() == name or host.lower().endswith("." + name):
            return True
    return False


def _parse_proxy(url: str) -> Proxy:
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http" or not parts.hostname:
        raise TransportError("refused", f"unsupported proxy {url!r} (only http:// proxies)")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise TransportError("refused", f"bad port in the proxy URL {url!r}") from exc
    headers: tuple[tuple[str, str], ...] = ()
    if parts.username is not None:
        cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers = (("Proxy-Authorization", "Basic " + base64.b64encode(cred.encode()).decode()),)
    return Proxy(parts.hostname, port, headers)


class Route(NamedTuple):
    """How to reach one base URL: directly or through a proxy."""

    key: tuple[Any, ...]  # what a pooled connection serves
    origin: Origin
    proxy: Proxy | None
    absolute: str  # "http://host:port" before the target (plain http through a proxy)
    headers: tuple[tuple[str, str], ...]  # sent with every request


def route_for(base: str, proxies: Mapping[str, str]) -> Route:
    """How to reach ``base`` under ``proxies`` (scheme -> proxy URL, plus ``no``:
    a NO_PROXY list)."""
    o = origin_of(base)
    proxy = None
    scheme, host, port = o.key
    url = proxies.get(scheme)
    if url and not _is_loopback(host) and not no_proxy(host, port, proxies.get("no")):
        proxy = _parse_proxy(url)
    absolute, headers = "", cast(tuple[tuple[str, str], ...], ())
    if proxy is not None and not o.tls:
        absolute, headers = f"http://{o.host_header}", proxy.headers
    return Route((*o.key, proxy), o, proxy, absolute, headers)
