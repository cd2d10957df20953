"""Thin adapters, one per backend kind: wire formats in and out, errors mapped.

Retries and failover are not here: they live in :mod:`traywire.proxy.failover`.
"""

from __future__ import annotations

from .base import Adapter, Answer, Ids, Prepared, error_from_status, wire_body
from .ollama import OllamaAdapter
from .openai import OpenAIAdapter

ADAPTERS: dict[str, Adapter] = {"ollama": OllamaAdapter(), "openai": OpenAIAdapter()}

__all__ = [
    "ADAPTERS",
    "Adapter",
    "Answer",
    "Ids",
    "OllamaAdapter",
    "OpenAIAdapter",
    "Prepared",
    "error_from_status",
    "wire_body",
]
