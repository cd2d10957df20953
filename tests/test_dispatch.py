"""The app's plain paths go straight to their handler (`traywire.dispatch`),
and every request the shortcut does not take is answered as before, by
aiohttp's router: the same answers either way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.web_urldispatcher import UrlDispatcher
from proxy_fixtures import fakes, make_config, model, openai_backend, proxies, raw

__all__ = ["fakes", "proxies"]

CHAT = {"model": "one", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths aiohttp's router was asked to resolve."""
    seen: list[str] = []
    original = UrlDispatcher.resolve

    async def counting(self: UrlDispatcher, request: Any) -> Any:
        seen.append(request.raw_path)
        return await original(self, request)

    monkeypatch.setattr(UrlDispatcher, "resolve", counting)
    yield seen


@pytest.fixture
def proxy(fakes: Any, proxies: Any) -> Any:
    fv = fakes("openai", name="vl", models=["M1"])
    return proxies(make_config({"b": openai_backend(fv)}, {"one": model("b", "M1")}))


def test_plain_paths_skip_the_router_and_are_served(proxy: Any, resolved: list[str]) -> None:
    r = raw(proxy, "POST", "/v1/chat/completions", CHAT)
    assert r.status == 200
    assert r.json()["choices"][0]["message"]["content"]
    assert r.headers["x-traywire-backend"] == "b"  # the guard and the handler ran
    assert raw(proxy, "GET", "/health").status == 200
    assert raw(proxy, "HEAD", "/health").status == 200
    assert resolved == []


def test_every_other_request_goes_through_the_router(proxy: Any, resolved: list[str]) -> None:
    # a query string, an escaped path, a path of no route, a method the path
    # does not take, an Expect header: each answered as aiohttp's router does
    assert raw(proxy, "GET", "/health?verbose=1").status == 200
    assert raw(proxy, "POST", "/v1%2Fchat/completions", CHAT).status == 404
    nowhere = raw(proxy, "POST", "/v1/nowhere", CHAT)
    assert nowhere.status == 404 and "error" in nowhere.json()
    wrong = raw(proxy, "GET", "/v1/chat/completions")
    assert wrong.status == 405 and "error" in wrong.json()
    expect = raw(proxy, "POST", "/v1/chat/completions", CHAT, {"Expect": "100-continue"})
    assert expect.status == 200
    assert resolved == [
        "/health?verbose=1",
        "/v1%2Fchat/completions",
        "/v1/nowhere",
        "/v1/chat/completions",
        "/v1/chat/completions",
    ]


def test_the_guard_still_refuses_on_the_short_path(proxy: Any, resolved: list[str]) -> None:
    r = raw(proxy, "POST", "/v1/chat/completions", CHAT, {"Host": "evil.example:80"})
    assert r.status == 403 and r.json()["error"]["code"] == "forbidden_host"
    assert resolved == []
