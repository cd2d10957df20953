"""traywire's own error kinds.

The transport (sockets, HTTP framing) and the adapters (HTTP statuses) map
low-level failures to these at the boundary, so the failover policy only ever
sees this small vocabulary.
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


class BackendError(TraywireError):
    """What went wrong talking to one backend, in traywire's own words.

    ``kind`` is one of KINDS; ``failover`` says whether the next attempt of
    the plan should be tried (the client's own errors are returned as they are).
    """

    FAILOVER = frozenset(
        {
            "refused",
            "dns",
            "connect_timeout",
            "first_byte_timeout",
            "idle_timeout",
            "reset",
            "server_error",
            "rate_limited",
            "model_not_found",
            "invalid_response",
            "context_length",
            "translation",
        }
    )
    KINDS = FAILOVER | {"client_error"}

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: object = None,
    ) -> None:
        assert kind in self.KINDS, kind
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.body = body
        super().__init__(message)

    @property
    def failover(self) -> bool:
        return self.kind in self.FAILOVER

    @property
    def counts_against_backend(self) -> bool:
        """Does this failure say the backend is unwell (feeds its circuit)?"""
        return self.kind not in ("client_error", "context_length", "model_not_found", "translation")
