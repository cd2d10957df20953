"""Prompt size estimation without a tokenizer.

The estimator is the usual rule of thumb for BPE tokenizers, about four bytes
of UTF-8 per token, plus the chat framing every message costs:

    tokens = ceil(utf8_bytes(text) / 4) + 4 * messages + 3

ASCII text is counted with ``len`` (CPython knows a string is ASCII without
scanning it); other text is encoded once, so CJK text (3 bytes a character)
comes out near one token per character, as real tokenizers give. It runs in
linear time, in C, well under a millisecond for a 200,000-character prompt.
"""

from __future__ import annotations

from ..types import RouteRequest

# Per-message framing (role markers, separators) and the reply's priming.
PER_MESSAGE = 4
PER_REPLY = 3


def count_text(text: str) -> int:
    """Estimated tokens in ``text`` alone."""
    if not text:
        return 0
    n = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return (n + 3) // 4


def estimate(request: RouteRequest) -> int:
    """Estimated prompt tokens of a request, framing included."""
    if request.kind == "embedding":
        return count_text(request.prompt)
    return count_text(request.prompt) + PER_MESSAGE * request.messages + PER_REPLY
