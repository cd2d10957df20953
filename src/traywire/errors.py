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
    """What went wrong with one attempt on one backend, in traywire's own words.

    Raised only at the edges where low-level failures come in (the transport
    for sockets, TLS and HTTP framing; the relays and adapters for answers and
    statuses; the executor's deadlines for time), so retries, failover and
    health bookkeeping only ever see ``kind``, one of `KINDS`:

    ============================  =========  ===========================
    kind                          failover   counts against the backend
    ============================  =========  ===========================
    refused, dns, reset           yes        yes
    connect_timeout               yes        yes
    tls (certificate, handshake)  yes        yes
    first_byte_timeout            yes        yes (streams: no data in time)
    total_timeout                 yes        yes (a whole answer not in time)
    idle_timeout                  yes        yes (a stream went silent)
    server_error (5xx)            yes        yes
    invalid_response              yes        yes
    too_large                     yes        yes (past server.max_answer_mb)
    rate_limited (429)            yes        no: a cooldown of its own
    model_not_found (404)         yes        no: the backend answered
    context_length                yes        no: caused by the request
    unsupported                   yes        no: caused by the request (501,
                                             "not supported", 413)
    translation                   yes        no: caused by the request
    client_error (other 4xx)      no         no: caused by the request
    ============================  =========  ===========================

    The message never names the backend (the attempt record does) and never
    holds a key.
    """

    FAILOVER = frozenset(
        {
            "refused",
            "dns",
            "connect_timeout",
            "tls",
            "first_byte_timeout",
            "total_timeout",
            "idle_timeout",
            "reset",
            "server_error",
            "rate_limited",
            "model_not_found",
            "invalid_response",
            "too_large",
            "context_length",
            "unsupported",
            "translation",
        }
    )
    KINDS = FAILOVER | {"client_error"}
    # Not the backend's fault: it answered, the request was the problem.
    NOT_THE_BACKEND = frozenset(
        {"client_error", "context_length", "model_not_found", "translation", "unsupported"}
    )
    # Caused by the request: when every attempt ends so, the client is told
    # (4xx), not that everything is down (503).
    THE_REQUEST = frozenset({"client_error", "context_length", "translation", "unsupported"})

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
    def short(self) -> str:
        """A few words for what happened ("connection refused", "HTTP 502"),
        for reasons such as "circuit open after 3 × connection refused"."""
        if self.status is not None and self.kind in ("server_error", "invalid_response"):
            return f"HTTP {self.status}"
        return _SHORT.get(self.kind, self.kind.replace("_", " "))

    @property
    def counts_against_backend(self) -> bool:
        """Does this failure say the backend is unwell (feeds its circuit)?"""
        return self.kind not in self.NOT_THE_BACKEND and self.kind != "rate_limited"


class TransportError(BackendError):
    """A failure below HTTP semantics (sockets, TLS, HTTP framing), as one of
    traywire's kinds; raised only by the transport (`traywire.proxy.transport`)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(kind, detail)
        self.detail = detail


_SHORT = {
    "refused": "connection refused",
    "dns": "DNS lookup failed",
    "reset": "connection reset",
    "first_byte_timeout": "no first byte in time",
    "total_timeout": "no answer in time",
    "idle_timeout": "the stream went silent",
    "invalid_response": "an invalid answer",
    "tls": "a TLS failure",
    "too_large": "an answer too large",
}
