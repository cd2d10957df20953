"""The configuration schema: YAML in, typed immutable objects out.

This is the only module that parses YAML. Layers are merged in order
(built-in default < the user's file in the platformdirs config dir <
``--config FILE``): mappings merge key by key, any other value replaces the one
below it, and ``null`` deletes an inherited entry. A layer that says
``extends: none`` starts from nothing instead of the layers below it.

Every error names the file, the line and the key path, and what was expected.
Unknown keys are errors. Cross-references (chains, routes, backends, groups)
are checked after merging.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NoReturn, TypeVar, cast

import yaml

from .errors import ConfigError
from .types import (
    BACKEND_KINDS,
    CAPABILITIES,
    LOCATIONS,
    PREFERENCES,
    STRATEGIES,
    TIERS,
    BackendKind,
    Capability,
    Location,
    Preference,
    Strategy,
    Tier,
)

APP_NAME = "traywire"
CONFIG_FILENAME = "traywire.yaml"
DEFAULT_PORT = 8484

Measure = Literal["prompt_tokens", "total_tokens"]
MEASURES: tuple[Measure, ...] = ("prompt_tokens", "total_tokens")

_T = TypeVar("_T")


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 3.0
    first_byte: float = 60.0
    idle: float = 30.0
    total: float = 600.0


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
    tier: Tier
    capabilities: tuple[Capability, ...]
    context: int

    @property
    def primary_capability(self) -> Capability:
        return self.capabilities[0]


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
    # Capability used when the classifier finds no signal, or is not sure enough.
    default: Capability = "chat"
    # Below this margin (winner's logit minus the runner-up's) `default` is used.
    min_margin: float = 0.5


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


@dataclass(frozen=True)
class Config:
    backends: Mapping[str, Backend]
    models: Mapping[str, Model]
    fallbacks: Mapping[str, tuple[str, ...]]
    routes: Mapping[str, Route]
    groups: Mapping[str, ExclusiveGroup]
    saturation: float = 0.8
    preference: Preference = "auto"
    server: ServerSettings = ServerSettings()
    health: HealthSettings = HealthSettings()
    principles: PrincipleSettings = PrincipleSettings()
    auto: AutoSettings = AutoSettings()
    log: LogSettings = LogSettings()
    sources: tuple[str, ...] = ()
    # Where each key path was defined: path -> "file:line" (for messages).
    origins: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def names(self) -> list[str]:
        """Every name a client can ask for: models, routes and ``auto``."""
        return sorted({*self.models, *self.routes, *(("auto",) if self.routes else ())})

    def where(self, path: str) -> str:
        return self.origins.get(path, "")


# --------------------------------------------------------------------------- loading


def default_config_text() -> str:
    return resources.files("traywire").joinpath("default.yaml").read_text(encoding="utf-8")


def user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILENAME


def load(config_file: str | Path | None = None, *, user_file: Path | bool | None = True) -> Config:
    """Load the layered configuration.

    ``user_file=True`` looks in the platformdirs config dir; a Path uses that
    file if it exists; ``False``/``None`` skips the user layer.
    """
    layers: list[tuple[str, str]] = [("<built-in default>", default_config_text())]
    if user_file is True:
        user_file = user_config_path()
    if isinstance(user_file, Path) and user_file.is_file():
        layers.append((str(user_file), _read(user_file)))
    if config_file is not None:
        layers.append((str(config_file), _read(Path(config_file))))
    return load_texts(layers)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc


def load_texts(layers: Iterable[tuple[str, str]]) -> Config:
    """Merge YAML texts (name, text) in order and build a validated Config."""
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    sources: list[str] = []
    for name, text in layers:
        data, marks = _parse(name, text)
        if data.get("extends", "default") in ("none", None):
            merged, origins = {}, {}
        elif data.get("extends", "default") != "default":
            _fail(marks, name, ("extends",), "expected 'default' or 'none'")
        data.pop("extends", None)
        _merge(merged, data, (), origins, marks)
        sources.append(name)
    return _Builder(merged, origins, tuple(sources)).build()


def _parse(name: str, text: str) -> tuple[dict[str, Any], dict[tuple[Any, ...], str]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc
    marks: dict[tuple[Any, ...], str] = {}
    if node is None:
        return {}, marks
    value = _to_python(node, (), name, marks)
    if not isinstance(value, dict):
        raise ConfigError(f"{name}:{node.start_mark.line + 1}: expected a mapping at the top level")
    return value, marks


_constructor = yaml.SafeLoader("")


def _to_python(
    node: yaml.Node, path: tuple[Any, ...], name: str, marks: dict[tuple[Any, ...], str]
) -> Any:
    marks[path] = f"{name}:{node.start_mark.line + 1}"
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _constructor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                where = f"{name}:{key_node.start_mark.line + 1}"
                raise ConfigError(f"{where} {format_path(path)}: keys must be scalars")
            key = str(key)
            if key in out:
                where = f"{name}:{key_node.start_mark.line + 1}"
                raise ConfigError(f"{where} {format_path((*path, key))}: duplicate key")
            out[key] = _to_python(value_node, (*path, key), name, marks)
            # An entry is located at its key, not at where its value starts.
            marks[(*path, key)] = f"{name}:{key_node.start_mark.line + 1}"
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, i), name, marks) for i, v in enumerate(node.value)]
    return _constructor.construct_object(node, deep=True)


def _merge(
    into: dict[str, Any],
    data: dict[str, Any],
    path: tuple[Any, ...],
    origins: dict[str, str],
    marks: dict[tuple[Any, ...], str],
) -> None:
    for key, value in data.items():
        p = (*path, key)
        if value is None:
            into.pop(key, None)
            for k in [
                k for k in origins if k == format_path(p) or k.startswith(format_path(p) + ".")
            ]:
                del origins[k]
            continue
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            origins.setdefault(format_path(p), marks.get(p, ""))
            _merge(into[key], value, p, origins, marks)
        else:
            into[key] = value
            for sub, where in marks.items():
                if sub[: len(p)] == p:
                    origins[format_path(sub)] = where


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


def _fail(
    marks: Mapping[tuple[Any, ...], str], name: str, path: tuple[Any, ...], msg: str
) -> NoReturn:
    raise ConfigError(f"{marks.get(path, name)} {format_path(path)}: {msg}")


# --------------------------------------------------------------------------- building


class _Builder:
    def __init__(self, data: dict[str, Any], origins: dict[str, str], sources: tuple[str, ...]):
        self.data = data
        self.origins = origins
        self.sources = sources

    # -- reporting
    def where(self, path: tuple[Any, ...]) -> str:
        p = path
        while True:
            found = self.origins.get(format_path(p))
            if found:
                return found
            if not p:
                return self.sources[-1] if self.sources else "<config>"
            p = p[:-1]

    def fail(self, path: tuple[Any, ...], msg: str) -> NoReturn:
        raise ConfigError(f"{self.where(path)} {format_path(path) or '<top level>'}: {msg}")

    # -- typed readers
    def mapping(
        self,
        value: Any,
        path: tuple[Any, ...],
        allowed: Iterable[str],
        required: Iterable[str] = (),
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {_kind(value)}")
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.fail(
                    (*path, key), f"unknown key{extra}; expected one of: {', '.join(allowed)}"
                )
        for key in required:
            if key not in value:
                self.fail(path, f"missing required key {key!r}")
        return value

    def string(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {_kind(value)}")
        return value

    def choice(self, value: Any, path: tuple[Any, ...], options: tuple[_T, ...]) -> _T:
        if value not in options:
            hint = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.fail(
                path,
                f"{value!r} is not one of: {', '.join(str(o) for o in options)}{extra}",
            )
        return cast(_T, value)

    def number(
        self,
        value: Any,
        path: tuple[Any, ...],
        *,
        low: float | None = None,
        high: float | None = None,
        integer: bool = False,
        low_open: bool = False,
    ) -> float:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            self.fail(
                path, f"expected {'an integer' if integer else 'a number'}, got {_kind(value)}"
            )
        if low is not None and (value <= low if low_open else value < low):
            self.fail(path, f"must be {'>' if low_open else '>='} {low}, got {value}")
        if high is not None and value > high:
            self.fail(path, f"must be <= {high}, got {value}")
        return float(value)

    def boolean(self, value: Any, path: tuple[Any, ...]) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def key_ref(self, value: Any, path: tuple[Any, ...]) -> str:
        text = self.string(value, path)
        if not re.fullmatch(r"(keyring|env):[A-Za-z0-9_.\-]+", text):
            self.fail(
                path,
                "expected a key reference 'keyring:NAME' or 'env:VAR', never the key itself "
                "(store a key with: traywire keys set NAME)",
            )
        return text

    # -- sections
    def build(self) -> Config:
        d = self.mapping(
            self.data,
            (),
            (
                "version",
                "preference",
                "saturation",
                "server",
                "health",
                "defaults",
                "principles",
                "auto",
                "backends",
                "exclusive_groups",
                "models",
                "fallbacks",
                "routes",
                "log",
            ),
            ("backends", "models"),
        )
        if "version" in d and d["version"] != 1:
            self.fail(("version",), f"unsupported config version {d['version']!r}; expected 1")
        defaults = self.mapping(d.get("defaults", {}), ("defaults",), ("timeouts",))
        base_timeouts = self.timeouts(
            defaults.get("timeouts", {}), ("defaults", "timeouts"), Timeouts()
        )
        backends = {
            name: self.backend(name, spec, base_timeouts)
            for name, spec in self.mapping(d["backends"], ("backends",), d["backends"]).items()
        }
        if not backends:
            self.fail(("backends",), "at least one backend is required")
        groups = self.groups(d.get("exclusive_groups", {}), backends)
        models = {
            name: self.model(name, spec, backends)
            for name, spec in self.mapping(d["models"], ("models",), d["models"]).items()
        }
        fallbacks = self.fallbacks(d.get("fallbacks", {}), models)
        routes = {
            name: self.route(name, spec, models)
            for name, spec in self.mapping(
                d.get("routes", {}), ("routes",), d.get("routes", {})
            ).items()
        }
        for name in routes:
            if name in models:
                self.fail(("routes", name), f"route name {name!r} is also a model name")
            if name == "auto":
                self.fail(("routes", name), "'auto' is reserved (it classifies, then routes)")
        auto = self.auto(d.get("auto", {}), routes)
        server_spec = self.mapping(
            d.get("server", {}),
            ("server",),
            ("host", "port", "token", "max_body_mb", "report_model"),
        )
        server = ServerSettings(
            host=self.string(server_spec.get("host", "127.0.0.1"), ("server", "host")),
            port=int(
                self.number(
                    server_spec.get("port", DEFAULT_PORT),
                    ("server", "port"),
                    low=1,
                    high=65535,
                    integer=True,
                )
            ),
            token=(
                self.key_ref(server_spec["token"], ("server", "token"))
                if server_spec.get("token") is not None
                else None
            ),
            max_body_mb=self.number(
                server_spec.get("max_body_mb", 32), ("server", "max_body_mb"), low=0, low_open=True
            ),
            report_model=self.choice(
                server_spec.get("report_model", "requested"),
                ("server", "report_model"),
                ("requested", "served", "upstream"),
            ),
        )
        h = self.mapping(
            d.get("health", {}),
            ("health",),
            ("probe_interval", "failure_threshold", "cooldown", "usage_window"),
        )
        health = HealthSettings(
            probe_interval=self.number(
                h.get("probe_interval", 10), ("health", "probe_interval"), low=0, low_open=True
            ),
            failure_threshold=int(
                self.number(
                    h.get("failure_threshold", 3),
                    ("health", "failure_threshold"),
                    low=1,
                    integer=True,
                )
            ),
            cooldown=self.number(h.get("cooldown", 30), ("health", "cooldown"), low=0),
            usage_window=self.number(
                h.get("usage_window", 3600), ("health", "usage_window"), low=0, low_open=True
            ),
        )
        p = self.mapping(d.get("principles", {}), ("principles",), ("max_first_hop_drop",))
        principles = PrincipleSettings(
            max_first_hop_drop=self.number(
                p.get("max_first_hop_drop", 0.5),
                ("principles", "max_first_hop_drop"),
                low=0,
                high=1,
            )
        )
        log = self.log_settings(d.get("log", {}))
        return Config(
            backends=MappingProxyType(backends),
            models=MappingProxyType(models),
            fallbacks=MappingProxyType(fallbacks),
            routes=MappingProxyType(routes),
            groups=MappingProxyType(groups),
            saturation=self.number(
                d.get("saturation", 0.8), ("saturation",), low=0, high=1, low_open=True
            ),
            preference=self.choice(d.get("preference", "auto"), ("preference",), PREFERENCES),
            server=server,
            health=health,
            principles=principles,
            auto=auto,
            log=log,
            sources=self.sources,
            origins=MappingProxyType(dict(self.origins)),
        )

    def log_settings(self, spec: Any) -> LogSettings:
        s = self.mapping(spec, ("log",), ("enabled", "max_age_days", "max_requests", "path"))
        return LogSettings(
            enabled=self.boolean(s.get("enabled", True), ("log", "enabled")),
            max_age_days=self.number(
                s.get("max_age_days", 30), ("log", "max_age_days"), low=0, low_open=True
            ),
            max_requests=int(
                self.number(
                    s.get("max_requests", 50000), ("log", "max_requests"), low=1, integer=True
                )
            ),
            path=self.string(s["path"], ("log", "path")) if s.get("path") is not None else None,
        )

    def timeouts(self, spec: Any, path: tuple[Any, ...], base: Timeouts) -> Timeouts:
        s = self.mapping(spec, path, ("connect", "first_byte", "idle", "total"))
        vals = {
            k: self.number(s[k], (*path, k), low=0, low_open=True) if k in s else getattr(base, k)
            for k in ("connect", "first_byte", "idle", "total")
        }
        return Timeouts(**vals)

    def backend(self, name: str, spec: Any, base: Timeouts) -> Backend:
        path = ("backends", name)
        s = self.mapping(
            spec,
            path,
            (
                "kind",
                "url",
                "location",
                "capacity",
                "key",
                "timeouts",
                "enabled",
                "exclusive_group",
                "single_model",
            ),
            ("kind", "url", "location"),
        )
        url = self.string(s["url"], (*path, "url")).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", url):
            self.fail((*path, "url"), f"expected an http:// or https:// URL, got {url!r}")
        return Backend(
            name=name,
            kind=self.choice(s["kind"], (*path, "kind"), BACKEND_KINDS),
            url=url,
            location=self.choice(s["location"], (*path, "location"), LOCATIONS),
            capacity=int(
                self.number(s.get("capacity", 4), (*path, "capacity"), low=1, integer=True)
            ),
            key=self.key_ref(s["key"], (*path, "key")) if s.get("key") is not None else None,
            timeouts=self.timeouts(s.get("timeouts", {}), (*path, "timeouts"), base),
            enabled=self.boolean(s.get("enabled", True), (*path, "enabled")),
            single_model=self.boolean(s.get("single_model", False), (*path, "single_model")),
            exclusive_group=(
                self.string(s["exclusive_group"], (*path, "exclusive_group"))
                if s.get("exclusive_group") is not None
                else None
            ),
        )

    def groups(self, spec: Any, backends: Mapping[str, Backend]) -> dict[str, ExclusiveGroup]:
        declared = self.mapping(spec, ("exclusive_groups",), spec if isinstance(spec, dict) else ())
        members: dict[str, list[str]] = {}
        for b in backends.values():
            if b.exclusive_group:
                members.setdefault(b.exclusive_group, []).append(b.name)
        out: dict[str, ExclusiveGroup] = {}
        for name, g in declared.items():
            path = ("exclusive_groups", name)
            g = self.mapping(g, path, ("active", "switch"))
            if name not in members:
                self.fail(path, f"no backend names exclusive_group {name!r}")
            active = self.string(g.get("active", members[name][0]), (*path, "active"))
            if active not in members[name]:
                self.fail(
                    (*path, "active"),
                    f"{active!r} is not a member of group {name!r}; members: "
                    + ", ".join(members[name]),
                )
            switch = (
                self.group_switch(g["switch"], (*path, "switch"), tuple(members[name]))
                if g.get("switch") is not None
                else None
            )
            out[name] = ExclusiveGroup(name, tuple(members[name]), active, switch)
        for name, mem in members.items():
            out.setdefault(name, ExclusiveGroup(name, tuple(mem), mem[0]))
        return out

    def group_switch(
        self, spec: Any, path: tuple[Any, ...], members: tuple[str, ...]
    ) -> SwitchSettings:
        only = {
            "commands": ("stop", "start", "aliases", "command_timeout"),
            "managed": ("serve", "stop_timeout"),
        }
        s = self.mapping(
            spec,
            path,
            ("mode", *only["commands"], *only["managed"], "cwd", "drain_timeout", "ready_timeout"),
            ("mode",),
        )
        mode = self.choice(s["mode"], (*path, "mode"), SWITCH_MODES)
        for other, keys in only.items():
            for key in keys:
                if other != mode and key in s:
                    self.fail((*path, key), f"only used with mode {other} (this group's is {mode})")
        stop: tuple[str, ...] = ()
        start: tuple[str, ...] = ()
        aliases: dict[str, str] = {}
        serve: dict[str, tuple[str, ...]] = {}
        if mode == "commands":
            if "start" not in s:
                self.fail(path, "mode commands needs 'start': a list, the program then arguments")
            start = self.argv(s["start"], (*path, "start"), placeholders=True)
            if s.get("stop") is not None:
                stop = self.argv(s["stop"], (*path, "stop"), placeholders=True)
            a = self.mapping(s.get("aliases", {}), (*path, "aliases"), members)
            aliases = {m: self.string(v, (*path, "aliases", m)) for m, v in a.items()}
        else:
            if "serve" not in s:
                self.fail(path, "mode managed needs 'serve': each member's server command")
            sv = self.mapping(s["serve"], (*path, "serve"), members, members)
            for m, v in sv.items():
                serve[m] = self.argv(v, (*path, "serve", m), placeholders=False)
        where = self.where(path).rsplit(":", 1)[0]
        base = Path(where).resolve().parent if Path(where).is_file() else None
        cwd = str(base) if base is not None else None
        if s.get("cwd") is not None:
            given = Path(self.string(s["cwd"], (*path, "cwd"))).expanduser()
            cwd = str(base / given if base is not None and not given.is_absolute() else given)

        def seconds(key: str, default: float) -> float:
            return self.number(s.get(key, default), (*path, key), low=0, low_open=True)

        return SwitchSettings(
            mode=mode,
            stop=stop,
            start=start,
            aliases=MappingProxyType(aliases),
            serve=MappingProxyType(serve),
            cwd=cwd,
            drain_timeout=seconds("drain_timeout", 30.0),
            ready_timeout=seconds("ready_timeout", 300.0),
            command_timeout=seconds("command_timeout", 120.0),
            stop_timeout=seconds("stop_timeout", 30.0),
        )

    def argv(self, value: Any, path: tuple[Any, ...], *, placeholders: bool) -> tuple[str, ...]:
        import string

        if not isinstance(value, list) or not value:
            self.fail(
                path,
                "expected a non-empty list: the program, then its arguments (no shell), "
                f"got {_kind(value)}",
            )
        out: list[str] = []
        for i, item in enumerate(value):
            p = (*path, i)
            if isinstance(item, bool) or not isinstance(item, str | int):
                self.fail(p, f"expected a string, got {_kind(item)}")
            text = str(item)
            if placeholders:
                known = ", ".join("{" + n + "}" for n in SWITCH_PLACEHOLDERS)
                try:
                    fields = [f for f in string.Formatter().parse(text) if f[1] is not None]
                except ValueError as exc:
                    self.fail(p, f"{text!r}: {exc} (write {{{{ and }}}} for literal braces)")
                for _, fname, fspec, conv in fields:
                    if fname not in SWITCH_PLACEHOLDERS or fspec or conv:
                        self.fail(p, f"unknown placeholder in {text!r}; expected one of: {known}")
            out.append(text)
        if not out[0]:
            self.fail((*path, 0), "expected a program name, got an empty string")
        return tuple(out)

    def model(self, name: str, spec: Any, backends: Mapping[str, Backend]) -> Model:
        path = ("models", name)
        s = self.mapping(
            spec,
            path,
            ("backend", "upstream", "params_b", "tier", "capabilities", "context"),
            ("backend", "params_b", "tier", "capabilities", "context"),
        )
        backend = self.string(s["backend"], (*path, "backend"))
        if backend not in backends:
            self.fail(
                (*path, "backend"),
                f"undefined backend {backend!r}; defined: " + ", ".join(sorted(backends)),
            )
        caps = s["capabilities"]
        if not isinstance(caps, list) or not caps:
            self.fail((*path, "capabilities"), "expected a non-empty list of capabilities")
        capabilities = tuple(
            self.choice(c, (*path, "capabilities", i), CAPABILITIES) for i, c in enumerate(caps)
        )
        return Model(
            name=name,
            backend=backend,
            upstream=self.string(s.get("upstream", name), (*path, "upstream")),
            params_b=self.number(s["params_b"], (*path, "params_b"), low=0, low_open=True),
            tier=self.choice(s["tier"], (*path, "tier"), TIERS),
            capabilities=capabilities,
            context=int(self.number(s["context"], (*path, "context"), low=1, integer=True)),
        )

    def model_ref(self, value: Any, path: tuple[Any, ...], models: Mapping[str, Model]) -> str:
        name = self.string(value, path)
        if name not in models:
            hint = difflib.get_close_matches(name, list(models), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.fail(path, f"undefined model {name!r}{extra}")
        return name

    def fallbacks(self, spec: Any, models: Mapping[str, Model]) -> dict[str, tuple[str, ...]]:
        s = self.mapping(spec, ("fallbacks",), spec if isinstance(spec, dict) else ())
        out: dict[str, tuple[str, ...]] = {}
        for name, chain in s.items():
            path = ("fallbacks", name)
            self.model_ref(name, path, models)
            if not isinstance(chain, list):
                self.fail(path, f"expected a list of model names, got {_kind(chain)}")
            seen: set[str] = {name}
            items: list[str] = []
            for i, item in enumerate(chain):
                m = self.model_ref(item, (*path, i), models)
                if m in seen:
                    self.fail(
                        (*path, i), f"{m!r} appears twice in this chain (or is its own fallback)"
                    )
                seen.add(m)
                items.append(m)
            out[name] = tuple(items)
        return out

    def candidates(
        self, spec: Any, path: tuple[Any, ...], models: Mapping[str, Model]
    ) -> tuple[Candidate, ...]:
        if not isinstance(spec, list) or not spec:
            self.fail(path, "a route needs at least one candidate (a non-empty list)")
        out: list[Candidate] = []
        for i, item in enumerate(spec):
            p = (*path, i)
            if isinstance(item, dict):
                c = self.mapping(item, p, ("model", "weight"), ("model",))
                out.append(
                    Candidate(
                        self.model_ref(c["model"], (*p, "model"), models),
                        self.number(c.get("weight", 1), (*p, "weight"), low=0),
                    )
                )
            else:
                out.append(Candidate(self.model_ref(item, p, models)))
        names = [c.model for c in out]
        for i, n in enumerate(names):
            if n in names[:i]:
                self.fail((*path, i), f"{n!r} is listed twice")
        return tuple(out)

    def route(self, name: str, spec: Any, models: Mapping[str, Model]) -> Route:
        path = ("routes", name)
        s = self.mapping(
            spec,
            path,
            ("strategy", "candidates", "bands", "measure", "headroom", "description"),
            ("strategy",),
        )
        strategy = self.choice(s["strategy"], (*path, "strategy"), STRATEGIES)
        if "candidates" not in s:
            self.fail(path, "a route needs at least one candidate: missing key 'candidates'")
        candidates = self.candidates(s["candidates"], (*path, "candidates"), models)
        bands: list[Band] = []
        if "bands" in s:
            raw = s["bands"]
            if not isinstance(raw, list) or not raw:
                self.fail((*path, "bands"), "expected a non-empty list of bands")
            last: int | None = -1
            for i, b in enumerate(raw):
                bp = (*path, "bands", i)
                b = self.mapping(b, bp, ("label", "upto", "candidates"), ("candidates",))
                upto = (
                    int(self.number(b["upto"], (*bp, "upto"), low=0, integer=True))
                    if b.get("upto") is not None
                    else None
                )
                if last is None:
                    self.fail(bp, "a band after an unbounded band (upto: null) is unreachable")
                if upto is not None and upto <= last:
                    self.fail((*bp, "upto"), f"bands must be in increasing order; {upto} <= {last}")
                last = upto
                bands.append(
                    Band(
                        label=str(b.get("label", f"band {i + 1}")),
                        upto=upto,
                        candidates=self.candidates(b["candidates"], (*bp, "candidates"), models),
                    )
                )
            if last is not None:
                self.fail((*path, "bands"), "the last band must be unbounded (omit 'upto')")
        elif strategy == "complexity_based":
            self.fail((*path, "strategy"), "strategy complexity_based needs 'bands'")
        return Route(
            name=name,
            strategy=strategy,
            candidates=candidates,
            bands=tuple(bands),
            measure=self.choice(s.get("measure", "prompt_tokens"), (*path, "measure"), MEASURES),
            headroom=self.number(s.get("headroom", 0.0), (*path, "headroom"), low=0, high=0.9),
            description=str(s.get("description", "")),
        )

    def auto(self, spec: Any, routes: Mapping[str, Route]) -> AutoSettings:
        s = self.mapping(spec, ("auto",), ("default", "min_margin"))
        default = self.choice(s.get("default", "chat"), ("auto", "default"), CAPABILITIES)
        min_margin = self.number(
            s.get("min_margin", AutoSettings().min_margin), ("auto", "min_margin"), low=0, high=20
        )
        if routes and default not in routes:
            self.fail(
                ("auto", "default"),
                f"no route named {default!r}; 'auto' falls back to it "
                "when a request's class has no route of its own",
            )
        return AutoSettings(default=default, min_margin=min_margin)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"
