"""Tests for traywire.secrets: key references, keyring access, input and redaction."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import conftest_keyring
import keyring
import pytest
from conftest_keyring import MemoryKeyring, installed_keyring
from hypothesis import given
from hypothesis import strategies as st
from keyring.backend import NullCrypter
from keyring.backends import null
from keyring.backends.chainer import ChainerBackend
from keyring.errors import InitError, PasswordSetError

import traywire.secrets
from traywire.secrets import (
    SERVICE,
    EmptySecret,
    KeyRef,
    KeyringUnavailable,
    PlaintextKeyringRefused,
    backend_name,
    delete_key,
    list_keys,
    parse_key_ref,
    read_secret_from_user,
    redact,
    resolve,
    set_key,
    validate_key_name,
)

# Fixtures from the helper module (tests/conftest.py may import them as well).
memory_keyring = conftest_keyring.memory_keyring
fail_keyring = conftest_keyring.fail_keyring

A_KEY = "sk-proj-Zx81kQ0pLmN4vR7tY2wE9uI3oP6aS5dF"
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"


@pytest.fixture
def linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the fix hints deterministic whatever OS runs the tests."""
    monkeypatch.setattr(sys, "platform", "linux")


class PlaintextKeyring(MemoryKeyring):
    """Stands in for keyrings.alt.file.PlaintextKeyring (not installed here)."""


PlaintextKeyring.__module__ = "keyrings.alt.file"


class FileKeyringWithNullCrypter(NullCrypter, MemoryKeyring):
    """A backend whose 'encryption' is the identity: plaintext under another name."""


class LockedKeyring(MemoryKeyring):
    """What keyring's SecretService backend does when the collection cannot be unlocked."""

    def get_password(self, service: str, username: str) -> str | None:
        raise InitError("Failed to create the collection: Prompt dismissed..")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise PasswordSetError(f"could not store {password}")


@pytest.fixture
def chained(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """A ChainerBackend installed as the keyring, chaining the list the test fills in.

    monkeypatch reads the class attribute from ``__dict__``, so keyring's real backend
    discovery never runs.
    """
    backends: list[object] = []
    monkeypatch.setattr(ChainerBackend, "backends", backends)
    with installed_keyring(ChainerBackend()):
        yield backends


# --------------------------------------------------------------------------- parsing


def test_parse_keyring_ref() -> None:
    ref = parse_key_ref("keyring:ollama_cloud")
    assert ref == KeyRef("keyring", "ollama_cloud")
    assert str(ref) == "keyring:ollama_cloud"


def test_parse_env_ref() -> None:
    ref = parse_key_ref("env:OLLAMA_API_KEY")
    assert ref == KeyRef("env", "OLLAMA_API_KEY")
    assert str(ref) == "env:OLLAMA_API_KEY"


def test_parse_tolerates_surrounding_space_and_scheme_case() -> None:
    assert parse_key_ref("  Keyring:a.b-c_d \n") == KeyRef("keyring", "a.b-c_d")
    assert parse_key_ref("ENV:_X1") == KeyRef("env", "_X1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty key reference"),
        ("   ", "empty key reference"),
        ("ollama_cloud", "not a key reference"),
        ("keyring:", "empty key name"),
        ("env:", "empty variable name"),
        ("keyring:has space", "invalid key name"),
        ("keyring:-leading-dash", "invalid key name"),
        ("keyring:" + "a" * 129, "invalid key name"),
        ("keyring:caf\u00e9", "invalid key name"),
        ("env:1ABC", "invalid environment variable name"),
        ("env:A-B", "invalid environment variable name"),
        ("vault:secret/openai", "unsupported key reference scheme 'vault'"),
        ("file:/etc/key", "unsupported key reference scheme 'file'"),
    ],
)
def test_parse_rejects(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        parse_key_ref(text)


@pytest.mark.parametrize(
    "literal",
    [
        A_KEY,
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
        "gsk_8Jd0s7Hq2Lm4Nb6Vc1Xz3Pq9Rt5Yw0Uo",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        "xai-1234567890abcdefghij",
        "sk-short",
        "Bearer sk-proj-Zx81kQ0pLmN4vR7tY2wE9uI3oP6aS5dF",
        "Zx81kQ0pLmN4vR7tY2wE9uI3oP6aS5dF0a1b2c3d",  # random base62, no prefix
        "0123456789abcdef0123456789abcdef",  # hex token
        "keyring:" + A_KEY,  # pasted after the scheme
        "keyring:Zx81kQ0pLmN4vR7tY2wE9uI3oP6aS5dF0a1b2c3d",
        "env:Zx81kQ0pLmN4vR7tY2wE9uI3oP6aS5dF0a1b2c3d",
    ],
)
def test_literal_keys_are_refused_with_instructions(literal: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_key_ref(literal)
    message = str(info.value)
    assert "literal API key" in message
    assert "traywire keys set NAME" in message
    assert "keyring:NAME" in message
    # The message must not echo the key back (it may end up in a log).
    key_part = literal.partition(":")[2] if literal.startswith(("keyring:", "env:")) else literal
    assert key_part not in message


@pytest.mark.parametrize(
    "name",
    ["a", "0", "ollama_cloud", "openai.prod-2", "A" * 128, "sk-test", "AZURE_OPENAI_KEY_EASTUS2"],
)
def test_valid_names(name: str) -> None:
    assert validate_key_name(name) == name
    assert parse_key_ref(f"keyring:{name}") == KeyRef("keyring", name)


def test_key_ref_validates_when_built_directly() -> None:
    with pytest.raises(ValueError, match="invalid key name"):
        KeyRef("keyring", "has space")
    with pytest.raises(ValueError, match="invalid environment variable name"):
        KeyRef("env", "A-B")
    with pytest.raises(ValueError, match="unknown key reference kind"):
        KeyRef("file", "x")  # type: ignore[arg-type]


def test_unknown_scheme_is_named_only_when_it_cannot_be_part_of_a_key() -> None:
    with pytest.raises(ValueError) as info:
        parse_key_ref("a1b2c3:d4e5f6")  # could be "id:secret"
    assert "a1b2c3" not in str(info.value)
    assert "not a key reference" in str(info.value)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_key_ref(None)  # type: ignore[arg-type]


def test_long_upper_case_env_names_are_not_mistaken_for_keys() -> None:
    name = "AZURE_OPENAI_API_KEY_FOR_THE_EASTUS2_DEPLOYMENT"
    assert parse_key_ref(f"env:{name}") == KeyRef("env", name)


@given(st.text(alphabet=NAME_CHARS, min_size=1, max_size=128))
def test_every_valid_name_round_trips(name: str) -> None:
    try:
        ref = parse_key_ref(f"keyring:{name}")
    except ValueError:
        # Only names that break the documented rules, or look like pasted keys.
        assert not name[0].isalnum() or secrets_looks_like_key(name)
        return
    assert ref == KeyRef("keyring", name)
    assert parse_key_ref(str(ref)) == ref


def secrets_looks_like_key(name: str) -> bool:
    return traywire.secrets._looks_like_literal_key(name)


@given(st.text(alphabet=NAME_CHARS + "/+= ", min_size=16, max_size=80))
def test_errors_never_echo_the_input(text: str) -> None:
    # Without a colon this is never a valid reference.
    with pytest.raises(ValueError) as info:
        parse_key_ref(text)
    if text.strip():
        assert text.strip() not in str(info.value)


# --------------------------------------------------------------------------- resolve


def test_resolve_env_ref(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAYWIRE_TEST_KEY", A_KEY)
    assert resolve("env:TRAYWIRE_TEST_KEY") == A_KEY
    assert resolve(KeyRef("env", "TRAYWIRE_TEST_KEY")) == A_KEY


def test_resolve_env_ref_unset_or_empty_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAYWIRE_TEST_UNSET", raising=False)
    monkeypatch.setenv("TRAYWIRE_TEST_EMPTY", "")
    assert resolve("env:TRAYWIRE_TEST_UNSET") is None
    assert resolve("env:TRAYWIRE_TEST_EMPTY") is None


def test_resolve_env_ref_from_given_mapping() -> None:
    assert resolve("env:K", environ={"K": "v1"}) == "v1"
    assert resolve("env:K", environ={}) is None


def test_env_refs_never_touch_an_unusable_keyring(
    fail_keyring: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAYWIRE_TEST_KEY", "v")
    assert resolve("env:TRAYWIRE_TEST_KEY") == "v"
    assert resolve("env:TRAYWIRE_TEST_UNSET_2") is None


def test_resolve_rejects_bad_refs_before_touching_the_keyring(fail_keyring: object) -> None:
    with pytest.raises(ValueError, match="literal API key"):
        resolve(A_KEY)


def test_set_and_resolve_keyring_ref(memory_keyring: MemoryKeyring) -> None:
    set_key("ollama_cloud", A_KEY)
    assert memory_keyring.entries == {(SERVICE, "ollama_cloud"): A_KEY}
    assert SERVICE == "traywire"
    assert resolve("keyring:ollama_cloud") == A_KEY
    assert resolve(KeyRef("keyring", "ollama_cloud")) == A_KEY
    assert resolve("keyring:other") is None


def test_set_key_overwrites(memory_keyring: MemoryKeyring) -> None:
    set_key("k", "first-value")
    set_key("k", "second-value")
    assert resolve("keyring:k") == "second-value"


def test_list_and_delete(memory_keyring: MemoryKeyring) -> None:
    set_key("a", "value-a")
    set_key("c.d", "value-c")
    listed = list_keys(["a", "b", "c.d"])
    assert listed == {"a": True, "b": False, "c.d": True}
    assert all(isinstance(v, bool) for v in listed.values())
    assert delete_key("a") is True
    assert delete_key("a") is False
    assert delete_key("never-set") is False
    assert resolve("keyring:a") is None
    assert list_keys(["a", "c.d"]) == {"a": False, "c.d": True}
    assert list_keys([]) == {}


@pytest.mark.parametrize("name", ["", "has space", "-x", "a/b", "ü", "x" * 129])
def test_bad_names_are_rejected_before_touching_the_keyring(
    fail_keyring: object, name: str
) -> None:
    with pytest.raises(ValueError, match="invalid key name"):
        set_key(name, "value")
    with pytest.raises(ValueError, match="invalid key name"):
        delete_key(name)
    with pytest.raises(ValueError, match="invalid key name"):
        list_keys(["ok", name])


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("", EmptySecret),
        ("   ", EmptySecret),
        ("abc\ndef", ValueError),
        ("abc\x00", ValueError),
        (" leading", ValueError),
        ("trailing\t", ValueError),
    ],
)
def test_bad_values_are_rejected(
    memory_keyring: MemoryKeyring, value: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        set_key("k", value)
    assert memory_keyring.entries == {}


def test_list_keys_with_no_names_does_not_need_a_keyring(fail_keyring: object) -> None:
    assert list_keys([]) == {}


# --------------------------------------------------------------------------- unusable backends


def _assert_linux_fix(message: str) -> None:
    assert "gnome-keyring" in message
    assert "D-Bus" in message
    assert "env:VAR" in message
    # keyrings.alt would store the key in plaintext: never suggest it.
    assert "keyrings.alt" not in message
    assert "keyrings" not in message


def test_fail_backend_raises_keyring_unavailable(fail_keyring: object, linux: None) -> None:
    with pytest.raises(KeyringUnavailable) as info:
        resolve("keyring:ollama_cloud")
    _assert_linux_fix(str(info.value))
    for call in (
        lambda: set_key("k", "v"),
        lambda: delete_key("k"),
        lambda: list_keys(["k"]),
        backend_name,
    ):
        with pytest.raises(KeyringUnavailable) as info:
            call()
        _assert_linux_fix(str(info.value))


def test_null_backend_is_unusable(linux: None) -> None:
    # `keyring.disable()` selects the null backend, which silently drops every key.
    with installed_keyring(null.Keyring()), pytest.raises(KeyringUnavailable) as info:
        set_key("k", "v")
    _assert_linux_fix(str(info.value))


def test_empty_chainer_is_unusable(chained: list[object], linux: None) -> None:
    with pytest.raises(KeyringUnavailable, match="no usable backend") as info:
        resolve("keyring:k")
    _assert_linux_fix(str(info.value))


def test_chainer_uses_its_first_real_backend(chained: list[object]) -> None:
    first, second = MemoryKeyring(), MemoryKeyring()
    chained.extend([null.Keyring(), PlaintextKeyring(), first, second])
    set_key("k", "value-1")
    assert first.entries == {(SERVICE, "k"): "value-1"}
    assert second.entries == {}
    assert resolve("keyring:k") == "value-1"
    assert "MemoryKeyring" in backend_name()


def test_chainer_of_only_plaintext_is_refused(chained: list[object]) -> None:
    chained.append(PlaintextKeyring())
    with pytest.raises(PlaintextKeyringRefused, match="unencrypted"):
        resolve("keyring:k")


@pytest.mark.parametrize("backend_class", [PlaintextKeyring, FileKeyringWithNullCrypter])
def test_plaintext_backend_is_refused(backend_class: type[MemoryKeyring], linux: None) -> None:
    backend = backend_class()
    with installed_keyring(backend):
        for call in (
            lambda: set_key("k", "value"),
            lambda: resolve("keyring:k"),
            lambda: list_keys(["k"]),
            lambda: delete_key("k"),
        ):
            with pytest.raises(PlaintextKeyringRefused) as info:
                call()
            message = str(info.value)
            assert "unencrypted" in message
            assert backend_class.__name__ in message
            assert "pip install" not in message
    assert backend.entries == {}
    # A refusal is a KeyringUnavailable, so callers need to catch only one error.
    assert issubclass(PlaintextKeyringRefused, KeyringUnavailable)


def test_backend_errors_become_keyring_unavailable(linux: None) -> None:
    with installed_keyring(LockedKeyring()):
        with pytest.raises(KeyringUnavailable) as info:
            resolve("keyring:k")
        message = str(info.value)
        assert "Prompt dismissed" in message
        _assert_linux_fix(message)
        assert isinstance(info.value.__cause__, InitError)

        with pytest.raises(KeyringUnavailable) as info:
            list_keys(["k"])
        with pytest.raises(KeyringUnavailable) as info:
            delete_key("k")


def test_backend_error_messages_are_redacted() -> None:
    with installed_keyring(LockedKeyring()), pytest.raises(KeyringUnavailable) as info:
        set_key("k", A_KEY)
    assert A_KEY not in str(info.value)
    assert "***" in str(info.value)


def test_backend_that_fails_to_load(monkeypatch: pytest.MonkeyPatch, linux: None) -> None:
    def broken() -> None:
        raise ModuleNotFoundError("No module named 'some_keyring_plugin'")

    monkeypatch.setattr(keyring, "get_keyring", broken)
    with pytest.raises(KeyringUnavailable, match="could not be loaded") as info:
        resolve("keyring:k")
    _assert_linux_fix(str(info.value))


@pytest.mark.parametrize(
    ("platform", "expected"),
    [("darwin", "Keychain"), ("win32", "Credential Manager"), ("freebsd14", "gnome-keyring")],
)
def test_fix_hint_per_platform(
    fail_keyring: object, monkeypatch: pytest.MonkeyPatch, platform: str, expected: str
) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    with pytest.raises(KeyringUnavailable) as info:
        resolve("keyring:k")
    message = str(info.value)
    assert expected in message
    assert "env:VAR" in message
    assert "keyrings" not in message


# --------------------------------------------------------------------------- user input


def test_read_secret_from_pipe() -> None:
    stdin = io.StringIO(f"  {A_KEY}  \nsecond line\n")
    assert read_secret_from_user(stdin, is_tty=False) == A_KEY
    # Exactly one line was consumed.
    assert stdin.read() == "second line\n"


def test_read_secret_from_pipe_without_newline() -> None:
    assert read_secret_from_user(io.StringIO("abc"), is_tty=False) == "abc"


@pytest.mark.parametrize("data", ["", "\n", "   \n", "\r\n"])
def test_read_secret_from_pipe_empty(data: str) -> None:
    with pytest.raises(EmptySecret, match="standard input"):
        read_secret_from_user(io.StringIO(data), is_tty=False)


def test_read_secret_with_control_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="control characters"):
        read_secret_from_user(io.StringIO("ab\x1bcd\n"), is_tty=False)


def test_read_secret_from_tty_uses_hidden_prompt() -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return f" {A_KEY}\n"

    stdin = io.StringIO("must not be read\n")
    assert read_secret_from_user(stdin, is_tty=True, getpass_fn=fake_getpass) == A_KEY
    assert prompts == ["API key (input hidden): "]
    assert stdin.read() == "must not be read\n"


def test_read_secret_from_tty_custom_prompt() -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return "x-value"

    got = read_secret_from_user(
        io.StringIO(), is_tty=True, prompt="Key for openai: ", getpass_fn=fake_getpass
    )
    assert got == "x-value"
    assert prompts == ["Key for openai: "]


def test_read_secret_from_tty_empty_or_eof() -> None:
    with pytest.raises(EmptySecret, match="no key entered"):
        read_secret_from_user(io.StringIO(), is_tty=True, getpass_fn=lambda _p: "  ")

    def eof(_prompt: str) -> str:
        raise EOFError

    with pytest.raises(EmptySecret):
        read_secret_from_user(io.StringIO(), is_tty=True, getpass_fn=eof)


def test_empty_secret_is_a_value_error() -> None:
    assert issubclass(EmptySecret, ValueError)


# --------------------------------------------------------------------------- redaction


def test_redact_replaces_every_occurrence() -> None:
    text = f"POST failed: Authorization: Bearer {A_KEY} (key {A_KEY})"
    assert redact(text, [A_KEY]) == "POST failed: Authorization: Bearer *** (key ***)"


def test_redact_many_secrets_and_ignores_empty() -> None:
    assert redact("a=one b=two c=three", ["one", None, "", "three"]) == "a=*** b=two c=***"
    assert redact("nothing here", []) == "nothing here"
    assert redact("", ["x"]) == ""


def test_redact_longest_first() -> None:
    assert redact("key=abcdef", ["abc", "abcdef"]) == "key=***"


def test_redact_regex_characters_and_url_encoding() -> None:
    secret = "a+b/c(d)*e?f=="
    assert redact(f"x {secret} y", [secret]) == "x *** y"
    assert redact("url?key=a%2Bb%2Fc%28d%29%2Ae%3Ff%3D%3D", [secret]) == "url?key=***"


def test_redact_custom_mask() -> None:
    assert redact("k=secret-1", ["secret-1"], mask="[redacted]") == "k=[redacted]"


@given(
    prefix=st.text(),
    secret=st.text(min_size=1).filter(lambda s: "*" not in s),
    suffix=st.text(),
)
def test_redact_never_leaves_the_secret(prefix: str, secret: str, suffix: str) -> None:
    out = redact(prefix + secret + suffix, [secret])
    assert secret not in out
    assert "***" in out


# --------------------------------------------------------------------------- real OS keyrings


def _subprocess_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment with a throw-away HOME, so no real keyring is reachable."""
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    for d in (home, runtime, tmp_path / "data", tmp_path / "config", tmp_path / "cache"):
        d.mkdir(mode=0o700, exist_ok=True)
    src = str(Path(traywire.secrets.__file__).resolve().parents[1])
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_RUNTIME_DIR": str(runtime),
        "LANG": "C.UTF-8",
        "PYTHONPATH": src,
        "PYTHONDONTWRITEBYTECODE": "1",
    }


HEADLESS_SCRIPT = textwrap.dedent(
    """
    import os
    from traywire import secrets

    os.environ["TRAYWIRE_T"] = "from-env"
    assert secrets.resolve("env:TRAYWIRE_T") == "from-env"
    try:
        secrets.resolve("keyring:k")
    except secrets.KeyringUnavailable as exc:
        print(exc)
    else:
        raise SystemExit("expected KeyringUnavailable")
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux (Secret Service) only")
def test_headless_linux_without_dbus(tmp_path: Path) -> None:
    """No D-Bus session at all: env refs work, keyring refs explain the fix."""
    script = tmp_path / "headless.py"
    script.write_text(HEADLESS_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)],
        env=_subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    _assert_linux_fix(proc.stdout)


ROUND_TRIP_SCRIPT = textwrap.dedent(
    """
    from traywire import secrets

    name = "traywire_test_key"
    value = "sk-test-Zx81kQ0pLmN4vR7tY2wE9uI3"
    backend = secrets.backend_name()
    assert backend == "keyring.backends.SecretService.Keyring", backend
    assert secrets.list_keys([name]) == {name: False}
    secrets.set_key(name, value)
    assert secrets.resolve("keyring:" + name) == value
    assert secrets.list_keys([name, "other"]) == {name: True, "other": False}
    secrets.set_key(name, value + "-2")
    assert secrets.resolve("keyring:" + name) == value + "-2"
    assert secrets.delete_key(name) is True
    assert secrets.resolve("keyring:" + name) is None
    assert secrets.delete_key(name) is False
    print("ROUND TRIP OK via", backend)
    """
)

LOCKED_SCRIPT = textwrap.dedent(
    """
    from traywire import secrets

    try:
        secrets.resolve("keyring:k")
    except secrets.KeyringUnavailable as exc:
        print(exc)
    else:
        raise SystemExit("expected KeyringUnavailable")
    """
)

# The daemon reads the login keyring's password on stdin; with no keyring yet, it
# creates one with that password. It then serves org.freedesktop.secrets on the bus
# dbus-run-session created, and exits with that bus.
UNLOCK_AND_RUN = (
    'printf %s "$TRAYWIRE_TEST_KEYRING_PASSWORD"'
    " | gnome-keyring-daemon --unlock --components=secrets >/dev/null"
    ' && exec "$TRAYWIRE_TEST_PYTHON" "$TRAYWIRE_TEST_SCRIPT"'
)


def _require_secret_service_tools() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the Secret Service test runs on Linux only")
    missing = [t for t in ("dbus-run-session", "gnome-keyring-daemon") if not shutil.which(t)]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not found: install the Debian packages "
            "`dbus-daemon` (or `dbus`) and `gnome-keyring` "
            "(apt-get install -y --no-install-recommends dbus gnome-keyring)"
        )
    try:
        import secretstorage  # noqa: F401
    except ImportError:
        pytest.skip("the secretstorage package (a keyring dependency on Linux) is missing")


def _run_in_dbus_session(tmp_path: Path, script_text: str, unlock: bool) -> str:
    script = tmp_path / "script.py"
    script.write_text(script_text)
    env = _subprocess_env(tmp_path)
    env.update(
        TRAYWIRE_TEST_KEYRING_PASSWORD="test-keyring-password",
        TRAYWIRE_TEST_PYTHON=sys.executable,
        TRAYWIRE_TEST_SCRIPT=str(script),
    )
    inner = UNLOCK_AND_RUN if unlock else 'exec "$TRAYWIRE_TEST_PYTHON" "$TRAYWIRE_TEST_SCRIPT"'
    proc = subprocess.run(
        ["dbus-run-session", "--", "sh", "-c", inner],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_real_secret_service_round_trip(tmp_path: Path) -> None:
    """set/resolve/list/delete through keyring's SecretService backend and gnome-keyring."""
    _require_secret_service_tools()
    out = _run_in_dbus_session(tmp_path, ROUND_TRIP_SCRIPT, unlock=True)
    assert "ROUND TRIP OK via keyring.backends.SecretService.Keyring" in out
    # The key went into gnome-keyring's store inside the temporary XDG_DATA_HOME.
    assert any((tmp_path / "data" / "keyrings").iterdir())


def test_real_secret_service_locked(tmp_path: Path) -> None:
    """A Secret Service that cannot unlock (no display for its prompt) -> the fix hint."""
    _require_secret_service_tools()
    out = _run_in_dbus_session(tmp_path, LOCKED_SCRIPT, unlock=False)
    assert "Prompt dismissed" in out or "locked" in out.lower()
    _assert_linux_fix(out)


def test_import_does_not_touch_the_keyring() -> None:
    """Importing traywire.secrets loads no keyring backend (not even the keyring package)."""
    code = (
        "import sys, traywire.secrets; "
        "assert 'keyring' not in sys.modules, 'keyring imported at import time'"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(traywire.secrets.__file__).resolve().parents[1]))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_keyring_problem_has_a_short_reason_and_the_fix(fail_keyring: object, linux: None) -> None:
    problem = traywire.secrets.keyring_problem()
    assert problem is not None
    assert "fail.Keyring" in problem.reason and "\n" not in problem.reason
    assert "gnome-keyring" in problem.fix and "env:VAR" in problem.fix
    assert "Secret Service" in traywire.secrets.short_fix("linux")
    assert "security unlock-keychain" in traywire.secrets.short_fix("darwin")


def test_keyring_problem_is_none_with_a_keyring(memory_keyring: object) -> None:
    assert traywire.secrets.keyring_problem() is None


@pytest.mark.parametrize(
    ("name", "var"),
    [
        ("ollama_cloud", "OLLAMA_CLOUD_API_KEY"),
        ("openai.prod-2", "OPENAI_PROD_2_API_KEY"),
        ("vllm_token", "VLLM_TOKEN"),
        ("groq_key", "GROQ_KEY"),
        ("9lives", "KEY_9LIVES_API_KEY"),
    ],
)
def test_env_name_for_a_keyring_name(name: str, var: str) -> None:
    assert traywire.secrets.env_name_for(name) == var
