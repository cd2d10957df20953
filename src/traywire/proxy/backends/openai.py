"""OpenAI-compatible servers: vLLM, llama.cpp's llama-server, llama-cpp-python's
server, OpenAI-compatible clouds. The backend ``url`` is the API base (``.../v1``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...types import Dialect, Op
from .. import dialects as tr
from .. import relay as rl
from .base import Adapter, Ids, Prepared, translating

_PATHS: dict[Op, str] = {
    "chat": "/chat/completions",
    "completion": "/completions",
    "embed": "/embeddings",
}


class OpenAIAdapter(Adapter):
    kind = "openai"
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
        if dialect == "openai":
            return self.passthrough(op, body, upstream, stream)
        backend_op: Op = op
        if op == "chat":
            out = tr.ollama_chat_request_to_openai(body, upstream, extensions=extensions)
        elif op == "completion":
            if tr.ollama_generate_route(body) == "chat":
                backend_op = "chat"
                out = tr.ollama_generate_request_to_openai_chat(
                    body, upstream, extensions=extensions
                )
            else:
                out = tr.ollama_generate_request_to_openai_completion(
                    body, upstream, extensions=extensions
                )
        else:
            out = tr.ollama_embed_request_to_openai(body, upstream)
        if op != "embed":
            out["stream"] = stream
            if stream:
                out["stream_options"] = {"include_usage": True}
            else:
                out.pop("stream_options", None)
        return Prepared(_PATHS[backend_op], out, backend_op, stream and op != "embed")

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
            raise tr.StreamParseError(
                "the backend answered with something that is not a JSON object"
            )
        if op == "embed":
            if not isinstance(data.get("data"), list):
                raise tr.StreamParseError("embeddings response without a data list")
        elif not isinstance(data.get("choices"), list) or not data["choices"]:
            raise tr.StreamParseError("completion response without choices")
        if dialect == "openai":
            data["model"] = model
            return data
        if op == "chat":
            return tr.openai_response_to_ollama_chat(
                data, model=model, created_at=ids.created_at, total_duration=elapsed_ns
            )
        if op == "completion":
            return tr.openai_response_to_ollama_generate(
                data, model=model, created_at=ids.created_at, total_duration=elapsed_ns
            )
        return tr.openai_embeddings_response_to_ollama(data, model=model, total_duration=elapsed_ns)

    def relay(
        self,
        prep: Prepared,
        dialect: Dialect,
        op: Op,
        model: str,
        ids: Ids,
        client_body: Mapping[str, Any],
    ) -> rl.Relay:
        if dialect == "openai":
            return rl.SSEPassthrough(model)
        return rl.OpenAIToOllama("chat" if op == "chat" else "generate", model, ids.created_at)
