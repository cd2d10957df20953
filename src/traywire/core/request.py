"""From a client's request body (OpenAI or Ollama dialect) to a RouteRequest.

Only what routing needs is read: the model name, the prompt text, the last
user turn, the reply budget. Bodies are assumed validated by the caller; this
module is forgiving about shapes it does not know (it reads text where it
finds it and ignores the rest).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..types import RouteRequest


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def from_body(body: Mapping[str, Any], endpoint: str = "chat") -> RouteRequest:
    """``endpoint`` is "chat", "completion" or "embedding"; the dialect is inferred."""
    model = body.get("model")
    model = model if isinstance(model, str) else ""
    options = body.get("options")
    options = options if isinstance(options, Mapping) else {}
    max_tokens = (
        _int(body.get("max_completion_tokens"))
        or _int(body.get("max_tokens"))
        or _int(options.get("num_predict"))
    )
    if endpoint == "embedding":
        raw = body.get("input", body.get("prompt", ""))
        items = raw if isinstance(raw, list) else [raw]
        text = "\n".join(i for i in items if isinstance(i, str))
        return RouteRequest(model, text, text, None, len(items), "embedding")
    if endpoint == "completion":
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = "\n".join(p for p in prompt if isinstance(p, str))
        prompt = prompt if isinstance(prompt, str) else ""
        system = body.get("system")
        full = f"{system}\n{prompt}" if isinstance(system, str) and system else prompt
        return RouteRequest(model, full, prompt, max_tokens, 1, "completion")
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    texts: list[str] = []
    last_user = ""
    for msg in messages:
        if not isinstance(msg, Mapping):
            continue
        t = _text(msg.get("content"))
        texts.append(t)
        if msg.get("role") == "user":
            last_user = t
    return RouteRequest(model, "\n".join(texts), last_user, max_tokens, max(1, len(messages)))
