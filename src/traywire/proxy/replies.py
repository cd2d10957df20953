"""Answers in the caller's protocol: OpenAI error JSON on /v1, Ollama's
``{"error": ...}`` on /api, plain JSON elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .. import fastjson
from ..types import Front
from . import dialects as tr


def dialect_of(path: str) -> Front | None:
    """The protocol a path's answers are in: Anthropic's under /v1/messages,
    OpenAI's elsewhere under /v1 (the Responses API shares its error shape),
    Ollama's under /api, None (plain ``{"error": ...}``) elsewhere."""
    if path.startswith("/v1/"):
        return "anthropic" if path.startswith("/v1/messages") else "openai"
    if path == "/v1":
        return "openai"
    if path.startswith("/api/") or path == "/api":
        return "ollama"
    return None


def dumps(obj: object) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    return fastjson.dumps(obj)


def json_response(
    obj: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(obj), status=status, headers=headers, content_type="application/json"
    )


def error(
    dialect: Front | None,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any]
    if dialect == "anthropic":
        from .dialects import anthropic  # loaded at its first use

        body = anthropic.error_body(status, message)
        if extra:
            body["error"].update(extra)
    elif dialect in ("openai", "responses"):
        body = tr.openai_error_body(
            message, error_type=tr.openai_error_type(status), param=param, code=code
        )
        if extra:
            body["error"].update(extra)
    else:
        body = tr.ollama_error_body(message)
        if extra:
            body.update(extra)
    return json_response(body, status=status, headers=headers)
