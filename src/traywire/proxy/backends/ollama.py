"""Ollama's API (local, or Ollama's cloud at https://ollama.com with a bearer key)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...types import Dialect, Op
from .. import dialects as tr
from .. import relay as rl
from .base import Adapter, Ids, Prepared, translating

_PATHS: dict[Op, str] = {"chat": "/api/chat", "completion": "/api/generate", "embed": "/api/embed"}


class OllamaAdapter(Adapter):
    kind = "ollama"
    paths = _PATHS

    @translating
    def prepare(
        self,
        dialect: Dialect,
        op: Op,
        body: Mapping[str, Any],
        upstream: str,
        stream: bool,
        *,
        extensions: bool = True,
    ) -> Prepared:
        if dialect == "ollama":
            return self.passthrough(op, body, upstream, stream)
        if op == "chat":
            out = tr.openai_chat_request_to_ollama(body, upstream)
        elif op == "completion":
            out = tr.openai_completion_request_to_ollama(body, upstream)
        else:
            out = tr.openai_embeddings_request_to_ollama(body, upstream)
        if op != "embed":
            out["stream"] = stream
        return Prepared(_PATHS[op], out, op, stream and op != "embed")

    def response(
        self,
        prep: Prepared,
        dialect: Dialect,
        op: Op,
        data: Any,
        model: str,
        ids: Ids,
        client_body: Mapping[str, Any],
        elapsed_ns: int,
    ) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise tr.StreamParseError("Ollama answered with something that is not a JSON object")
        expect = {"chat": "message", "completion": "response", "embed": "embeddings"}[op]
        if expect not in data:
            raise tr.StreamParseError(f"Ollama answer without {expect!r}")
        if dialect == "ollama":
            data["model"] = model
            return data
        if op == "chat":
            return tr.ollama_response_to_openai_chat(
                data, model=model, response_id=ids.response_id, created=ids.created
            )
        if op == "completion":
            return tr.ollama_response_to_openai_completion(
                data, model=model, response_id=ids.response_id, created=ids.created
            )
        fmt = client_body.get("encoding_format")
        return tr.ollama_embed_response_to_openai(
            data, model=model, encoding_format=fmt if isinstance(fmt, str) else "float"
        )

    def relay(
        self,
        prep: Prepared,
        dialect: Dialect,
        op: Op,
        model: str,
        ids: Ids,
        client_body: Mapping[str, Any],
    ) -> rl.Relay:
        if dialect == "ollama":
            return rl.NDJSONPassthrough(model)
        return rl.OllamaToOpenAI(
            "chat" if op == "chat" else "completion",
            model,
            ids.response_id,
            ids.created,
            tr.openai_include_usage(client_body),
        )
