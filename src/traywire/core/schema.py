"""The configuration as the router and the rest of traywire read it: frozen
dataclasses and the constants they use.

Pure: standard library and `traywire.types` only. Reading, layering and
validating YAML into these objects is `traywire.config`'s job; the routing
core imports this module, never that package (it would pull in yaml).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ..types import BackendKind, Capability, Feature, Location, Preference, Strategy, Tier
from .classify import Classifier as ClassifierModel

APP_NAME = "traywire"
DEFAULT_PORT = 8484

Measure = Literal["prompt_tokens", "total_tokens"]
MEASURES: tuple[Measure, ...] = ("prompt_tokens", "total_tokens")


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 3.0
    first_byte: float = 60.0
    idle: float = 30.0
    total: float = 600.0
    # A stream's whole life, however it keeps flowing (keep-alive comments
    # included): generous, a bound against a stream that never ends.
    stream: float = 3600.0


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    kind: BackendKind
    url: str
    location: Location
    capacity: int
    key: str | None
    timeouts: Timeouts
    enabled: bool = True
    exclusive_group: str | None = None
    # The server answers with its one model whatever name is asked for
    # (llama.cpp): the probe does not check which models it lists.
    single_model: bool = False


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    backend: str
    upstream: str
    params_b: float
    # Shown by `traywire route` and the dashboard; the router does not read it.
    tier: Tier
    # Use cases (empty for a model that only makes embeddings).
    capabilities: tuple[Capability, ...]
    context: int
    # What the model can do (chat, completion, embed, vision, tools, json).
    features: frozenset[Feature] = frozenset({"chat", "completion", "tools", "json"})
    # True: ``features`` is declared in the config and wins over what a server
    # says; False: a kind's default, which a probe's or an answer's word replaces.
    features_declared: bool = False

    @property
    def primary_capability(self) -> Capability:
        return self.capabilities[0] if self.capabilities else "chat"


@dataclass(frozen=True, slots=True)
class Candidate:
    model: str
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class Band:
    label: str
    # Inclusive upper bound of the band's measure; None: no upper bound.
    upto: int | None
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    strategy: Strategy
    candidates: tuple[Candidate, ...]
    bands: tuple[Band, ...] = ()
    measure: Measure = "prompt_tokens"
    # context_based: share of a window kept free for the reply and framing.
    headroom: float = 0.0
    # Shown by `traywire route` and the dashboard.
    description: str = ""


SwitchMode = Literal["commands", "managed"]
SWITCH_MODES: tuple[SwitchMode, ...] = ("commands", "managed")
# What a switch command's arguments may name ({{ and }} are literal braces):
# the group, the member the command acts on, its alias, its backend's port.
SWITCH_PLACEHOLDERS: tuple[str, ...] = ("group", "member", "member_alias", "port")


@dataclass(frozen=True, slots=True)
class SwitchSettings:
    """How traywire stops and starts the servers of an exclusive group."""

    mode: SwitchMode
    # commands: argv run to stop the old member and to start the new one.
    stop: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    # member -> the name the commands know it by ({member_alias}; default: the member).
    aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # managed: member -> argv of the server traywire runs itself (used as written).
    serve: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # Working directory of the commands and servers; None: traywire's own.
    cwd: str | None = None
    drain_timeout: float = 30.0
    ready_timeout: float = 300.0
    command_timeout: float = 120.0
    stop_timeout: float = 30.0

    def alias(self, member: str) -> str:
        return self.aliases.get(member, member)


@dataclass(frozen=True, slots=True)
class ExclusiveGroup:
    name: str
    members: tuple[str, ...]
    active: str
    # None: traywire only changes which member is routed to, it starts nothing.
    switch: SwitchSettings | None = None


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # Key reference (keyring:NAME / env:VAR) of the bearer token clients must
    # send; required when host is not a loopback address.
    token: str | None = None
    max_body_mb: float = 32.0
    # The `model` field in answers: the name the client asked for (requested),
    # the public name of the model that served (served), or the backend's own
    # id for it (upstream).
    report_model: str = "requested"
    # A backend's whole (not streamed) answer is read up to this size, decoded.
    max_answer_mb: float = 64.0
    # Seconds a client has to send its request head (and the longest idle
    # keep-alive between requests); connections at once, past which new ones
    # get 503 (also bounded by the open-file limit).
    head_timeout: float = 30.0
    max_connections: int = 1024


@dataclass(frozen=True, slots=True)
class HealthSettings:
    probe_interval: float = 10.0
    failure_threshold: int = 3
    cooldown: float = 30.0
    usage_window: float = 3600.0


@dataclass(frozen=True, slots=True)
class PrincipleSettings:
    # Warn when a chain's first hop keeps less than this share of parameters
    # while a cloud alternative of at least the same size exists.
    max_first_hop_drop: float = 0.5


@dataclass(frozen=True, slots=True)
class AutoSettings:
    # The use case taken when the classifier is unsure (see min_margin).
    default: Capability = "chat"
    # The winner's logit margin over the runner-up below which `default` is taken.
    min_margin: float = 0.25
    # The trained classifier (`traywire.config` reads it from the package).
    classifier: ClassifierModel | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LogSettings:
    """The request log (one SQLite row per request; no prompt or answer text)."""

    enabled: bool = True
    # Rows older than this are deleted.
    max_age_days: float = 30.0
    # At most this many requests are kept (the oldest go first).
    max_requests: int = 50000
    # The SQLite file; None: requests.sqlite3 in the platformdirs data dir.
    path: str | None = None


@dataclass(frozen=True, slots=True)
class SharedStateSettings:
    """Several instances share one view of the backends through Redis (or
    Valkey): in-flight counts, usage, circuits, latencies. ``url`` None: off."""

    # redis://HOST:PORT/DB or rediss:// (TLS); never holds the password.
    url: str | None = None
    # Key reference (keyring:NAME / env:VAR) of the server's password.
    password: str | None = None
    # Also share the routing preference and the exclusive groups' active members.
    share_preference: bool = False
    # Seconds an instance's in-flight counts outlive it (it renews them each tick).
    lease: float = 3.0
    # Seconds between two exchanges with the server (the view's staleness bound
    # is about twice this).
    interval: float = 0.05


@dataclass(frozen=True, slots=True)
class Aliases:
    """Names apps hard-code (``gpt-4o``, ``claude-sonnet-4-5``), mapped to a
    model or a route. ``exact`` wins over ``patterns``, which are tried in
    order (``*`` any run of characters, ``?`` one); ``unknown`` is where a name
    nothing matches goes (None: refused with 404, naming what there is)."""

    exact: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    patterns: tuple[tuple[str, str], ...] = ()
    unknown: str | None = None


@dataclass(frozen=True)
class Config:
    backends: Mapping[str, Backend]
    models: Mapping[str, Model]
    fallbacks: Mapping[str, tuple[str, ...]]
    routes: Mapping[str, Route]
    groups: Mapping[str, ExclusiveGroup]
    saturation: float = 0.8
    preference: Preference = "auto"
    # The most attempts a plan holds (the first ones in the router's order).
    max_attempts: int = 16
    server: ServerSettings = ServerSettings()
    health: HealthSettings = HealthSettings()
    principles: PrincipleSettings = PrincipleSettings()
    auto: AutoSettings = AutoSettings()
    log: LogSettings = LogSettings()
    aliases: Aliases = Aliases()
    shared_state: SharedStateSettings = SharedStateSettings()
    sources: tuple[str, ...] = ()
    # Where each key path was defined: path -> "file:line" (for messages).
    origins: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def names(self) -> list[str]:
        """Every name a client can ask for: models, routes and ``auto``, and
        the exact alias names."""
        return sorted(
            {*self.models, *self.routes, *(("auto",) if self.routes else ()), *self.aliases.exact}
        )

    def where(self, path: str) -> str:
        return self.origins.get(path, "")


_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def format_path(path: Iterable[Any]) -> str:
    """A key path as errors print it: routes.code.bands[0], models["llama3.1:latest"]."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE.match(part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out
