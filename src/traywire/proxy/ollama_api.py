"""The Ollama API beyond inference: listings, model descriptions, model
management, and the server's own answers (``/``, ``/api/version``).

``/api/chat``, ``/api/generate`` and ``/api/embed`` are inference
(`server.inference`); the legacy ``/api/embeddings`` is too, through
`LEGACY_EMBEDDINGS` (its body becomes an ``/api/embed`` one, the answer's first
vector becomes ``embedding``). What names there are and what they can do comes
from `traywire.core.catalog`; this module adds what a local Ollama says of
its own models and speaks Ollama's shapes.

DECISIONS:

- Metadata of a model on a local Ollama (``/api/tags``, ``/api/show``) is that
  Ollama's own, asked for with a short timeout (`META_TIMEOUT`) and kept a few
  seconds (`CACHE_S`, at most `CACHE_MAX` answers). Its context length in
  ``model_info`` is traywire's window where that is smaller: the window
  traywire plans with is the server's (see README, "local Ollama windows"),
  and Ollama silently truncates past it. When that Ollama does not answer (or
  has not pulled the model), the description is made up as for other models.
- Other models (vLLM, llama.cpp, clouds, Ollama's cloud) are described from
  the config: family from the name, parameter size from ``params_b``,
  quantization where the upstream id names it, ``<family>.context_length``
  the configured window, capabilities from the model's features;
  ``modified_at`` is when traywire started, ``size`` 0 (nothing on this
  disk that traywire knows of), a digest made from backend and upstream id.
- Routes, ``auto`` and aliases are listed after the models, marked by the
  family ``traywire-route`` / ``traywire-alias`` (an alias's
  ``parent_model`` is its target). ``/api/show`` of an alias is that of its
  target; of a route, what its candidates can do (see `catalog`).
- ``/api/pull``, ``/api/push``, ``/api/create``, ``/api/copy``,
  ``/api/delete`` go to a local, enabled Ollama backend only: the one of the
  configured model the name is (public name, or upstream id), its upstream id
  sent in its place; a name traywire does not know goes to the local Ollama
  that lists it, else (a new model) to the first local Ollama in the config.
  A model served by anything else, a route or an alias is refused with a
  400 that says why. Progress is streamed line by line as it comes; a silence
  longer than `MANAGE_IDLE` or a line longer than `LINE_LIMIT` ends it with an
  Ollama error line; a client that goes away closes the upstream request.
- ``/api/ps``: what the local Ollamas have loaded (a configured model under its
  public name, anything else under Ollama's), then the local models of other
  servers whose backend is up and serves them (a vLLM or llama.cpp server
  holds its model while it runs); cloud models are never "loaded" here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from aiohttp import web

from .. import __version__
from ..core import catalog, fields
from ..core.routing import features_of
from ..core.schema import Backend, Config, Model
from ..errors import BackendError, UnknownModelError
from ..redact import REDACTOR
from ..types import LiveState
from . import replies
from .runtime import Runtime
from .transport import Response

log = logging.getLogger("traywire")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What /api/version reports: an Ollama version recent enough that Ollama
# clients enable their features (tools, embed), plus traywire's own.
OLLAMA_COMPAT_VERSION = "0.12.6"

META_TIMEOUT = 2.0  # seconds for a local Ollama's /api/tags, /api/show, /api/ps
CACHE_S = 5.0  # how long its /api/tags and /api/show answers are kept
CACHE_MAX = 256  # answers kept at most
LIST_LIMIT = 4 * 1024 * 1024  # a listing larger than this is not one
LIST_MAX = 4096  # entries read from one listing
SMALL_LIMIT = 1024 * 1024  # a management call's whole (not streamed) answer
LINE_LIMIT = 1024 * 1024  # one progress line
MANAGE_IDLE = 600.0  # seconds of silence a pull's progress may have
MANAGE_TOTAL = 24 * 3600.0  # the longest a management call may take

ManageOp = Literal["pull", "push", "create", "copy", "delete"]
NDJSON = "application/x-ndjson"
_DETAIL_KEYS = ("parent_model", "format", "family", "families", "parameter_size")
_FAR = "2318-01-01T00:00:00Z"  # "never unloads", as Ollama says of keep_alive -1


def ollama_name(name: str) -> str:
    """Ollama's spelling of a name: without a tag it is ``:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def ollama_error(status: int, message: str) -> web.Response:
    return replies.error("ollama", status, message)


class Bad(Exception):
    """A request refused with an Ollama error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        return fields.json_object(await request.read())
    except fields.BadRequest as exc:
        raise Bad(400, exc.message) from None


def model_name_in(body: Mapping[str, Any], *keys: str) -> str:
    """The first of ``keys`` the body has, as a model name (400 if bad)."""
    value = next((body[k] for k in keys if body.get(k) is not None), None)
    if not isinstance(value, str) or not value.strip():
        raise Bad(400, f"{keys[0]}: required, a model name")
    if len(value) > fields.MAX_MODEL:
        raise Bad(400, f"{keys[0]}: longer than {fields.MAX_MODEL} characters")
    return value


# --------------------------------------------------------------------------- legacy embeddings


class Adapter(NamedTuple):
    """A legacy endpoint served by an inference one: ``request`` makes its body
    from the client's (raising `fields.BadRequest`), ``answer`` reshapes a
    successful answer, given the client's body."""

    request: Callable[[dict[str, Any]], dict[str, Any]]
    answer: Callable[[dict[str, Any], web.StreamResponse], web.StreamResponse]


def _embeddings_request(body: dict[str, Any]) -> dict[str, Any]:
    """``{"model", "prompt"}`` -> ``{"model", "input"}`` (options, keep_alive kept)."""
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise fields.BadRequest(f"prompt: expected a string, got {type(prompt).__name__}")
    out = {k: v for k, v in body.items() if k in ("model", "options", "keep_alive")}
    out["input"] = prompt
    return out


def _embeddings_answer(body: dict[str, Any], response: web.StreamResponse) -> web.StreamResponse:
    """``{"embeddings": [[...]]}`` -> ``{"embedding": [...]}``; an empty prompt
    gets ``[]``, as from Ollama (the model is loaded, nothing embedded)."""
    if response.status != 200 or not isinstance(response, web.Response):
        return response
    raw = response.body
    try:
        doc = json.loads(raw) if isinstance(raw, bytes | bytearray) else None
        vectors = doc.get("embeddings") if isinstance(doc, dict) else None
        vector = vectors[0] if isinstance(vectors, list) and vectors else None
    except ValueError:
        vector = None
    if not isinstance(vector, list):
        return ollama_error(502, "the backend's answer held no embedding")
    response.body = replies.dumps({"embedding": vector if body.get("prompt") else []})
    return response


LEGACY_EMBEDDINGS = Adapter(_embeddings_request, _embeddings_answer)


# --------------------------------------------------------------------------- a small cache


class _Cache:
    """Answers kept ``CACHE_S`` seconds, at most ``CACHE_MAX`` of them."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._items: dict[tuple[str, ...], tuple[float, Any]] = {}

    def get(self, key: tuple[str, ...]) -> tuple[bool, Any]:
        hit = self._items.get(key)
        if hit is None or hit[0] <= self._now():
            return False, None
        return True, hit[1]

    def put(self, key: tuple[str, ...], value: Any) -> None:
        now = self._now()
        if len(self._items) >= CACHE_MAX:
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            if len(self._items) >= CACHE_MAX:
                self._items.clear()
        self._items[key] = (now + CACHE_S, value)

    def forget(self, backend: str) -> None:
        """Drop what is kept of ``backend`` (its models changed)."""
        self._items = {k: v for k, v in self._items.items() if k[1] != backend}


# --------------------------------------------------------------------------- the API


class OllamaApi:
    """The handlers (`server.make_app` registers them) and what they keep."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._cache = _Cache(rt.clock.monotonic)
        # when traywire started, as Ollama writes times (modified_at of what it describes)
        started = rt.clock.time() - (rt.clock.monotonic() - rt.started)
        self.started_at = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.started = int(started)

    @property
    def cfg(self) -> Config:
        return self.rt.cfg

    def forget(self, backend: str) -> None:
        """Drop what was kept of ``backend``'s listings (its models changed)."""
        self._cache.forget(backend)

    def local_ollamas(self) -> list[Backend]:
        return [
            b
            for b in self.cfg.backends.values()
            if b.kind == "ollama" and b.location == "local" and b.enabled
        ]

    def is_local_ollama(self, b: Backend) -> bool:
        return b.kind == "ollama" and b.location == "local" and b.enabled

    # ------------------------------------------------------------------ asking a local Ollama

    async def _get(self, b: Backend, path: str) -> Any:
        """GET a local Ollama's listing as JSON; None if it does not answer well."""
        assert self.rt.pool is not None
        try:
            status, raw = await self.rt.pool.get(
                b.url,
                path,
                tuple(self.rt.auth_headers(b).items()),
                timeout=META_TIMEOUT,
                limit=LIST_LIMIT,
            )
            return json.loads(raw) if status == 200 else None
        except (BackendError, ValueError):
            return None

    async def _listing(self, b: Backend) -> dict[str, dict[str, Any]]:
        """What a local Ollama lists (``name:tag`` -> its entry), kept a few seconds."""
        key = ("tags", b.name, b.url)
        found, value = self._cache.get(key)
        if found:
            return value  # type: ignore[no-any-return]
        doc = await self._get(b, "/api/tags")
        out: dict[str, dict[str, Any]] = {}
        entries = doc.get("models") if isinstance(doc, dict) else None
        for e in entries[:LIST_MAX] if isinstance(entries, list) else ():
            name = e.get("model") or e.get("name") if isinstance(e, dict) else None
            if isinstance(name, str):
                out[ollama_name(name)] = e
        self._cache.put(key, out)
        return out

    async def _show_upstream(
        self, b: Backend, upstream: str, verbose: bool
    ) -> dict[str, Any] | None:
        key = ("show", b.name, b.url, upstream, str(verbose))
        found, value = self._cache.get(key)
        if found:
            return value  # type: ignore[no-any-return]
        assert self.rt.pool is not None
        body: dict[str, Any] = {"model": upstream, **({"verbose": True} if verbose else {})}
        r: Response | None = None
        doc: Any = None
        try:
            async with asyncio.timeout(META_TIMEOUT):
                r = await self.rt.pool.request(
                    "POST",
                    b.url,
                    "/api/show",
                    (("Content-Type", "application/json"), *self.rt.auth_headers(b).items()),
                    replies.dumps(body),
                    connect_timeout=META_TIMEOUT,
                )
                raw = await r.read(int(self.cfg.server.max_answer_mb * (1 << 20)))
            doc = json.loads(raw) if r.status == 200 else None
        except (BackendError, ValueError, TimeoutError):
            close_quietly(r)
        except BaseException:
            close_quietly(r)
            raise
        out = doc if isinstance(doc, dict) else None
        self._cache.put(key, out)
        return out

    # ------------------------------------------------------------------ descriptions

    def _details(self, m: Model) -> dict[str, Any]:
        b = self.cfg.backends[m.backend]
        fam = catalog.family(m)
        return {
            "parent_model": "",
            "format": "gguf" if b.kind == "ollama" and b.location == "local" else "",
            "family": fam,
            "families": [fam],
            "parameter_size": catalog.parameter_size(m.params_b),
            "quantization_level": catalog.quantization(m),
        }

    def _tag(self, e: catalog.Entry, listings: Mapping[str, dict[str, dict[str, Any]]]) -> Any:
        entry: dict[str, Any] = {
            "name": e.name,
            "model": e.name,
            "modified_at": self.started_at,
            "size": 0,
        }
        if e.kind == "model":
            m = e.models[0]
            details = self._details(m)
            entry["digest"] = _digest(m.backend, m.upstream)
            own = listings.get(m.backend, {}).get(ollama_name(m.upstream))
            if own is not None:  # what the local Ollama says of it
                for k, kind in (("modified_at", str), ("size", int), ("digest", str)):
                    if isinstance(own.get(k), kind):
                        entry[k] = own[k]
                theirs = own.get("details")
                if isinstance(theirs, dict):
                    details.update(
                        (k, v)
                        for k, v in theirs.items()
                        if k in (*_DETAIL_KEYS, "quantization_level")
                        and isinstance(v, str | list | None)
                    )
        else:
            entry["digest"] = _digest(e.kind, e.name)
            details = _marked(e.target if e.kind == "alias" else None)
        entry["details"] = details
        return entry

    def _show_model(self, m: Model, state: LiveState) -> dict[str, Any]:
        b = self.cfg.backends[m.backend]
        fam = catalog.family(m)
        return {
            "license": "",
            "modelfile": (
                f"# {m.name}: served by traywire from backend {b.name} ({b.kind}, {b.location})\n"
                f"FROM {m.upstream}\nPARAMETER num_ctx {m.context}\n"
            ),
            "parameters": f"num_ctx {m.context}",
            "template": "",
            "details": self._details(m),
            "model_info": {
                "general.architecture": fam,
                "general.basename": m.name,
                "general.parameter_count": round(m.params_b * 1e9),
                f"{fam}.context_length": m.context,
            },
            "capabilities": catalog.ollama_capabilities(features_of(m, state)),
            "modified_at": self.started_at,
        }

    def _adjust(self, doc: dict[str, Any], m: Model, state: LiveState) -> dict[str, Any]:
        """A local Ollama's own /api/show answer, with traywire's window and
        (where the config declares them) features."""
        info = doc.get("model_info")
        info = doc["model_info"] = dict(info) if isinstance(info, dict) else {}  # not the kept one
        arch = info.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            arch = info["general.architecture"] = catalog.family(m)
        key = f"{arch}.context_length"
        native = info.get(key)
        if not isinstance(native, int) or native > m.context:
            info[key] = m.context
        caps = doc.get("capabilities")
        said = [c for c in caps if isinstance(c, str)] if isinstance(caps, list) else []
        if m.features_declared or not said:
            extra = [c for c in said if c in catalog.OLLAMA_ONLY]
            doc["capabilities"] = catalog.ollama_capabilities(features_of(m, state)) + extra
        doc.setdefault("modified_at", self.started_at)
        return doc

    def _show_route(self, e: catalog.Entry, state: LiveState) -> dict[str, Any]:
        fam = catalog.ROUTE_FAMILY
        route = self.cfg.routes.get(e.target)
        about = route.description if route is not None else "picks the use case from the request"
        names = ", ".join(m.name for m in e.models)
        return {
            "license": "",
            "modelfile": f"# traywire route {e.target}: {about}\n# candidates: {names}\n",
            "parameters": "",
            "template": "",
            "details": _marked(None),
            "model_info": {
                "general.architecture": fam,
                "general.basename": e.target,
                "general.description": about,
                f"{fam}.context_length": catalog.context(e),
            },
            "capabilities": catalog.ollama_capabilities(catalog.features(e, state)),
            "modified_at": self.started_at,
        }

    # ------------------------------------------------------------------ handlers

    async def root(self, request: web.Request) -> web.Response:
        """``GET /`` and ``HEAD /``, as Ollama answers them (a browser asking
        for HTML is sent to the dashboard first, by the guard)."""
        return web.Response(text="Ollama is running", content_type="text/plain")

    async def version(self, request: web.Request) -> web.Response:
        return replies.json_response({"version": OLLAMA_COMPAT_VERSION, "traywire": __version__})

    async def tags(self, request: web.Request) -> web.Response:
        entries = catalog.listing(self.cfg)
        listings = await self.listings({e.models[0].backend for e in entries if e.kind == "model"})
        return replies.json_response({"models": [self._tag(e, listings) for e in entries]})

    async def listings(self, backends: set[str]) -> dict[str, dict[str, dict[str, Any]]]:
        wanted = [b for b in self.local_ollamas() if b.name in backends]
        got = await asyncio.gather(*(self._listing(b) for b in wanted))
        return {b.name: g for b, g in zip(wanted, got, strict=True)}

    async def v1_models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the same names in the same order, OpenAI's shape,
        with traywire's word on each (kind, backends, an alias's target)."""
        data = []
        for e in catalog.listing(self.cfg):
            extra: dict[str, Any] = {
                "kind": e.kind,
                "backends": sorted({m.backend for m in e.models}),
            }
            if e.kind == "alias":
                extra["target"] = e.target
            data.append(
                {
                    "id": e.name,
                    "object": "model",
                    "created": self.started,
                    "owned_by": "traywire",
                    "traywire": extra,
                }
            )
        return replies.json_response({"object": "list", "data": data})

    async def v1_model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{model}``: one listed name."""
        name = request.match_info["model"]
        if catalog.kind_of(name, self.cfg) is None:
            return replies.error("openai", 404, f"unknown model {name!r}", code="model_not_found")
        return replies.json_response(
            {"id": name, "object": "model", "created": self.started, "owned_by": "traywire"}
        )

    async def show(self, request: web.Request) -> web.Response:
        try:
            body = await json_body(request)
            name = model_name_in(body, "model", "name")
        except Bad as bad:
            return ollama_error(bad.status, bad.message)
        try:
            e = catalog.entry(name, self.cfg)
        except UnknownModelError:
            return ollama_error(404, f"model '{name}' not found")
        state = self.rt.snapshot()
        if len(e.models) == 1 and e.models[0].name == e.target:
            m = e.models[0]
            b = self.cfg.backends[m.backend]
            if self.is_local_ollama(b):
                doc = await self._show_upstream(b, m.upstream, body.get("verbose") is True)
                if doc is not None:
                    return replies.json_response(REDACTOR.obj(self._adjust(dict(doc), m, state)))
            return replies.json_response(self._show_model(m, state))
        return replies.json_response(self._show_route(e, state))

    async def ps(self, request: web.Request) -> web.Response:
        cfg = self.cfg
        public: dict[tuple[str, str], str] = {}
        for m in cfg.models.values():
            public.setdefault((m.backend, ollama_name(m.upstream)), m.name)
        backends = self.local_ollamas()
        docs = await asyncio.gather(*(self._get(b, "/api/ps") for b in backends))
        out: list[dict[str, Any]] = []
        for b, doc in zip(backends, docs, strict=True):
            entries = doc.get("models") if isinstance(doc, dict) else None
            for entry in entries[:LIST_MAX] if isinstance(entries, list) else ():
                if not isinstance(entry, dict):
                    continue
                upstream = entry.get("model") or entry.get("name")
                name = (
                    public.get((b.name, ollama_name(upstream)))
                    if isinstance(upstream, str)
                    else None
                )
                if name is not None:
                    entry["name"] = entry["model"] = name
                    entry["traywire_upstream"] = upstream
                entry["traywire_backend"] = b.name
                out.append(entry)
        health = self.rt.health
        for m in cfg.models.values():
            b = cfg.backends[m.backend]
            if b.kind == "ollama" or b.location != "local" or not b.enabled:
                continue
            if b.exclusive_group and self.rt.member(b.exclusive_group) != b.name:
                continue
            if health.health(b.name) not in ("up", "degraded"):
                continue
            if m.upstream in health.missing_models(b.name):
                continue
            out.append(
                {
                    "name": m.name,
                    "model": m.name,
                    "size": 0,
                    "digest": _digest(m.backend, m.upstream),
                    "details": self._details(m),
                    "expires_at": _FAR,
                    "size_vram": 0,
                    "context_length": m.context,
                    "traywire_upstream": m.upstream,
                    "traywire_backend": b.name,
                }
            )
        return replies.json_response({"models": out})


def _digest(*parts: str) -> str:
    """A stable sha256 for a name traywire describes itself (Ollama lists one
    per model; clients key on it)."""
    return hashlib.sha256("\0".join(("traywire", *parts)).encode()).hexdigest()


def _marked(alias_of: str | None) -> dict[str, Any]:
    """The details of a route (None) or of an alias of ``alias_of``."""
    fam = catalog.ALIAS_FAMILY if alias_of is not None else catalog.ROUTE_FAMILY
    return {
        "parent_model": alias_of or "",
        "format": "",
        "family": fam,
        "families": [fam],
        "parameter_size": "",
        "quantization_level": "",
    }


def close_quietly(r: Response | None) -> None:
    if r is not None:
        r.close()


OLLAMA: web.AppKey[OllamaApi] = web.AppKey("ollama_api", OllamaApi)


def setup(app: web.Application, rt: Runtime) -> OllamaApi:
    api = app[OLLAMA] = OllamaApi(rt)
    return api
