"""traywire's own error kinds.

Adapters map low-level failures (aiohttp, sockets, HTTP statuses) to these at
the boundary, so the failover policy only ever sees this small vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable


class TraywireError(Exception):
    """Base class of every error traywire raises on purpose."""


class ConfigError(TraywireError):
    """The configuration is invalid. The message names file, line and key path."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        self.problems = list(problems) or [message]
        super().__init__(message)


class UnknownModelError(TraywireError):
    """A client asked for a model or alias the configuration does not define."""

    def __init__(self, requested: str, known: Iterable[str]) -> None:
        self.requested = requested
        self.known = sorted(known)
        super().__init__(
            f"unknown model {requested!r}; known models and aliases: " + ", ".join(self.known)
        )
