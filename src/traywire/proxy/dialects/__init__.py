"""Translation between the OpenAI and Ollama HTTP dialects.

Pure functions and small stateful stream converters: no I/O, no clock reads.
Ids, ``created`` (unix seconds) and ``created_at`` (ISO 8601 string) are passed
in by the caller, and so is the ``model`` name to put in every produced body:
the upstream model id in requests, the name the client asked for in responses.
Inputs are expected to have passed :mod:`traywire.validate` first.

Public API
----------
Errors and wire helpers
    TranslationError(message, param)  the request cannot be expressed on the other side
    UpstreamError(message)            an error object arrived inside an upstream stream
    StreamParseError(message)         upstream bytes are not valid SSE / NDJSON
    openai_error_body(message, ...)   ``{"error": {"message", "type", "param", "code"}}``
    ollama_error_body(message)        ``{"error": "..."}``
    openai_sse_error(message, ...)    bytes: SSE error event then ``data: [DONE]``
    ollama_ndjson_error(message)      bytes: ``{"error": "..."}\\n``
    openai_error_type(status)         OpenAI error ``type`` for an HTTP status
    upstream_error_message(body)      the message text of an error body of either dialect
    sse_event(obj) / SSE_DONE         one SSE ``data:`` event as bytes / the end marker
    ndjson_line(obj)                  one NDJSON line as bytes
    SSEParser                         incremental SSE parser: bytes in, data payloads out
    NDJSONParser                      incremental NDJSON splitter: bytes in, dicts out
Requests
    openai_chat_request_to_ollama(body, model)             /v1/chat/completions -> /api/chat
    ollama_chat_request_to_openai(body, model, ...)        /api/chat -> /v1/chat/completions
    openai_completion_request_to_ollama(body, model, ...)  /v1/completions -> /api/generate
    ollama_generate_route(body)                            "chat" or "completion" (see below)
    ollama_generate_request_to_openai_chat(body, model, ...)        /api/generate -> chat
    ollama_generate_request_to_openai_completion(body, model, ...)  /api/generate -> completions
    openai_embeddings_request_to_ollama(body, model)       /v1/embeddings -> /api/embed
    ollama_embed_request_to_openai(body, model)            /api/embed -> /v1/embeddings
    openai_include_usage(body)        did an OpenAI client ask for stream_options.include_usage
Responses (non-streaming; each accepts either a chat or a generate/completion body)
    ollama_response_to_openai_chat(resp, ...)        -> ``chat.completion``
    ollama_response_to_openai_completion(resp, ...)  -> ``text_completion``
    openai_response_to_ollama_chat(resp, ...)        -> /api/chat response
    openai_response_to_ollama_generate(resp, ...)    -> /api/generate response
    ollama_embed_response_to_openai(resp, ...)       -> embeddings ``list`` (float or base64)
    openai_embeddings_response_to_ollama(resp, ...)  -> /api/embed response
Streams (``feed(chunk) -> list[dict]``, ``finish() -> list[dict]``)
    OllamaToOpenAIStream(kind, ...)   Ollama NDJSON chunks -> OpenAI SSE chunk objects
    OpenAIToOllamaStream(kind, ...)   OpenAI SSE chunk objects -> Ollama NDJSON lines

Decisions
---------
* ``/api/generate`` to an OpenAI-kind backend: a plain generate (no ``raw``, no
  ``suffix``) goes to ``/v1/chat/completions`` as ``[system?, user(prompt, images)]``:
  that is what Ollama itself does with it (its chat template renders ``system`` and
  ``prompt`` as turns), and most OpenAI-compatible clouds only serve chat. ``raw``
  or ``suffix`` (fill-in-the-middle) goes to ``/v1/completions``; there ``system``
  is dropped, as Ollama's raw/FIM templating ignores it too, and images are refused.
  :func:`ollama_generate_route` makes the choice.
* ``/v1/completions`` to Ollama is sent with ``raw: true`` (the OpenAI endpoint
  continues text as given, as vLLM and llama.cpp do) unless a ``suffix`` asks for
  fill-in-the-middle, which needs Ollama's template.
* Multi-part text content is joined with ``"\\n"``. Only ``data:`` base64 images
  reach Ollama; http(s) image URLs raise TranslationError.
* ``tool_choice`` to Ollama (which has none) is best effort: ``"none"`` drops the
  tools, a named function keeps only that tool, ``"auto"``/``"required"`` keep all.
* Dropped silently (hints with no Ollama meaning): ``user``, ``logit_bias``,
  ``logprobs``, ``top_logprobs``, ``parallel_tool_calls``, ``service_tier``,
  ``store``, ``metadata``; from Ollama: ``keep_alive``, ``think``, ``template``,
  ``context``, ``truncate`` and options with no OpenAI meaning (num_ctx, ...).
  Refused (they change the shape of the answer): ``n`` > 1, ``best_of`` > 1,
  ``echo``, several prompts, token-id prompts/inputs, and an empty Ollama chat or
  prompt (a model load request, which the proxy must answer itself for OpenAI
  backends).
* Upstream bodies are not validated: converters read them defensively and
  treat fields of the wrong type as absent.
* Ollama's stream default is true, OpenAI's false: each request translation sets
  ``stream`` explicitly. Streaming requests to an OpenAI backend ask for
  ``stream_options.include_usage`` so the final Ollama line can carry eval counts.
* Tool calls without ids (Ollama) get deterministic ids: ``call_<msg>_<n>`` in
  requests, ``call_<response id suffix>_<n>`` in responses. An Ollama ``tool``
  message is matched to its call by ``tool_call_id``, else ``tool_name``, else order.
* Ollama ``thinking`` <-> OpenAI ``reasoning_content`` (vLLM/llama.cpp/DeepSeek
  style; ``reasoning`` is read too).
* Non-standard sampling options (top_k, min_p, typical_p, repeat_penalty) are sent
  to OpenAI-kind backends only with ``extensions=True`` (vLLM, llama.cpp accept
  them; OpenAI's cloud rejects unknown arguments).
"""

from __future__ import annotations

from .requests import (
    ollama_chat_request_to_openai,
    ollama_embed_request_to_openai,
    ollama_generate_request_to_openai_chat,
    ollama_generate_request_to_openai_completion,
    ollama_generate_route,
    openai_chat_request_to_ollama,
    openai_completion_request_to_ollama,
    openai_embeddings_request_to_ollama,
    openai_include_usage,
)
from .responses import (
    ollama_embed_response_to_openai,
    ollama_response_to_openai_chat,
    ollama_response_to_openai_completion,
    openai_embeddings_response_to_ollama,
    openai_response_to_ollama_chat,
    openai_response_to_ollama_generate,
)
from .streams import OllamaToOpenAIStream, OpenAIToOllamaStream
from .wire import (
    SSE_DONE,
    NDJSONParser,
    SSEParser,
    StreamParseError,
    TranslationError,
    UpstreamError,
    ndjson_line,
    ollama_error_body,
    ollama_ndjson_error,
    openai_error_body,
    openai_error_type,
    openai_sse_error,
    sse_event,
    upstream_error_message,
)

__all__ = [
    "SSE_DONE",
    "NDJSONParser",
    "OllamaToOpenAIStream",
    "OpenAIToOllamaStream",
    "SSEParser",
    "StreamParseError",
    "TranslationError",
    "UpstreamError",
    "ndjson_line",
    "ollama_chat_request_to_openai",
    "ollama_embed_request_to_openai",
    "ollama_embed_response_to_openai",
    "ollama_error_body",
    "ollama_generate_request_to_openai_chat",
    "ollama_generate_request_to_openai_completion",
    "ollama_generate_route",
    "ollama_ndjson_error",
    "ollama_response_to_openai_chat",
    "ollama_response_to_openai_completion",
    "openai_chat_request_to_ollama",
    "openai_completion_request_to_ollama",
    "openai_embeddings_request_to_ollama",
    "openai_embeddings_response_to_ollama",
    "openai_error_body",
    "openai_error_type",
    "openai_include_usage",
    "openai_response_to_ollama_chat",
    "openai_response_to_ollama_generate",
    "openai_sse_error",
    "sse_event",
    "upstream_error_message",
]
