"""The configuration: YAML layers in, a validated `Config` out.

The objects themselves (`Config`, `Backend`, `Model`, `Route`, ...) are
defined in `traywire.core.schema` (pure, read by the router); the few the
rest of the app names most (`Config`, `LogSettings`...) are re-exported here.

How a `Config` is made, one module per step:

* `parse`: each layer's YAML text → plain data, plus ``file:line`` of every
  key path (the only module that imports yaml);
* `layers`: where the layers are (built-in ``default.yaml``, the user's file
  in the platformdirs config dir, ``--config FILE``) and how they merge;
* `readers` + `build`: merged data → schema objects; unknown keys are errors,
  cross-references (chains, routes, backends, groups) are checked after
  merging, and every error names the file, the line, the key path and what
  was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..core.schema import APP_NAME, DEFAULT_PORT, AutoSettings, Config, LogSettings
from .build import Builder
from .layers import (
    CONFIG_FILENAME,
    DEFAULT_NAME,
    Layers,
    default_config_text,
    read_file,
    user_config_path,
)
from .parse import Marks, parse

__all__ = [
    "APP_NAME",
    "CONFIG_FILENAME",
    "DEFAULT_PORT",
    "AutoSettings",
    "Config",
    "LogSettings",
    "default_config_text",
    "load",
    "load_texts",
    "user_config_path",
]


def load(config_file: str | Path | None = None, *, user_file: Path | bool | None = True) -> Config:
    """Load the layered configuration.

    ``user_file=True`` looks in the platformdirs config dir; a Path uses that
    file if it exists; ``False``/``None`` skips the user layer.
    """
    # the built-in default is read only where no layer above says ``extends: none``
    layers: list[tuple[str, str | Callable[[], str]]] = [(DEFAULT_NAME, default_config_text)]
    if user_file is True:
        user_file = user_config_path()
    if isinstance(user_file, Path) and user_file.is_file():
        layers.append((str(user_file), read_file(user_file)))
    if config_file is not None:
        layers.append((str(config_file), read_file(Path(config_file))))
    return load_texts(layers)


def load_texts(layers: Iterable[tuple[str, str | Callable[[], str]]]) -> Config:
    """Merge YAML texts (name, text) in order and build a validated Config. A
    text may be a function that reads it: called only where its layer is used."""
    # parsed from the top down: the layers below one that says ``extends:
    # none`` are not used, so not parsed (the built-in default, most often)
    parsed: list[tuple[str, tuple[dict[str, Any], Marks]]] = []
    for name, text in reversed(list(layers)):
        parsed.append((name, parse(name, text if isinstance(text, str) else text())))
        if parsed[-1][1][0].get("extends", "default") in ("none", None):
            break
    merged = Layers()
    for name, (data, marks) in reversed(parsed):
        merged.add(name, data, marks)
    return Builder(merged.data, merged.origins, tuple(merged.sources)).build()
