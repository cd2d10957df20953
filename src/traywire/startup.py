"""What traywire says at start about what is missing: one line per missing
thing, said once, with the one-line fix (the quick alternative first where
there is one); `traywire doctor` has the details.

This module covers the keys (no usable OS keyring; keys not set), for both
`traywire` and `traywire serve`; the tray's own notices (no tray host, no
notifications) are `desktop.probes`'.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from . import config

__all__ = ["key_notices", "key_refs"]


def key_refs(cfg: config.Config) -> dict[str, str]:
    """Who uses which key reference: owner (an enabled backend, or
    ``server.token``) -> ``keyring:NAME`` / ``env:VAR``."""
    refs = {b.name: b.key for b in cfg.backends.values() if b.key and b.enabled}
    if cfg.server.token:
        refs["server.token"] = cfg.server.token
    return refs


def _names(owners: list[str]) -> str:
    return ", ".join(owners[:3]) + (f" and {len(owners) - 3} more" if len(owners) > 3 else "")


def key_notices(cfg: config.Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """The start-up notices about keys: at most one for an unusable keyring and
    one for keys that are not set. Reads the keyring (call it off the event loop)."""
    env = os.environ if environ is None else environ
    refs = key_refs(cfg)
    keyring_users = sorted(o for o, r in refs.items() if r.startswith("keyring:"))
    notices: list[str] = []
    if not refs:
        return notices  # no key anywhere: the keyring module is not even loaded
    from . import secrets

    problem = secrets.keyring_problem() if keyring_users else None
    unset: list[tuple[str, str]] = []  # (owner, fix)
    if problem is not None:
        owner = keyring_users[0]
        var = secrets.env_name_for(refs[owner].split(":", 1)[1])
        where = "server.token" if owner == "server.token" else f"backends.{owner}.key"
        notices.append(
            f"traywire: no usable OS keyring, so {_names(keyring_users)} "
            f"{'has' if len(keyring_users) == 1 else 'have'} no key. Quick fix: "
            f"export {var}=... and set {where}: env:{var} in your config; "
            f"or {secrets.short_fix()} (details: `traywire doctor`)."
        )
    for owner, ref in sorted(refs.items()):
        kind, name = ref.split(":", 1)
        if kind == "env":
            if not env.get(name):
                unset.append((owner, f"export {name}=..."))
        elif problem is None:
            try:
                value = secrets.resolve(ref)
            except secrets.SecretsError:
                value = None
            if not value:
                unset.append((owner, f"traywire keys set {name}"))
    if unset:
        owners = [o for o, _ in unset]
        fixes = "; ".join(list(dict.fromkeys(f for _, f in unset))[:3])
        notices.append(
            f"traywire: no key for {_names(owners)}: "
            f"{'it is' if len(owners) == 1 else 'they are'} skipped until one is set. "
            f"Fix: {fixes} (or the dashboard's Keys)."
        )
    return notices
