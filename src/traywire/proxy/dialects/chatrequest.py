"""The OpenAI chat request the fronts (Anthropic Messages, OpenAI Responses)
are translated to: the pieces both write the same way.

Each takes the client's body (checked here, `BadRequest` naming the first
problem) and writes into the chat body being made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...core.fields import name_str, opt_bool, opt_str

__all__ = ["stream_fields", "tool_function"]

Body = dict[str, Any]


def tool_function(tool: Mapping[str, Any], path: str) -> Body:
    """A client's function tool as a chat ``function``: its name (required) and
    description; the caller adds the parameters."""
    name = name_str(tool, "name", f"{path}.name")
    opt_str(tool, "description", f"{path}.description")
    fn: Body = {"name": name}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return fn


def stream_fields(b: Mapping[str, Any], out: Body, *, allowed: bool = True) -> bool:
    """Whether the answer streams (``stream`` true, and ``allowed``); written
    into ``out``, a stream asking for usage in its last chunk."""
    opt_bool(b, "stream", "stream")
    stream = b.get("stream") is True and allowed
    out["stream"] = stream
    if stream:
        out["stream_options"] = {"include_usage": True}
    return stream
