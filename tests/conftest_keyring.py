"""Keyring fixtures: tests never touch the user's real keyring.

Import the fixtures into ``tests/conftest.py``::

    from conftest_keyring import fail_keyring, memory_keyring  # noqa: F401

``memory_keyring`` installs an in-memory backend (via ``keyring.set_keyring``) for one
test and puts back whatever was installed before, without ever running keyring's
backend detection (which would talk to D-Bus / the Keychain).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import keyring
import keyring.core
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from keyring.errors import PasswordDeleteError


class _NeverAutoSelected:
    """A ``priority`` that makes keyring's auto-detection skip the class.

    keyring registers every KeyringBackend subclass and, on detection, tries each
    one's ``priority``; a RuntimeError there marks the class as not viable, so a test
    backend can never be picked up as the process-wide default by accident.
    """

    def __get__(self, obj: object, owner: type | None = None) -> NoReturn:
        raise RuntimeError("test-only keyring backend")


class MemoryKeyring(KeyringBackend):
    """A dict-backed keyring for tests. ``entries`` maps (service, username) -> secret."""

    priority = _NeverAutoSelected()

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.entries[(service, username)]
        except KeyError:
            raise PasswordDeleteError("no such password") from None


@contextmanager
def installed_keyring(backend: KeyringBackend) -> Iterator[KeyringBackend]:
    """Install ``backend`` as keyring's current backend, restoring the previous one after.

    The previous backend is read without calling ``keyring.get_keyring()`` (which would
    run backend detection if none was set yet); "none set yet" is restored as such.
    """
    previous: Any = keyring.core._keyring_backend
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        if previous is None:
            keyring.core._keyring_backend = None
        else:
            keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """An empty in-memory keyring, installed for the duration of one test."""
    backend = MemoryKeyring()
    with installed_keyring(backend):
        yield backend


@pytest.fixture
def fail_keyring() -> Iterator[KeyringBackend]:
    """keyring's own "no backend available" keyring (what a headless Linux box gets)."""
    with installed_keyring(fail.Keyring()) as backend:
        yield backend
