"""The ``shared_state`` section: where several instances share their view of
the backends (a Redis or Valkey server), read into `SharedStateSettings`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..core.schema import SharedStateSettings
from .readers import Reader

KEYS = ("url", "password", "share_preference", "lease", "interval")


def shared_state(r: Reader, spec: Any) -> SharedStateSettings:
    """``shared_state: {url, password, share_preference, lease, interval}``;
    an empty or absent section (or ``url: null``) leaves sharing off."""
    path: tuple[Any, ...] = ("shared_state",)
    s = r.mapping(spec if spec is not None else {}, path, KEYS)
    if s.get("url") is None:
        if any(s.get(k) is not None for k in KEYS):
            r.fail((*path, "url"), "missing: redis://HOST:PORT/DB (or rediss:// for TLS)")
        return SharedStateSettings()
    url = r.string(s["url"], (*path, "url"))
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        r.fail((*path, "url"), f"{url!r} is not a URL: {exc}")
    if parts.scheme not in ("redis", "rediss") or not host:
        r.fail(
            (*path, "url"),
            f"{url!r}: expected redis://HOST:PORT/DB (or rediss:// for TLS)",
        )
    if parts.password is not None:
        r.fail(
            (*path, "url"),
            "the URL holds a password: give it as shared_state.password: keyring:NAME or "
            "env:VAR instead (store it with: traywire keys set NAME)",
        )
    db = parts.path.strip("/")
    if db and not db.isdigit():
        r.fail((*path, "url"), f"{url!r}: the database after the port is a number (/0)")
    if parts.query or parts.fragment:
        r.fail((*path, "url"), f"{url!r}: no query or fragment expected")
    pw = s.get("password")
    lease = r.number(s.get("lease", 3.0), (*path, "lease"), low=0.5, high=300)
    interval = r.number(s.get("interval", 0.05), (*path, "interval"), low=0.005, high=5)
    if interval * 4 > lease:
        r.fail((*path, "lease"), f"must be at least 4 x interval ({interval:g} s)")
    return SharedStateSettings(
        url=url,
        password=r.key_ref(pw, (*path, "password")) if pw is not None else None,
        share_preference=r.boolean(s.get("share_preference", False), (*path, "share_preference")),
        lease=lease,
        interval=interval,
    )
