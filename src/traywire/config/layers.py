"""Where the configuration's layers come from, and how they merge.

Layers, lowest first: the built-in default (``default.yaml`` in this
package), the user's file in the platformdirs config dir, ``--config FILE``.
Mappings merge key by key, any other value (lists included) replaces the one
below it, and ``null`` deletes an inherited entry. A layer that says
``extends: none`` starts from nothing instead of the layers below it.

Besides the merged data, `Layers` keeps the *origin* of every key path that
survives the merge (``file:line``, from the layer that set it), for messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.schema import APP_NAME, format_path
from ..errors import ConfigError
from .parse import Marks

CONFIG_FILENAME = "traywire.yaml"
DEFAULT_NAME = "<built-in default>"


def default_config_text() -> str:
    from importlib import resources

    return resources.files("traywire.config").joinpath("default.yaml").read_text(encoding="utf-8")


def user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / CONFIG_FILENAME


def read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc


class Layers:
    """Parsed layers merged in the order they are added."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        # key path as format_path prints it -> "file:line"
        self.origins: dict[str, str] = {}
        self.sources: list[str] = []

    def add(self, name: str, data: dict[str, Any], marks: Marks) -> None:
        """Merge one layer (``data`` is consumed) over the ones added before it."""
        extends = data.get("extends", "default")
        if extends in ("none", None):  # the layers below no longer count
            self.data, self.origins, self.sources = {}, {}, []
        elif extends != "default":
            path = ("extends",)
            raise ConfigError(
                f"{marks.get(path, name)} {format_path(path)}: expected 'default' or 'none'"
            )
        data.pop("extends", None)
        _merge(self.data, data, (), self.origins, marks)
        self.sources.append(name)


def _merge(
    into: dict[str, Any],
    data: dict[str, Any],
    path: tuple[Any, ...],
    origins: dict[str, str],
    marks: Marks,
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
