"""The small contracts the rest of traywire is written against.

Everything here is immutable plain data: the router reads it, the proxy and
the tray pass it between threads without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

Capability = Literal["code", "reasoning", "analytical", "creative", "chat"]
CAPABILITIES: tuple[Capability, ...] = ("code", "reasoning", "analytical", "creative", "chat")

Location = Literal["local", "cloud"]
LOCATIONS: tuple[Location, ...] = ("local", "cloud")

Tier = Literal["cloud_premium", "cloud_standard", "cloud_entry", "local"]
TIERS: tuple[Tier, ...] = ("cloud_premium", "cloud_standard", "cloud_entry", "local")

Preference = Literal["auto", "prefer_local", "prefer_cloud", "local_only", "cloud_only"]
PREFERENCES: tuple[Preference, ...] = (
    "auto",
    "prefer_local",
    "prefer_cloud",
    "local_only",
    "cloud_only",
)

Strategy = Literal[
    "direct",
    "weighted",
    "least_loaded",
    "fastest_response",
    "usage_based",
    "most_capacity",
    "context_based",
    "complexity_based",
]
STRATEGIES: tuple[Strategy, ...] = (
    "direct",
    "weighted",
    "least_loaded",
    "fastest_response",
    "usage_based",
    "most_capacity",
    "context_based",
    "complexity_based",
)

BackendKind = Literal["ollama", "openai"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("ollama", "openai")

Circuit = Literal["closed", "open", "half_open"]

# The wire dialect of a request body and of a backend kind.
Dialect = Literal["openai", "ollama"]
# The API a client speaks: the two dialects, and two more translated to and
# from OpenAI chat at the edge (Anthropic Messages, OpenAI Responses).
Front = Literal["openai", "ollama", "anthropic", "responses"]
# What the client asked for: chat, a plain completion (OpenAI /v1/completions,
# Ollama /api/generate) or embeddings.
Op = Literal["chat", "completion", "embed"]
# What a model can do, and what a request may need from it.
Feature = Literal["chat", "completion", "embed", "vision", "tools", "json"]
FEATURES: tuple[Feature, ...] = ("chat", "completion", "embed", "vision", "tools", "json")
# How a missing feature reads in a plan ("no vision").
FEATURE_WORDS: Mapping[Feature, str] = MappingProxyType(
    {
        "chat": "chat",
        "completion": "plain completions",
        "embed": "embeddings",
        "vision": "vision (image input)",
        "tools": "tool calling",
        "json": "JSON output",
    }
)

# The request kinds the router tells apart (an Op, named for people).
RequestKind = Literal["chat", "completion", "embedding"]
KIND_OF_OP: Mapping[Op, RequestKind] = MappingProxyType(
    {"chat": "chat", "completion": "completion", "embed": "embedding"}
)

# How a request ended, decided once when its record is made (`outcome_of`):
#   served        a backend answered in full
#   failed        every attempt failed (or the plan was empty)
#   client_error  the client's own error (a 4xx other than 429), not failed over
#   cut           the stream broke after it had started
#   cancelled     the client went away before the answer was complete
Outcome = Literal["served", "failed", "client_error", "cut", "cancelled"]
OUTCOMES: tuple[Outcome, ...] = ("served", "failed", "client_error", "cut", "cancelled")


class RouteRequest(NamedTuple):
    """What the router needs to know about one request, whatever its dialect:
    what it asks for and what it needs from the model that serves it."""

    model: str
    # The prompt text the model will read (system + user + assistant turns joined).
    prompt: str
    # The last user turn alone: what `auto` classifies.
    last_user: str = ""
    # The reply budget the client asked for (max_tokens / num_predict), if any.
    max_tokens: int | None = None
    # Number of messages (each costs a few tokens of framing).
    messages: int = 1
    kind: RequestKind = "chat"
    # Input images (content parts or Ollama ``images``).
    images: int = 0
    # The request offers tools (function calling).
    tools: bool = False
    # The answer must be JSON (response_format json_object/json_schema, Ollama format).
    structured: bool = False


class BackendState(NamedTuple):
    """Live state of one backend, as measured by the proxy."""

    in_flight: int = 0
    circuit: Circuit = "closed"
    # Smoothed latency (ms) of recent requests or probes; None if never measured.
    latency_ms: float | None = None
    # A cloud backend whose key reference resolves to nothing.
    no_key: bool = False
    # The probe saw the server up but not serving this upstream model (e.g. a
    # vLLM started with another model). Models listed here are skipped.
    missing_models: frozenset[str] = frozenset()


class LiveState(NamedTuple):
    """An immutable snapshot of everything the router reads that changes at run time.

    Time and randomness come in here, so a decision is a pure function.
    """

    backends: Mapping[str, BackendState] = MappingProxyType({})
    # Exclusive group -> name of its active member (default: from the config).
    active: Mapping[str, str] = MappingProxyType({})
    # Tokens served per public model name in the usage window.
    usage: Mapping[str, int] = MappingProxyType({})
    # Overrides the config's default preference (set from the tray/admin API).
    preference: Preference | None = None
    # A uniform number in [0, 1) drawn by the caller, for weighted choices.
    random: float = 0.0
    # What running servers said of models whose features the config does not
    # declare: public model name -> features it has (a probe's list) ...
    features: Mapping[str, frozenset[Feature]] = MappingProxyType({})
    # ... and -> features it turned out to lack (it answered "not supported").
    lacks: Mapping[str, frozenset[Feature]] = MappingProxyType({})


class Attempt(NamedTuple):
    """One step of a plan: send the request to `upstream_model` on `backend`."""

    model: str
    backend: str
    upstream_model: str
    reason: str


class Skip(NamedTuple):
    """A candidate the router left out of the plan, and why."""

    model: str
    backend: str
    reason: str


class Decision(NamedTuple):
    requested: str
    capability: Capability | None
    prompt_tokens: int
    route: str | None
    strategy: Strategy | None
    preference: Preference
    plan: tuple[Attempt, ...]
    skipped: tuple[Skip, ...]
    # Why the plan looks the way it does (e.g. why it is empty).
    note: str = ""
    # What the request needs that no model left in the plan can do (an empty
    # plan for this reason is the client's error, not an outage).
    unmet: tuple[Feature, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "capability": self.capability,
            "prompt_tokens": self.prompt_tokens,
            "route": self.route,
            "strategy": self.strategy,
            "preference": self.preference,
            "plan": [a._asdict() for a in self.plan],
            "skipped": [s._asdict() for s in self.skipped],
            "note": self.note,
            "unmet": list(self.unmet),
        }


class AttemptRecord(NamedTuple):
    """What happened to one step of a plan."""

    model: str
    backend: str
    # "served", "failed", "skipped" or "cancelled" (the client went away, or
    # traywire stopped, while it was under way)
    outcome: str
    error: str = ""
    kind: str = ""  # traywire error kind, for failures
    ms: float = 0.0


class RequestRecord(NamedTuple):
    """One request the proxy handled, for the request log and the metrics.

    Immutable; handed to observers after the response is complete. Carries no
    prompt or answer text and never a key.
    """

    ts: float  # wall-clock seconds (time.time()) at arrival
    dialect: str  # the API the client spoke: "openai", "ollama", "anthropic", "responses"
    endpoint: str  # request path
    requested: str
    capability: str | None
    strategy: str | None
    route: str | None
    preference: str
    prompt_tokens: int
    stream: bool
    plan: tuple[Attempt, ...]
    skipped: tuple[Skip, ...]
    attempts: tuple[AttemptRecord, ...]
    served_model: str | None
    served_backend: str | None
    status: int
    ttfb_ms: float | None
    total_ms: float
    tokens_in: int
    tokens_out: int
    # how it ended, from the fields above and below: see `outcome_of`
    outcome: Outcome
    error: str = ""
    # the stream broke after it had started (the client got an error event)
    cut: bool = False
    # the client went away before the answer was complete
    client_gone: bool = False


def outcome_of(
    *,
    served: bool,
    status: int,
    attempts: tuple[AttemptRecord, ...],
    cut: bool = False,
    client_gone: bool = False,
) -> Outcome:
    """How a request ended (`Outcome`), from what its record says; called once,
    where the record is made."""
    if client_gone:
        return "cancelled"
    if cut:
        return "cut"
    if served:
        return "served"
    last_kind = attempts[-1].kind if attempts else ""
    if last_kind == "client_error" or (400 <= status < 500 and status != 429):
        return "client_error"
    return "failed"
