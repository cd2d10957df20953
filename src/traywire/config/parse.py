"""YAML text → plain data, and where each key path was written.

The only module in traywire that imports yaml. A layer's text becomes plain
dicts, lists and scalars, plus a *mark* per key path: ``file:line`` of the key
(an entry is located at its key, not at where its value starts), so every
later error can say where the offending value came from.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..core.schema import format_path
from ..errors import ConfigError

# key path -> "file:line"
Marks = dict[tuple[Any, ...], str]

# libyaml's parser where PyYAML was built with it (about 5x the pure-Python
# one's speed); the nodes, marks and errors are the same
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(name: str, text: str) -> tuple[dict[str, Any], Marks]:
    """One layer's YAML as a mapping, and its marks; ``name`` is the file it came from."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc
    marks: Marks = {}
    if node is None:
        return {}, marks
    value = _to_python(node, (), name, marks)
    if not isinstance(value, dict):
        raise ConfigError(f"{name}:{node.start_mark.line + 1}: expected a mapping at the top level")
    return value, marks


_constructor = yaml.SafeLoader("")


def _to_python(node: yaml.Node, path: tuple[Any, ...], name: str, marks: Marks) -> Any:
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
