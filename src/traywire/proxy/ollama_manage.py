"""Ollama's model management through traywire: ``/api/pull``, ``/api/push``,
``/api/create``, ``/api/copy`` and ``/api/delete``, forwarded to the local
Ollama that holds (or is to hold) the model, progress streamed as it comes
(the decisions: `traywire.proxy.ollama_api`'s docstring). They change the
machine: `security` holds them to the admin calls' origin rule.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from ..core import catalog
from ..core.schema import Backend, Model
from ..errors import BackendError
from ..redact import REDACTOR
from . import replies
from .deadline import Deadline
from .ollama_api import (
    LINE_LIMIT,
    MANAGE_IDLE,
    MANAGE_TOTAL,
    NDJSON,
    SMALL_LIMIT,
    Bad,
    Handler,
    ManageOp,
    OllamaApi,
    close_quietly,
    json_body,
    log,
    model_name_in,
    ollama_error,
    ollama_name,
)
from .transport import Response


class ModelManagement:
    """The management handlers, beside the `OllamaApi` whose listings and
    cache they share."""

    def __init__(self, api: OllamaApi) -> None:
        self.api = api

    def manage(self, op: ManageOp) -> Handler:
        """``/api/{op}`` forwarded to the local Ollama that holds (or is to
        hold) the model (see the module docstring)."""
        path = f"/api/{op}"

        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                body = await json_body(request)
                backend, sent = await self._target(op, body)
            except Bad as bad:
                return ollama_error(bad.status, bad.message)
            return await self._forward(request, backend, request.method, path, sent)

        return handle

    def _model_named(self, name: str) -> Model | None:
        """The configured model ``name`` is: its public name, or its upstream id."""
        cfg = self.api.cfg
        if name in cfg.models:
            return cfg.models[name]
        if ":" not in name and f"{name}:latest" in cfg.models:
            return cfg.models[f"{name}:latest"]
        wanted = ollama_name(name)
        by_upstream = [m for m in cfg.models.values() if ollama_name(m.upstream) == wanted]
        local = [m for m in by_upstream if self.api.is_local_ollama(cfg.backends[m.backend])]
        found = local or by_upstream
        return found[0] if found else None

    def _refusal(self, op: str, name: str, m: Model | None) -> str:
        """Why ``name`` cannot be the subject of ``op``."""
        cfg = self.api.cfg
        if m is None:
            kind = catalog.kind_of(name, cfg)
            if kind == "alias":
                target = cfg.aliases.exact[name]
                return f"'{name}' is a traywire alias of '{target}', not an Ollama model"
            return f"'{name}' is a traywire route, not a model: {op} a model by its name"
        b = cfg.backends[m.backend]
        if b.kind == "ollama" and b.location == "local":
            return f"'{name}' is on the Ollama backend {b.name}, which is disabled in the config"
        if b.location == "cloud":
            where = "Ollama's cloud" if b.kind == "ollama" else "a cloud API"
            return (
                f"'{name}' is served by {where} (backend {b.name}), which traywire cannot "
                f"{op}: a cloud model is used by its name, nothing to install"
            )
        return (
            f"'{name}' is served by the OpenAI-compatible backend {b.name} ({b.url}), "
            f"which traywire cannot {op}: install its models with that server's own tools"
        )

    async def _target(self, op: ManageOp, body: dict[str, Any]) -> tuple[Backend, dict[str, Any]]:
        """The local Ollama to send ``body`` to, and the body with the names
        translated to that Ollama's; `Bad` when there is none."""
        cfg = self.api.cfg
        key = "model" if "model" in body or "name" not in body else "name"  # older clients: name
        if op == "copy":
            key = "source"
        name = model_name_in(body, key)
        m = self._model_named(name)
        source = body.get("from") if op == "create" else None
        fm = self._model_named(source) if isinstance(source, str) else None
        if fm is not None and not self.api.is_local_ollama(cfg.backends[fm.backend]):
            fm = None
        if m is not None:
            b = cfg.backends[m.backend]
            if not self.api.is_local_ollama(b):
                raise Bad(400, self._refusal(op, name, m))
        elif catalog.kind_of(name, cfg) in ("route", "auto", "alias"):
            raise Bad(400, self._refusal(op, name, None))
        elif fm is not None:
            b = cfg.backends[fm.backend]  # made next to the model it is made from
        else:
            b = await self._holder(name, new=op in ("pull", "create"))
        sent = dict(body)
        sent[key] = m.upstream if m is not None else name
        if fm is not None and fm.backend == b.name:
            sent["from"] = fm.upstream
        if op == "copy":
            dest = model_name_in(body, "destination")
            dm = self._model_named(dest)
            if dm is not None and dm.backend != b.name:
                raise Bad(
                    400,
                    f"'{dest}' is a model of backend {dm.backend}; '{name}' is on {b.name}: "
                    "a copy stays on one Ollama",
                )
            if dm is None and catalog.kind_of(dest, cfg) in ("route", "auto", "alias"):
                raise Bad(400, self._refusal(op, dest, None))
            sent["destination"] = dm.upstream if dm is not None else dest
        return b, sent

    async def _holder(self, name: str, *, new: bool) -> Backend:
        """The local Ollama for a name the config does not know: the one that
        lists it, else (or for a new model) the first."""
        local = self.api.local_ollamas()
        if not local:
            raise Bad(
                400,
                f"'{name}' is not a configured model and traywire has no enabled local "
                "Ollama backend to send it to",
            )
        if not new and len(local) > 1:
            listings = await self.api.listings({b.name for b in local})
            for b in local:
                if ollama_name(name) in listings.get(b.name, {}):
                    return b
        return local[0]

    async def _forward(
        self, request: web.Request, b: Backend, method: str, path: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        assert self.api.rt.pool is not None
        streamed = path not in ("/api/copy", "/api/delete") and body.get("stream") is not False
        headers = (("Content-Type", "application/json"), *self.api.rt.auth_headers(b).items())
        r: Response | None = None
        raw = b""
        wait = MANAGE_IDLE if streamed else MANAGE_TOTAL
        try:
            async with Deadline(wait, "first_byte_timeout", f"no answer within {wait:g}s"):
                r = await self.api.rt.pool.request(
                    method, b.url, path, headers, replies.dumps(body),
                    connect_timeout=b.timeouts.connect,
                )  # fmt: skip
                if r.status >= 400 or not r.headers.get("content-type", "").startswith(NDJSON):
                    raw = await r.read(SMALL_LIMIT)
        except BackendError as exc:
            close_quietly(r)
            return ollama_error(502, f"the Ollama backend {b.name} ({b.url}) failed: {exc}")
        except BaseException:
            close_quietly(r)
            raise
        assert r is not None
        if r.status < 300:
            self.api.forget(b.name)
        if r.status >= 400 or not r.headers.get("content-type", "").startswith(NDJSON):
            ctype = r.headers.get("content-type", "").split(";")[0] or "application/json"
            return web.Response(status=r.status, body=REDACTOR.data(raw), content_type=ctype)
        return await self._relay(request, b, r)

    async def _relay(self, request: web.Request, b: Backend, r: Response) -> web.StreamResponse:
        """Progress lines as they come, bounded; an error line if it breaks off."""
        response = web.StreamResponse(status=r.status)
        response.content_type = NDJSON
        response.headers["Cache-Control"] = "no-cache"
        problem = ""
        line = 0  # bytes of the line not yet ended
        try:
            await response.prepare(request)
            async with (
                Deadline(MANAGE_TOTAL, "total_timeout", f"still going after {MANAGE_TOTAL:g}s"),
                Deadline(MANAGE_IDLE, "idle_timeout", f"sent nothing for {MANAGE_IDLE:g}s") as idle,
            ):
                while True:
                    chunk = await r.readany()
                    if not chunk:
                        break
                    idle.extend()
                    first = chunk.find(b"\n")  # where the line begun before ends
                    if first < 0:
                        line += len(chunk)
                    else:
                        line, first = len(chunk) - chunk.rfind(b"\n") - 1, line + first
                    if max(line, first) > LINE_LIMIT:
                        raise BackendError("invalid_response", "a progress line over 1 MiB")
                    await response.write(REDACTOR.data(chunk))
            r.release()
        except BackendError as exc:
            r.close()
            problem = f"the Ollama backend {b.name} ({b.url}): {exc}"
        except (asyncio.CancelledError, ConnectionResetError, aiohttp.ClientConnectionResetError):
            r.close()  # the client went away: the upstream call ends with it
            raise
        except BaseException:
            r.close()
            raise
        self.api.forget(b.name)  # what it lists may have changed
        try:
            if problem:
                log.info("%s %s cut: %s", request.method, request.path, problem)
                await response.write(
                    (b"\n" if line else b"") + replies.dumps({"error": problem}) + b"\n"
                )
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return response
