"""Non-streamed answers, OpenAI ⇄ Ollama: chat, completion/generate, embeddings."""

from __future__ import annotations

from collections.abc import Mapping

from .common import (
    _base64_float32,
    _done_reason,
    _finish_reason,
    _float32_base64,
    _id_suffix,
    _int_or_none,
    _maps,
    _ollama_call_to_openai,
    _ollama_metrics,
    _ollama_parts,
    _openai_call_to_ollama,
    _openai_choice,
    _openai_usage,
)
from .wire import Body, JSONMap

# =========================================================================== responses


def ollama_response_to_openai_chat(
    resp: JSONMap, *, model: str, response_id: str, created: int
) -> Body:
    """An Ollama /api/chat (or /api/generate) response -> an OpenAI ``chat.completion``."""
    content, thinking, calls = _ollama_parts(resp)
    message: Body = {"role": "assistant", "content": content if content or not calls else None}
    if thinking:
        message["reasoning_content"] = thinking
    if calls:
        suffix = _id_suffix(response_id)
        message["tool_calls"] = [
            _ollama_call_to_openai(c, f"call_{suffix}_{j}") for j, c in enumerate(calls)
        ]
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(resp.get("done_reason"), bool(calls)),
            }
        ],
        "usage": _openai_usage(resp),
    }


def ollama_response_to_openai_completion(
    resp: JSONMap, *, model: str, response_id: str, created: int
) -> Body:
    """An Ollama /api/generate (or /api/chat) response -> an OpenAI ``text_completion``."""
    content, _thinking, _calls = _ollama_parts(resp)
    return {
        "id": response_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "text": content,
                "index": 0,
                "logprobs": None,
                "finish_reason": _finish_reason(resp.get("done_reason"), False),
            }
        ],
        "usage": _openai_usage(resp),
    }


def openai_response_to_ollama_chat(
    resp: JSONMap, *, model: str, created_at: str, total_duration: int | None = None
) -> Body:
    """An OpenAI chat (or completion) response -> an Ollama /api/chat response.

    ``total_duration`` (ns) is what the caller measured; eval counts come from
    ``usage``, eval durations from llama.cpp's ``timings`` when present.
    """
    content, reasoning, calls, finish = _openai_choice(resp)
    message: Body = {"role": "assistant", "content": content}
    if reasoning:
        message["thinking"] = reasoning
    if calls:
        message["tool_calls"] = [
            _openai_call_to_ollama(c, f"choices[0].message.tool_calls[{j}]")
            for j, c in enumerate(calls)
        ]
    out: Body = {
        "model": model,
        "created_at": created_at,
        "message": message,
        "done": True,
        "done_reason": _done_reason(finish),
    }
    out.update(_ollama_metrics(resp.get("usage"), resp.get("timings"), total_duration))
    return out


def openai_response_to_ollama_generate(
    resp: JSONMap, *, model: str, created_at: str, total_duration: int | None = None
) -> Body:
    """An OpenAI completion (or chat) response -> an Ollama /api/generate response."""
    content, reasoning, _calls, finish = _openai_choice(resp)
    out: Body = {
        "model": model,
        "created_at": created_at,
        "response": content,
        "done": True,
        "done_reason": _done_reason(finish),
    }
    if reasoning:
        out["thinking"] = reasoning
    out.update(_ollama_metrics(resp.get("usage"), resp.get("timings"), total_duration))
    return out


def ollama_embed_response_to_openai(
    resp: JSONMap, *, model: str, encoding_format: str = "float"
) -> Body:
    """An Ollama /api/embed response -> an OpenAI embeddings ``list``.

    ``encoding_format`` is the client's: "base64" packs each vector as
    little-endian float32, as OpenAI does (the ``openai`` package asks for it by
    default).
    """
    vectors = resp.get("embeddings")
    vectors = vectors if isinstance(vectors, list) else []
    pack = encoding_format == "base64"
    p = _int_or_none(resp.get("prompt_eval_count")) or 0
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _float32_base64(v) if pack else v}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": p, "total_tokens": p},
    }


def openai_embeddings_response_to_ollama(
    resp: JSONMap, *, model: str, total_duration: int | None = None
) -> Body:
    """An OpenAI embeddings response -> an Ollama /api/embed response."""
    data = sorted(_maps(resp.get("data")), key=lambda d: _int_or_none(d.get("index")) or 0)
    vectors = [_base64_float32(e) if isinstance(e := d.get("embedding"), str) else e for d in data]
    out: Body = {"model": model, "embeddings": vectors}
    if total_duration is not None:
        out["total_duration"] = total_duration
    usage = resp.get("usage")
    if isinstance(usage, Mapping) and _int_or_none(usage.get("prompt_tokens")) is not None:
        out["prompt_eval_count"] = usage["prompt_tokens"]
    return out
