"""One inbound request, parsed once.

`parse` takes a client's decoded JSON body, the dialect it came in and what
it asks for (chat, completion, embeddings), checks it (`validate`, made of `fields`) and, in
the same walk over its messages, reads what the router needs: the model
name, the prompt text and the last user turn, the reply budget, and what the
request needs from the model that serves it (its kind, input images, tools,
JSON output). The result, an `Inbound`, is all the proxy carries from here
on: the router reads ``route``, the adapters ``body``, the executor ``stream``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..types import Dialect, Front, Op, RouteRequest
from . import validate
from .fields import BadRequest, body_object

__all__ = ["BadRequest", "Inbound", "parse"]


class Inbound(NamedTuple):
    # The wire dialect of ``body`` (what adapters translate from).
    dialect: Dialect
    op: Op
    # The client's body, checked (unknown fields kept for same-dialect backends).
    body: dict[str, Any]
    # Does the client want the answer streamed? (Ollama streams unless told not
    # to; embeddings never stream.)
    stream: bool
    route: RouteRequest
    # The API the client speaks (answers and errors go back in it); the same as
    # ``dialect`` except for the Anthropic and Responses fronts, whose bodies
    # arrive translated to OpenAI chat.
    front: Front
    # The client's own body where it differs from ``body`` (a front's).
    original: dict[str, Any] | None = None
    # The client's bytes that ``body`` was decoded from, where it is exactly
    # them (not a front's or an old endpoint's translation): a backend that
    # needs the body unchanged but for its model name is sent these.
    raw: bytes | None = None


_PARSERS: dict[tuple[Dialect, Op], Callable[[dict[str, Any]], RouteRequest]] = {
    ("openai", "chat"): validate.openai_chat,
    ("openai", "completion"): validate.openai_completion,
    ("openai", "embed"): validate.openai_embeddings,
    ("ollama", "chat"): validate.ollama_chat,
    ("ollama", "completion"): validate.ollama_generate,
    ("ollama", "embed"): validate.ollama_embed,
}


def parse(dialect: Dialect, op: Op, body: object) -> Inbound:
    """Check ``body`` and read it; `BadRequest` names the first problem."""
    b = body_object(body)
    route = _PARSERS[(dialect, op)](b)
    if op == "embed":
        stream = False
    elif dialect == "ollama":
        stream = b.get("stream") is not False
    else:
        stream = b.get("stream") is True
    return Inbound(dialect, op, b, stream, route, dialect)
