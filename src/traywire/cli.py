"""The ``traywire`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__, config
from .errors import ConfigError, UnknownModelError
from .types import PREFERENCES, Decision, Dialect, Op

CONFIG_HELP = "config file layered over the built-in default and your traywire.yaml"


def config_argument(p: argparse.ArgumentParser) -> None:
    """The ``--config FILE`` option every command that reads the config takes."""
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line. ``only``: the command that comes first on it - then
    only that command's parser is built (argparse takes ~6 ms for them all,
    a good part of `traywire serve`'s start-up); its help and errors are the same."""
    p = argparse.ArgumentParser(
        prog="traywire",
        description="One local OpenAI/Ollama endpoint for many LLM backends. "
        "Without a COMMAND it runs the proxy with its tray icon (see `traywire app -h`).",
    )
    p.add_argument("--version", action="version", version=f"traywire {__version__}")
    from .desktop.options import add_arguments as app_arguments

    # Without a command, traywire runs the app (proxy + tray): its options
    # (also in the usage line of an error about any command).
    app_arguments(p, dest_prefix="app_")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    if only in (None, "app"):
        a = sub.add_parser("app", help="run the proxy with the tray icon (the default)")
        app_arguments(a)

    if only in (None, "check"):
        c = sub.add_parser(
            "check", help="validate the configuration and check the design principles"
        )
        config_argument(c)

    if only in (None, "route"):
        r = sub.add_parser("route", help="show how a request would be routed, and why")
        config_argument(r)
        r.add_argument("--prefer", choices=PREFERENCES, help="override the routing preference")
        r.add_argument("--json", action="store_true", help="print the decision as JSON")
        r.add_argument("--model", metavar="M", help="model or alias to ask for (or auto)")
        r.add_argument("--prompt", metavar="TEXT", help="the user message")
        r.add_argument("--max-tokens", type=int, metavar="N", help="reply budget")
        r.add_argument(
            "--request",
            metavar="FILE",
            help="a chat/completion request body (OpenAI or Ollama JSON); - reads stdin",
        )
        r.add_argument(
            "--state",
            metavar="FILE|URL",
            help="live state: a running traywire's /status (its URL, or saved as a file), or a "
            "JSON file with backends (in_flight, circuit, latency_ms, no_key, missing_models), "
            "active, usage, preference, random. Default: what the tray saved, keys read as the "
            "server reads them",
        )
        r.add_argument(
            "--live",
            action="store_true",
            help="take the live state from the running traywire (as --state URL/status)",
        )

    if only in (None, "serve"):
        s = sub.add_parser("serve", help="run the proxy headless (no tray)")
        config_argument(s)
        s.add_argument("--host", help="listen address (default: server.host, 127.0.0.1)")
        s.add_argument(
            "--port", type=int, help=f"listen port (default: server.port, {config.DEFAULT_PORT})"
        )
        s.add_argument(
            "--grace",
            type=float,
            default=10.0,
            help="seconds in-flight requests get to finish on shutdown",
        )
        s.add_argument(
            "--log-level",
            default="info",
            choices=["debug", "info", "warning", "error"],
            help="the lowest level of log line printed (default: info)",
        )

    if only in (None, "keys"):
        k = sub.add_parser("keys", help="cloud API keys in the OS keyring")
        ksub = k.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
        ks = ksub.add_parser("set", help="store a key (read from a hidden prompt or stdin)")
        ks.add_argument("name", help="the NAME in keyring:NAME (e.g. ollama_cloud)")
        kl = ksub.add_parser("list", help="key names the config uses, and whether each is set")
        config_argument(kl)
        kd = ksub.add_parser("delete", help="remove a key")
        kd.add_argument("name", help="the NAME in keyring:NAME")

    if only in (None, "init"):
        i = sub.add_parser("init", help="write the default config to the user config dir")
        i.add_argument("--path", metavar="FILE", help="write here instead")

    if only in (None, "doctor"):
        d = sub.add_parser(
            "doctor",
            help="check what traywire needs (config, keyring, keys, tray, notifications, "
            "backends, port), each with its fix",
        )
        config_argument(d)
        d.add_argument("--host", help="the listen address to check (default: server.host)")
        d.add_argument("--port", type=int, help="the listen port to check (default: server.port)")
        d.add_argument(
            "--no-backends", action="store_true", help="do not contact the backends (offline)"
        )

    return p


COMMANDS = ("app", "check", "route", "serve", "keys", "init", "doctor")


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = _parser(words[0] if words and words[0] in COMMANDS else None).parse_args(words)
    try:
        if args.command == "check":
            return cmd_check(args, sys.stdout)
        if args.command == "route":
            return cmd_route(args, sys.stdout)
        if args.command == "init":
            return cmd_init(args, sys.stdout)
        if args.command == "doctor":
            from . import doctor

            return doctor.run(
                args.config,
                sys.stdout,
                host=args.host,
                port=args.port,
                backends=not args.no_backends,
            )
        if args.command == "keys":
            return cmd_keys(args, sys.stdout)
        if args.command in ("serve", "app", None):
            # before anything imports aiohttp: its client's CA store, which the
            # proxy never uses, loads at its first use rather than at start
            from .tlsdefer import import_aiohttp

            import_aiohttp()
        if args.command == "serve":
            from .app import serve

            return serve(args)
        if args.command in ("app", None):
            from .desktop.options import app_args
            from .desktop.run import run_app

            return run_app(app_args(args, "" if args.command else "app_"))
    except ConfigError as exc:
        print(f"traywire: config error: {exc}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"traywire: {exc}", file=sys.stderr)
        return 2
    _parser().print_help()
    return 0


class UsageError(Exception):
    pass


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from .core import principles

    cfg = config.load(args.config)
    warnings = principles.check(cfg)
    print(
        f"config OK: {len(cfg.backends)} backends, {len(cfg.models)} models, "
        f"{len(cfg.fallbacks)} fallback chains, {len(cfg.routes)} routes "
        f"(from {', '.join(cfg.sources)})",
        file=out,
    )
    for w in warnings:
        print(f"warning: {w}", file=out)
    if cfg.shared_state.url is not None:
        from .proxy.shared import password_warning

        said = password_warning(cfg.shared_state.url, cfg.shared_state.password is not None)
        if said:
            print(f"warning: shared_state.url: {said}", file=out)
    return 0


def cmd_keys(args: argparse.Namespace, out: TextIO) -> int:
    from . import secrets

    try:
        if args.keys_command == "set":
            name = secrets.validate_key_name(args.name)
            value = secrets.read_secret_from_user(
                sys.stdin, sys.stdin.isatty(), prompt=f"key for {name} (input hidden): "
            )
            secrets.set_key(name, value)
            print(f"stored key {name!r} in the OS keyring ({secrets.backend_name()})", file=out)
            return 0
        if args.keys_command == "delete":
            name = secrets.validate_key_name(args.name)
            if secrets.delete_key(name):
                print(f"deleted key {name!r}", file=out)
                return 0
            print(f"no key {name!r} was stored", file=out)
            return 1
        cfg = config.load(args.config)
        refs = {b.name: b.key for b in cfg.backends.values() if b.key}
        if cfg.server.token:
            refs["server.token"] = cfg.server.token
        if cfg.shared_state.password:
            refs["shared_state.password"] = cfg.shared_state.password
        names = sorted({r.split(":", 1)[1] for r in refs.values() if r.startswith("keyring:")})
        stored = secrets.list_keys(names) if names else {}
        for owner, ref in sorted(refs.items()):
            kind, name = ref.split(":", 1)
            if kind == "keyring":
                state = "set" if stored.get(name) else "not set"
            else:
                state = "set" if os.environ.get(name) else "not set (environment)"
            print(f"{ref:32} {state:24} used by {owner}", file=out)
        return 0
    except secrets.KeyringUnavailable as exc:
        hint = "refer to the key as env:VAR in the config and export VAR"
        print(
            f"traywire: no usable OS keyring ({exc.reason or exc}). Quick fix: {hint}; "
            f"or {secrets.short_fix()} (details: `traywire doctor`).",
            file=sys.stderr,
        )
        return 1
    except (secrets.SecretsError, ValueError) as exc:
        print(f"traywire: {exc}", file=sys.stderr)
        return 1


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.path) if args.path else config.user_config_path()
    if path.exists():
        raise UsageError(f"{path} already exists; not overwriting it (edit it, or remove it first)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.default_config_text(), encoding="utf-8")
    print(f"wrote {path}", file=out)
    return 0


def cmd_route(args: argparse.Namespace, out: TextIO) -> int:
    from . import livestate
    from .core import request, routing

    cfg = config.load(args.config)
    body = _request_body(args)
    op: Op = "chat"
    if "messages" not in body:
        op = "embed" if "input" in body else "completion"
    # The same parse as the server's: an Ollama body is told by its own fields.
    dialect: Dialect = "ollama" if _OLLAMA_FIELDS & body.keys() else "openai"
    try:
        if args.live:
            state = livestate.from_running(cfg)
        elif args.state:
            state = livestate.from_source(args.state, cfg)
        else:
            state = livestate.from_saved(cfg)
    except livestate.StateError as exc:
        raise UsageError(str(exc)) from exc
    if args.prefer:
        state = state._replace(preference=args.prefer)
    try:
        inb = request.parse(dialect, op, body)
    except request.BadRequest as exc:
        raise UsageError(f"invalid {dialect} request: {exc.message}") from exc
    try:
        decision = routing.decide(inb.route, cfg, state)
    except UnknownModelError as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        json.dump(decision_json(decision, cfg), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(render(decision, cfg))
    return 0


_OLLAMA_FIELDS = frozenset({"options", "format", "keep_alive", "images", "system", "raw", "think"})


def _request_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any]
    if args.request:
        try:
            text = sys.stdin.read() if args.request == "-" else Path(args.request).read_text()
            loaded = json.loads(text)
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read request {args.request}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError("the request must be a JSON object (a chat request body)")
        body = loaded
        if args.model:
            body["model"] = args.model
        if args.prompt:
            raise UsageError("give either --request or --prompt, not both")
    else:
        if not args.model or args.prompt is None:
            raise UsageError("route needs --model M --prompt TEXT, or --request FILE")
        body = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
    if "model" not in body or not isinstance(body["model"], str):
        raise UsageError("the request has no model; add --model M")
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    return body


def _description(d: Decision, cfg: config.Config) -> str | None:
    """The description of the route that made the plan; None: no route did."""
    route = cfg.routes.get(d.route) if d.route else None
    return None if route is None else route.description


def decision_json(d: Decision, cfg: config.Config) -> dict[str, object]:
    """The decision as `route --json` prints it: `Decision.as_dict`, plus the
    route's ``description`` and each planned model's ``tier``, from the config."""
    out: dict[str, object] = {}
    for key, value in d.as_dict().items():
        out[key] = value
        if key == "strategy":
            out["description"] = _description(d, cfg)
    out["plan"] = [{**a._asdict(), "tier": cfg.models[a.model].tier} for a in d.plan]
    return out


def render(d: Decision, cfg: config.Config) -> str:
    lines = [f"request   {d.requested}"]
    head = f"capability {d.capability or '-'} · {d.prompt_tokens} prompt tokens (estimated)"
    if d.route:
        head += f" · route {d.route} ({d.strategy})"
    lines.append(head + f" · preference {d.preference}")
    description = _description(d, cfg)
    if description:
        lines.append(f"route     {d.route}: {description}")
    if d.plan:
        lines.append("plan")
        for n, a in enumerate(d.plan, 1):
            tier = cfg.models[a.model].tier
            lines.append(
                f"  {n}. {a.model} on {a.backend}  [tier {tier} · upstream {a.upstream_model}]"
            )
            lines.append(f"     {a.reason}")
    else:
        lines.append("plan      (empty)")
    if d.note:
        lines.append(f"note      {d.note}")
    if d.skipped:
        lines.append("skipped")
        for s in d.skipped:
            lines.append(f"  - {s.model} on {s.backend}: {s.reason}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
