"""What servers say their models can do, for models whose features the config
does not declare (declared features always win).

- Ollama: ``POST /api/show`` lists a model's ``capabilities`` ("completion",
  "tools", "vision", "embedding", ...); an embedding model lists only
  "embedding" (it cannot chat).
- llama.cpp's server: ``GET /props`` says ``modalities.vision`` (started
  with a vision projector or not).
- vLLM and clouds say nothing of the kind: their models keep their defaults.

Asked after a backend is first seen up and again each time it comes back
(it may have been restarted with other options); never on the request path.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping

from ..errors import BackendError
from ..types import Feature
from .transport import Pool

log = logging.getLogger("traywire")

MAX_BYTES = 1 << 20  # an /api/show or /props answer larger than this is not one

# Ollama's capability words -> traywire's features.
_OLLAMA: Mapping[str, frozenset[Feature]] = {
    "completion": frozenset({"chat", "completion", "json"}),
    "tools": frozenset({"tools"}),
    "vision": frozenset({"vision"}),
    "embedding": frozenset({"embed"}),
}


def from_ollama_capabilities(caps: Iterable[str]) -> frozenset[Feature]:
    out: set[Feature] = set()
    for cap in caps:
        out |= _OLLAMA.get(cap, frozenset())
    return frozenset(out)


async def ollama_features(
    pool: Pool,
    base: str,
    headers: Mapping[str, str],
    upstreams: Iterable[str],
    timeout: float,
) -> dict[str, frozenset[Feature]]:
    """Upstream id -> features, for the models whose /api/show says."""

    async def one(up: str) -> tuple[str, frozenset[Feature] | None]:
        body = json.dumps({"model": up}).encode()
        hdrs = (("Content-Type", "application/json"), *headers.items())
        try:
            async with asyncio.timeout(timeout):
                r = await pool.request(
                    "POST", base, "/api/show", hdrs, body, connect_timeout=timeout
                )
                raw = await r.read(MAX_BYTES)
            if r.status != 200:
                return up, None
            data = json.loads(raw)
        except (BackendError, TimeoutError, ValueError):
            return up, None
        caps = data.get("capabilities") if isinstance(data, dict) else None
        if not isinstance(caps, list):
            return up, None  # an Ollama too old to say
        return up, from_ollama_capabilities(c for c in caps if isinstance(c, str))

    # one at a time, on one keep-alive connection: a local Ollama may be busy
    found = [await one(u) for u in dict.fromkeys(upstreams)]
    return {up: feats for up, feats in found if feats is not None}


async def llama_cpp_features(
    pool: Pool,
    base: str,
    headers: Mapping[str, str],
    defaults: frozenset[Feature],
    timeout: float,
) -> frozenset[Feature] | None:
    """The one model's features: ``defaults``, with vision as /props says."""
    root = base[: -len("/v1")] if base.rstrip("/").endswith("/v1") else base
    try:
        status, raw = await pool.get(
            root.rstrip("/"), "/props", tuple(headers.items()), timeout=timeout, limit=MAX_BYTES
        )
        data = json.loads(raw) if status == 200 else None
    except (BackendError, ValueError):
        return None
    modalities = data.get("modalities") if isinstance(data, dict) else None
    if not isinstance(modalities, dict) or not isinstance(modalities.get("vision"), bool):
        return None
    vision: frozenset[Feature] = frozenset({"vision"})
    return defaults | vision if modalities["vision"] else defaults - vision
