"""The options of ``traywire`` / ``traywire app`` (the tray app's command line).

A module of its own, light (argparse only), so that the command line parser
is built without loading the tray app (`desktop.run`): ``traywire serve``
starts without it.
"""

from __future__ import annotations

import argparse

from ..core.schema import DEFAULT_PORT


def add_arguments(p: argparse.ArgumentParser, dest_prefix: str = "") -> None:
    """The options of ``traywire`` / ``traywire app`` (stored as ``dest_prefix + name``)."""
    d = dest_prefix
    p.add_argument(
        "--config",
        dest=d + "config",
        metavar="FILE",
        help="config file layered over the built-in default and your traywire.yaml",
    )
    p.add_argument(
        "--host",
        dest=d + "host",
        metavar="HOST",
        help="listen address (default: server.host, 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        dest=d + "port",
        metavar="PORT",
        type=int,
        help=f"listen port (default: server.port, {DEFAULT_PORT})",
    )
    p.add_argument(
        "--no-tray",
        dest=d + "no_tray",
        action="store_true",
        help="serve without a tray icon (as `traywire serve` does)",
    )
    p.add_argument(
        "--grace",
        dest=d + "grace",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="seconds in-flight requests get to finish on quit",
    )
    p.add_argument(
        "--log-level",
        dest=d + "log_level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the lowest level of log line printed (default: info)",
    )


def app_args(args: argparse.Namespace, dest_prefix: str = "") -> argparse.Namespace:
    """The app's options out of a namespace filled by `add_arguments`."""
    names = ("config", "host", "port", "no_tray", "grace", "log_level")
    return argparse.Namespace(**{n: getattr(args, dest_prefix + n) for n in names})
