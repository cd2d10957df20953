"""Merged config data → a validated `Config`: each section, then the
cross-references between them (chains, routes, backends, groups)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..core.schema import (
    DEFAULT_PORT,
    MEASURES,
    SWITCH_MODES,
    Aliases,
    AutoSettings,
    Backend,
    Band,
    Candidate,
    Config,
    ExclusiveGroup,
    HealthSettings,
    LogSettings,
    Model,
    PrincipleSettings,
    Route,
    ServerSettings,
    SwitchSettings,
    Timeouts,
)
from ..types import (
    BACKEND_KINDS,
    CAPABILITIES,
    FEATURES,
    LOCATIONS,
    PREFERENCES,
    STRATEGIES,
    TIERS,
    Feature,
)
from .classifier import SHIPPED
from .readers import Reader, kind
from .shared import shared_state

# DECISION: what a model can do when the config does not say. Chat and plain
# completions, tool calling and JSON output: every backend kind traywire
# speaks serves those for chat models. Vision and embeddings are never
# assumed: a model has them when its `features` say so or its server does
# (Ollama's /api/show capabilities, llama.cpp's /props). A single-model
# server (llama.cpp) calls tools only when started with --jinja: not assumed.
DEFAULT_FEATURES: frozenset[Feature] = frozenset({"chat", "completion", "tools", "json"})
SINGLE_MODEL_FEATURES: frozenset[Feature] = frozenset({"chat", "completion", "json"})


class Builder(Reader):
    """Builds the `Config` from merged data (`build`); unknown keys are errors."""

    # -- sections
    def build(self) -> Config:
        d = self.mapping(
            self.data,
            (),
            (
                "version",
                "preference",
                "saturation",
                "max_attempts",
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
                "aliases",
                "shared_state",
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
        aliases = self.aliases(d.get("aliases", {}), models, routes)
        server_spec = self.mapping(
            d.get("server", {}),
            ("server",),
            (
                "host",
                "port",
                "token",
                "max_body_mb",
                "max_answer_mb",
                "head_timeout",
                "max_connections",
                "report_model",
            ),
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
            max_answer_mb=self.number(
                server_spec.get("max_answer_mb", 64),
                ("server", "max_answer_mb"),
                low=0,
                low_open=True,
            ),
            head_timeout=self.number(
                server_spec.get("head_timeout", 30),
                ("server", "head_timeout"),
                low=0,
                low_open=True,
            ),
            max_connections=int(
                self.number(
                    server_spec.get("max_connections", 1024),
                    ("server", "max_connections"),
                    low=16,
                    integer=True,
                )
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
            max_attempts=int(
                self.number(d.get("max_attempts", 16), ("max_attempts",), low=1, integer=True)
            ),
            server=server,
            health=health,
            principles=principles,
            auto=auto,
            aliases=aliases,
            log=log,
            shared_state=shared_state(self, d.get("shared_state")),
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
        keys = ("connect", "first_byte", "idle", "total", "stream")
        s = self.mapping(spec, path, keys)
        vals = {
            k: self.number(s[k], (*path, k), low=0, low_open=True) if k in s else getattr(base, k)
            for k in keys
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

    def model(self, name: str, spec: Any, backends: Mapping[str, Backend]) -> Model:
        path = ("models", name)
        s = self.mapping(
            spec,
            path,
            ("backend", "upstream", "params_b", "tier", "capabilities", "context", "features"),
            ("backend", "params_b", "tier", "context"),
        )
        backend = self.string(s["backend"], (*path, "backend"))
        if backend not in backends:
            self.fail(
                (*path, "backend"),
                f"undefined backend {backend!r}; defined: " + ", ".join(sorted(backends)),
            )
        declared = "features" in s
        if declared:
            feats = s["features"]
            if not isinstance(feats, list) or not feats:
                self.fail((*path, "features"), "expected a non-empty list of features")
            features = frozenset(
                self.choice(f, (*path, "features", i), FEATURES) for i, f in enumerate(feats)
            )
        elif backends[backend].single_model:
            features = SINGLE_MODEL_FEATURES
        else:
            features = DEFAULT_FEATURES
        generates = bool(features & {"chat", "completion"})
        caps = s.get("capabilities", [] if not generates else None)
        if not isinstance(caps, list) or (generates and not caps):
            self.fail(
                (*path, "capabilities"),
                "expected a non-empty list of capabilities (only a model whose features are "
                "embeddings alone may have none)",
            )
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
            features=features,
            features_declared=declared,
        )

    def model_ref(self, value: Any, path: tuple[Any, ...], models: Mapping[str, Model]) -> str:
        name = self.string(value, path)
        if name not in models:
            import difflib  # only for the error's hint

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
                self.fail(path, f"expected a list of model names, got {kind(chain)}")
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

    def aliases(
        self, spec: Any, models: Mapping[str, Model], routes: Mapping[str, Route]
    ) -> Aliases:
        s = self.mapping(spec, ("aliases",), ("names", "unknown"))
        targets = {*models, *routes, *(("auto",) if routes else ())}

        def target(value: Any, path: tuple[Any, ...]) -> str:
            name = self.string(value, path)
            if name not in targets:
                import difflib  # only for the error's hint

                hint = difflib.get_close_matches(name, sorted(targets), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.fail(path, f"not a model, a route or auto: {name!r}{extra}")
            return name

        names = s.get("names", {})
        exact: dict[str, str] = {}
        patterns: list[tuple[str, str]] = []
        for name, value in self.mapping(names, ("aliases", "names"), names).items():
            path = ("aliases", "names", name)
            if not isinstance(name, str) or not name:
                self.fail(path, "an alias is a non-empty name or pattern")
            if name in targets:
                self.fail(path, f"{name!r} is already a model or route name")
            if "*" in name or "?" in name:
                patterns.append((name, target(value, path)))
            else:
                exact[name] = target(value, path)
        unknown = s.get("unknown", "reject")
        return Aliases(
            exact=MappingProxyType(exact),
            patterns=tuple(patterns),
            unknown=None if unknown == "reject" else target(unknown, ("aliases", "unknown")),
        )

    def auto(self, spec: Any, routes: Mapping[str, Route]) -> AutoSettings:
        s = self.mapping(spec, ("auto",), ("default", "min_margin"))
        default = self.choice(s.get("default", "chat"), ("auto", "default"), CAPABILITIES)
        min_margin = self.number(s.get("min_margin", 0.25), ("auto", "min_margin"), low=0, high=20)
        if routes and default not in routes:
            self.fail(
                ("auto", "default"),
                f"no route named {default!r}; 'auto' falls back to it "
                "when a request's class has no route of its own",
            )
        return AutoSettings(default=default, min_margin=min_margin, classifier=SHIPPED)
