"""Helpers shared by test_config.py and test_cli.py: write YAML layers to tmp
files, load them without the user's real config, and check located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from traywire import config
from traywire.errors import ConfigError


def write(path: Path, text: str) -> Path:
    """Write dedented ``text`` to ``path`` (parents created) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_layer(tmp_path: Path, text: str, name: str = "layer.yaml") -> config.Config:
    """The default with ``text`` layered over it as a --config file (no user file)."""
    return config.load(write(tmp_path / name, text), user_file=False)


def layer_error(tmp_path: Path, text: str, name: str = "layer.yaml") -> tuple[Path, str]:
    """Load ``text`` as a --config file over the default; return (file, error message)."""
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        config.load(path, user_file=False)
    return path, str(info.value)


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """1-based number of the ``nth`` line of ``path`` containing ``needle``."""
    hits = [
        n
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if needle in line
    ]
    assert len(hits) >= nth, f"{needle!r} occurs {len(hits)} times in {path}"
    return hits[nth - 1]


def assert_located(
    message: str, path: Path | str, line: int, key_path: str | None, *expected: str
) -> None:
    """The message starts ``file:line key.path:`` and says each of ``expected``."""
    prefix = f"{path}:{line} {key_path}:" if key_path is not None else f"{path}:{line}:"
    assert message.startswith(prefix), f"expected the message to start {prefix!r}: {message!r}"
    for fragment in expected:
        assert fragment in message, f"expected {fragment!r} in {message!r}"
