"""API keys: references in the config, values in the OS keyring (or the environment).

The config never holds a key. It holds a *reference*:

* ``keyring:NAME`` - the OS keyring entry with service ``traywire`` and
  username ``NAME`` (macOS Keychain, Windows Credential Manager, or a Secret
  Service such as GNOME Keyring / KWallet on Linux);
* ``env:VAR`` - the environment variable ``VAR``.

Nothing here touches the keyring at import time: the ``keyring`` package is
imported, and its backend detected, on first use.  Error messages name keys,
never their values.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Literal
from urllib.parse import quote

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = [
    "SERVICE",
    "EmptySecret",
    "KeyRef",
    "KeyringUnavailable",
    "PlaintextKeyringRefused",
    "SecretsError",
    "backend_name",
    "delete_key",
    "env_name_for",
    "keyring_problem",
    "list_keys",
    "parse_key_ref",
    "read_secret_from_user",
    "redact",
    "resolve",
    "set_key",
    "short_fix",
    "validate_key_name",
]

SERVICE = "traywire"
"""The keyring service name every traywire key is stored under."""

RefKind = Literal["keyring", "env"]

_KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
# Only a short all-letters scheme is echoed in an error (e.g. "vault:"), never
# something that could be the first half of an "id:secret" key.
_SCHEME_RE = re.compile(r"([A-Za-z]{1,12}):")
# Prefixes of API keys issued by common providers. A reference that starts with one
# of these is almost certainly a pasted key.
_KEY_PREFIXES = (
    "sk-",
    "sk_",
    "pk-",
    "rk-",
    "gsk_",
    "xai-",
    "hf_",
    "aiza",
    "ghp_",
    "gho_",
    "github_pat_",
    "glpat-",
    "r8_",
    "pplx-",
    "nvapi-",
    "csk-",
    "fw_",
    "bearer ",
)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")


class SecretsError(Exception):
    """Base class of the errors this module raises on purpose."""


class KeyringUnavailable(SecretsError):
    """The OS keyring cannot be used; the message says why and how to fix it
    (``reason``: the why alone)."""

    reason: str = ""
    fix: str = ""


class PlaintextKeyringRefused(KeyringUnavailable):
    """The configured keyring backend would store keys unencrypted on disk."""


class EmptySecret(SecretsError, ValueError):
    """The user entered nothing where a key was expected."""


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A parsed key reference: ``keyring:NAME`` or ``env:VAR``."""

    kind: RefKind
    name: str

    def __post_init__(self) -> None:
        if self.kind == "keyring":
            validate_key_name(self.name)
        elif self.kind == "env":
            _validate_env_name(self.name)
        else:
            raise ValueError(f"unknown key reference kind {self.kind!r}: use 'keyring' or 'env'")

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


# --------------------------------------------------------------------------- parsing


def _looks_like_literal_key(text: str) -> bool:
    """A heuristic: does ``text`` look like an API key rather than a name?

    True for a known provider prefix followed by a key-length tail, or for a long
    random-looking token (mixed-case base62, or hex).  Names like ``openai_prod`` or
    ``AZURE_OPENAI_API_KEY_EASTUS2`` do not match.
    """
    if text.lower().startswith(_KEY_PREFIXES) and len(text) >= 20:
        return True
    if len(text) < 32:
        return False
    lower = any(c.islower() for c in text)
    upper = any(c.isupper() for c in text)
    digit = any(c.isdigit() for c in text)
    if lower and upper and digit:
        return True
    return digit and (lower or upper) and _HEX_RE.fullmatch(text) is not None


def _literal_key_message(where: str) -> str:
    return (
        f"{where} looks like a literal API key. Keys never go in the config file: store "
        "it in the OS keyring with `traywire keys set NAME` (it prompts for the key) and "
        "refer to it as `keyring:NAME`, or put it in an environment variable and refer "
        "to it as `env:VAR`."
    )


def validate_key_name(name: str) -> str:
    """Return ``name`` if it is a valid keyring key name, else raise ValueError.

    Valid names are 1-128 characters of ASCII letters, digits, ``_``, ``-`` and
    ``.``, starting with a letter or digit.
    """
    if not isinstance(name, str) or not _KEY_NAME_RE.fullmatch(name):
        raise ValueError(
            "invalid key name: use 1-128 ASCII letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (e.g. `openai_prod`)"
        )
    if _looks_like_literal_key(name):
        raise ValueError(_literal_key_message("The key name"))
    return name


def _validate_env_name(name: str) -> str:
    if not _ENV_NAME_RE.fullmatch(name):
        raise ValueError(
            "invalid environment variable name in `env:VAR`: use letters, digits and "
            "'_', not starting with a digit (e.g. `env:OPENAI_API_KEY`)"
        )
    if _looks_like_literal_key(name):
        raise ValueError(_literal_key_message("The environment variable name"))
    return name


def parse_key_ref(text: str) -> KeyRef:
    """Parse ``keyring:NAME`` or ``env:VAR``; anything else raises ValueError.

    The message never repeats the input (it may be a pasted key).
    """
    if not isinstance(text, str):
        raise ValueError(
            f"a key reference must be a string like `keyring:NAME` or `env:VAR`, "
            f"not {type(text).__name__}"
        )
    stripped = text.strip()
    scheme, sep, rest = stripped.partition(":")
    kind = scheme.lower()
    if sep and kind == "keyring":
        if not rest:
            raise ValueError("empty key name in `keyring:NAME`")
        return KeyRef("keyring", rest)
    if sep and kind == "env":
        if not rest:
            raise ValueError("empty variable name in `env:VAR`")
        return KeyRef("env", rest)
    if not stripped:
        raise ValueError("empty key reference: use `keyring:NAME` or `env:VAR`")
    if stripped.lower().startswith(_KEY_PREFIXES) or _looks_like_literal_key(stripped):
        raise ValueError(_literal_key_message("This key reference"))
    match = _SCHEME_RE.match(stripped)
    if match:
        raise ValueError(
            f"unsupported key reference scheme {match.group(1)!r}: use `keyring:NAME` or `env:VAR`"
        )
    raise ValueError(
        "not a key reference: use `keyring:NAME` (a key stored with "
        "`traywire keys set NAME`) or `env:VAR` (an environment variable)"
    )


def _as_ref(ref: KeyRef | str) -> KeyRef:
    return ref if isinstance(ref, KeyRef) else parse_key_ref(ref)


# --------------------------------------------------------------------------- backend


def _fix_hint(platform: str | None = None) -> str:
    platform = sys.platform if platform is None else platform
    env_hint = (
        "or refer to the key as `env:VAR` in the config and set that environment variable instead"
    )
    if platform == "darwin":
        return (
            "The macOS Keychain should always be available; if the login keychain is "
            "locked (e.g. in an ssh session) unlock it with `security unlock-keychain`, "
            + env_hint
            + "."
        )
    if platform.startswith("win"):
        return (
            "Windows Credential Manager should always be available; make sure you are "
            "logged in interactively (not as a service account), " + env_hint + "."
        )
    return (
        "On a desktop, make sure a Secret Service provider (GNOME Keyring or KWallet) "
        "is running and unlocked. On a headless machine, run a Secret Service such as "
        "gnome-keyring inside a D-Bus session, e.g. "
        "`dbus-run-session -- sh -c 'gnome-keyring-daemon --unlock --components=secrets "
        "< password-file; traywire ...'` (Debian/Ubuntu packages: dbus, gnome-keyring), "
        + env_hint
        + "."
    )


def _unavailable(reason: str, platform: str | None = None) -> KeyringUnavailable:
    exc = KeyringUnavailable(f"The OS keyring is not usable: {reason}. {_fix_hint(platform)}")
    exc.reason = reason
    exc.fix = _fix_hint(platform)
    return exc


def short_fix(platform: str | None = None) -> str:
    """How to get a usable keyring, in a few words (`traywire doctor` has the rest)."""
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return "unlock the login keychain (`security unlock-keychain`)"
    if platform.startswith("win"):
        return "log in interactively (Credential Manager)"
    return "run a Secret Service (gnome-keyring or KWallet) in your D-Bus session"


def env_name_for(key_name: str) -> str:
    """An environment variable name for a key now kept as ``keyring:key_name``:
    ``ollama_cloud`` -> ``OLLAMA_CLOUD_API_KEY``."""
    base = re.sub(r"[^A-Za-z0-9]+", "_", key_name).strip("_").upper() or "API"
    if base[0].isdigit():
        base = "KEY_" + base
    return base if base.endswith(("KEY", "TOKEN")) else base + "_API_KEY"


def keyring_problem() -> KeyringUnavailable | None:
    """Why the OS keyring cannot be used here, or None when it can."""
    try:
        _backend()
    except KeyringUnavailable as exc:
        return exc
    return None


def _qualname(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_dead(backend: KeyringBackend) -> bool:
    """keyring's fail/null backends: every operation raises or silently does nothing."""
    from keyring.backends import fail, null

    return isinstance(backend, fail.Keyring | null.Keyring)


def _is_plaintext(backend: KeyringBackend) -> bool:
    """Does this backend keep secrets unencrypted (e.g. keyrings.alt's PlaintextKeyring)?"""
    from keyring.backend import NullCrypter

    if isinstance(backend, NullCrypter):
        return True
    return any("plaintext" in cls.__name__.lower() for cls in type(backend).__mro__)


def _plaintext_refused(backend: KeyringBackend) -> PlaintextKeyringRefused:
    exc = PlaintextKeyringRefused(
        f"Refusing to use the keyring backend {_qualname(backend)}: it stores keys "
        "unencrypted on disk. Remove it from PYTHON_KEYRING_BACKEND or from keyring's "
        "keyringrc.cfg (see `python -m keyring diagnose`) so that the OS keyring is "
        f"used. {_fix_hint()}"
    )
    exc.reason = f"{_qualname(backend)} would store keys unencrypted"
    exc.fix = (
        "Remove it from PYTHON_KEYRING_BACKEND or keyring's keyringrc.cfg "
        "(`python -m keyring diagnose`). " + _fix_hint()
    )
    return exc


def _usable(backend: KeyringBackend) -> KeyringBackend:
    """Return the backend to talk to, or raise KeyringUnavailable explaining why not."""
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):
        chained: list[KeyringBackend] = list(backend.backends)
        good = [b for b in chained if not _is_dead(b) and not _is_plaintext(b)]
        if good:
            # The chainer writes to its first backend; reading from the same one keeps
            # set/resolve consistent and never falls through to a plaintext store.
            return good[0]
        plaintext = [b for b in chained if _is_plaintext(b)]
        if plaintext:
            raise _plaintext_refused(plaintext[0])
        raise _unavailable("keyring found no usable backend to chain")
    if _is_dead(backend):
        raise _unavailable(
            f"the keyring library found no backend that can store keys ({_qualname(backend)})"
        )
    if _is_plaintext(backend):
        raise _plaintext_refused(backend)
    return backend


def _backend() -> KeyringBackend:
    try:
        import keyring

        current = keyring.get_keyring()
    except Exception as exc:  # a bad PYTHON_KEYRING_BACKEND, a broken plugin, ...
        raise _unavailable(
            f"the keyring backend could not be loaded ({type(exc).__name__}: {exc})"
        ) from exc
    return _usable(current)


def backend_name() -> str:
    """The keyring backend keys go to (for `traywire keys` / diagnostics).

    Raises KeyringUnavailable when there is none that can be used.
    """
    return _qualname(_backend())


def _call_failed(action: str, exc: Exception, secret: str | None = None) -> KeyringUnavailable:
    detail = f"{type(exc).__name__}: {exc}"
    if secret:
        detail = redact(detail, [secret])
    return _unavailable(f"the keyring failed to {action} ({detail})")


# --------------------------------------------------------------------------- operations


def resolve(ref: KeyRef | str, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the key a reference points to, or None when it is not set.

    ``env:`` references never touch the keyring.  For ``keyring:`` references an
    unusable backend raises KeyringUnavailable (whose message says how to fix it).
    """
    key_ref = _as_ref(ref)
    if key_ref.kind == "env":
        env = os.environ if environ is None else environ
        value = env.get(key_ref.name)
        return value or None
    backend = _backend()
    try:
        value = backend.get_password(SERVICE, key_ref.name)
    except Exception as exc:
        raise _call_failed(f"read `{key_ref}`", exc) from exc
    return value or None


def _validate_value(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EmptySecret("the key is empty")
    if _CONTROL_RE.search(value):
        raise ValueError("the key contains control characters (a newline or similar)")
    if value != value.strip():
        raise ValueError("the key starts or ends with whitespace")
    return value


def set_key(name: str, value: str) -> None:
    """Store ``value`` in the OS keyring as ``name`` (service ``traywire``)."""
    validate_key_name(name)
    _validate_value(value)
    backend = _backend()
    try:
        backend.set_password(SERVICE, name, value)
    except Exception as exc:
        raise _call_failed(f"store key {name!r}", exc, secret=value) from exc


def delete_key(name: str) -> bool:
    """Remove key ``name``; True if it existed, False if there was nothing to remove."""
    from keyring.errors import PasswordDeleteError

    validate_key_name(name)
    backend = _backend()
    try:
        if backend.get_password(SERVICE, name) is None:
            return False
        backend.delete_password(SERVICE, name)
    except PasswordDeleteError:
        return False
    except Exception as exc:
        raise _call_failed(f"delete key {name!r}", exc) from exc
    return True


def list_keys(names: Iterable[str]) -> dict[str, bool]:
    """Whether each named key is set in the keyring (values are never returned)."""
    checked = [validate_key_name(n) for n in names]
    if not checked:
        return {}
    backend = _backend()
    result: dict[str, bool] = {}
    for name in checked:
        try:
            result[name] = bool(backend.get_password(SERVICE, name))
        except Exception as exc:
            raise _call_failed(f"read key {name!r}", exc) from exc
    return result


# --------------------------------------------------------------------------- user input


def read_secret_from_user(
    stdin: IO[str],
    is_tty: bool,
    prompt: str = "API key (input hidden): ",
    getpass_fn: Callable[[str], str] = getpass.getpass,
) -> str:
    """Read a key: a hidden prompt on a terminal, otherwise one line from ``stdin``.

    Surrounding whitespace is stripped; an empty answer raises EmptySecret.  Keys
    are never taken from the command line (they would end up in shell history and
    in the process list).
    """
    try:
        raw = getpass_fn(prompt) if is_tty else stdin.readline()
    except EOFError:
        raw = ""
    value = raw.strip()
    if not value:
        raise EmptySecret(
            "no key entered" if is_tty else "no key on standard input (expected one line)"
        )
    return _validate_value(value)


# --------------------------------------------------------------------------- redaction


def redact(text: str, secrets: Iterable[str | None], mask: str = "***") -> str:
    """Replace every occurrence of each known secret in ``text`` with ``mask``.

    Also catches the URL-encoded form of a secret. Empty/None secrets are ignored;
    longer secrets are replaced first, so one that contains another is masked whole.
    """
    needles: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        needles.add(secret)
        needles.add(quote(secret, safe=""))
    if not needles or not text:
        return text
    pattern = "|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True))
    return re.sub(pattern, lambda _m: mask, text)
