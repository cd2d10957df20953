"""The dashboard's HTTP side: the page and its headers, the JSON under /ui/api
(request log with filters and paging, one request, latency, keys, reload),
the session token, and key values that never come back."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import CHAT_ROUTE, KEY_NAME, Dash, session_of, start_dash
from harness import ProxyThread
from proxy_fixtures import (
    USER,
    Raw,
    clients,
    fakes,
    make_config,
    model,
    ollama_backend,
    proxies,
    raw,
    status_of,
    wait_logged,
)

from traywire.observe import dashboard
from traywire.observe.logqueries import LogQueries
from traywire.proxy.runtime import Runtime
from traywire.server import Server
from traywire.types import OUTCOMES

__all__ = ["clients", "fakes", "proxies"]


@pytest.fixture
def dash(fakes: Any, proxies: Any, tmp_path: Path) -> Dash:
    return start_dash(fakes, proxies, tmp_path)


def call(
    p: ProxyThread,
    method: str,
    path: str,
    body: Any = None,
    *,
    session: str | None = None,
    headers: dict[str, str] | None = None,
) -> Raw:
    hdrs = dict(headers or {})
    if session is not None:
        hdrs["X-Traywire-Session"] = session
    if body is None and method in ("POST", "DELETE"):
        body = {}
    return raw(p, method, path, body, hdrs)


def logged(d: Dash, n: int) -> LogQueries:
    return wait_logged(d.p, n)


# --------------------------------------------------------------------------- the page


def test_page_headers_session_and_static_files(dash: Dash) -> None:
    p = dash.p
    r = raw(p, "GET", "/ui")
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.body.decode()
    token = session_of(p)
    assert len(token) >= 40 and token in html
    # no inline script, no style attribute, nothing from another origin
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert "style=" not in html and "http://" not in html and "https://" not in html
    assert "{{session}}" not in html
    # a fresh app, a fresh token
    other = Server(Runtime(p.cfg), "127.0.0.1", 0)
    assert other.app[dashboard.SESSION] != token

    for name, ctype in (
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ):
        r = raw(p, "GET", f"/ui/{name}")
        assert r.status == 200 and r.headers["content-type"].startswith(ctype), (name, r)
        assert r.body
    assert raw(p, "GET", "/ui/index.html").status == 404
    assert raw(p, "GET", "/ui/nope.js").status == 404
    r = raw(p, "GET", "/ui/")
    assert r.status == 302 and r.headers["location"] == "/ui"
    # a browser asking for / goes to the dashboard; API clients get Ollama's text
    r = raw(p, "GET", "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status == 302 and r.headers["location"] == "/ui"
    r = raw(p, "GET", "/")
    assert r.status == 200 and r.body == b"Ollama is running"


def test_foreign_host_gets_no_page(dash: Dash) -> None:
    r = raw(dash.p, "GET", "/ui", headers={"Host": f"evil.example:{dash.p.server.port}"})
    assert r.status == 403
    assert b"traywire-session" not in r.body


# --------------------------------------------------------------------------- reading


def test_meta(dash: Dash) -> None:
    r = raw(dash.p, "GET", "/ui/api/meta")
    assert r.status == 200 and r.headers["cache-control"] == "no-store"
    m = r.json()
    assert m["backends"] == ["a", "b", "c"]
    assert "chat" in m["capabilities"] and "code" in m["capabilities"]
    assert m["outcomes"] == list(OUTCOMES)
    assert m["preferences"][0] == "auto"
    assert m["groups"] == {} and m["log"] is True and m["config_file"] is None
    # each model with its backend and tier (the request details show the tier)
    assert m["models"]["cloudy"] == {
        "backend": "c",
        "tier": "cloud_standard",
        "capabilities": ["chat"],
        "context": 8192,
    }
    assert m["models"]["one"]["tier"] == "local"
    assert m["routes"] == {"chat": {"strategy": "direct", "description": CHAT_ROUTE}}


def test_meta_lists_routes_with_their_description(fakes: Any, proxies: Any) -> None:
    fo = fakes("ollama", name="oll", models=["m1", "m2"])
    routes = {
        "chat": {
            "strategy": "direct",
            "candidates": ["one"],
            "description": "everyday chat, on the small model",
        },
        "code": {"strategy": "weighted", "candidates": ["two", "one"]},
    }
    cfg = make_config(
        {"a": ollama_backend(fo)},
        {"one": model("a", "m1"), "two": model("a", "m2", tier="cloud_entry")},
        routes=routes,
        log={"enabled": False},
    )
    m = raw(proxies(cfg), "GET", "/ui/api/meta").json()
    assert m["routes"] == {
        "chat": {"strategy": "direct", "description": "everyday chat, on the small model"},
        "code": {"strategy": "weighted", "description": ""},
    }
    assert {name: x["tier"] for name, x in m["models"].items()} == {
        "one": "local",
        "two": "cloud_entry",
    }


def test_requests_filters_paging_and_one_request(dash: Dash, clients: Any) -> None:
    oc = clients.openai(dash.p)
    oc.chat.completions.create(model="one", messages=USER)  # 1: a
    oc.chat.completions.create(model="two", messages=USER)  # 2: b
    dash.fo.status(500, times=1)
    oc.chat.completions.create(model="one", messages=USER)  # 3: a failed, then b
    dash.fo.status(400, times=1)
    with pytest.raises(Exception):  # noqa: B017 - any client error
        oc.chat.completions.create(model="one", messages=USER)  # 4: client error on a
    oc.chat.completions.create(model="two", messages=USER)  # 5: b
    logged(dash, 5)

    def get(query: str = "") -> dict[str, Any]:
        r = raw(dash.p, "GET", "/ui/api/requests" + query)
        assert r.status == 200, r
        assert r.headers["cache-control"] == "no-store"
        return r.json()  # type: ignore[no-any-return]

    everything = get()
    assert everything["log"] is True and everything["next_before"] is None
    rows = everything["requests"]
    assert [r["requested"] for r in rows] == ["two", "one", "one", "two", "one"]
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True)
    assert all("plan" not in r and "skipped" not in r for r in rows)  # light rows
    assert [len(r["attempts"]) for r in rows] == [1, 1, 2, 1, 1]

    # filters
    assert {r["id"] for r in get("?backend=b")["requests"]} == {ids[0], ids[2], ids[3]}
    # a backend matches what it served and what it was tried for
    assert [r["id"] for r in get("?backend=a&outcome=served")["requests"]] == [ids[2], ids[4]]
    assert [r["id"] for r in get("?outcome=client_error")["requests"]] == [ids[1]]
    assert len(get("?capability=chat")["requests"]) == 5
    assert get("?capability=code")["requests"] == []
    assert get("?backend=nope")["requests"] == []

    # paging backwards
    page1 = get("?limit=2")
    assert [r["id"] for r in page1["requests"]] == ids[:2]
    assert page1["next_before"] == ids[1]
    page2 = get(f"?limit=2&before={page1['next_before']}")
    assert [r["id"] for r in page2["requests"]] == ids[2:4]
    page3 = get(f"?limit=2&before={page2['next_before']}")
    assert [r["id"] for r in page3["requests"]] == ids[4:]
    assert page3["next_before"] is None

    # bad queries
    for query in ("?limit=0", "?limit=x", "?limit=100000", "?before=-1", "?outcome=great"):
        r = raw(dash.p, "GET", "/ui/api/requests" + query)
        assert r.status == 400 and r.json()["error"], (query, r)

    # one request: plan with reasons, attempts with what went wrong
    r = raw(dash.p, "GET", f"/ui/api/requests/{ids[2]}")
    assert r.status == 200 and r.headers["cache-control"] == "no-store"
    one = r.json()
    assert [(a["model"], a["backend"]) for a in one["plan"]] == [("one", "a"), ("two", "b")]
    assert all(a["reason"] for a in one["plan"])
    first, second = one["attempts"]
    assert (first["backend"], first["outcome"], first["kind"]) == ("a", "failed", "server_error")
    assert "HTTP 500" in first["error"]
    assert (second["backend"], second["outcome"]) == ("b", "served")
    r = raw(dash.p, "GET", f"/ui/api/requests/{ids[0] + 100}")
    assert r.status == 404 and "no request" in r.json()["error"]
    assert raw(dash.p, "GET", "/ui/api/requests/abc").status == 404


def test_latency_series(dash: Dash, clients: Any) -> None:
    oc = clients.openai(dash.p)
    for _ in range(3):
        oc.chat.completions.create(model="two", messages=USER)
    dash.fo.status(500, times=1)
    oc.chat.completions.create(model="one", messages=USER)
    logged(dash, 4)
    r = raw(dash.p, "GET", "/ui/api/latency")
    assert r.status == 200 and r.headers["cache-control"] == "no-store"
    data = r.json()
    assert data["bucket_s"] == 60 and data["log"] is True
    assert set(data["backends"]) == {"a", "b", "c"}
    series = data["backends"]["b"]
    assert 59 <= len(series) <= 61
    assert sum(pt["count"] for pt in series) == 4
    assert all(set(pt) == {"t", "count", "avg_ms", "p95_ms", "max_ms", "failures"} for pt in series)
    assert sum(pt["failures"] for pt in data["backends"]["a"]) == 1
    assert sum(pt["count"] for pt in data["backends"]["c"]) == 0
    r = raw(dash.p, "GET", "/ui/api/latency?minutes=5&bucket=30")
    assert 9 <= len(r.json()["backends"]["b"]) <= 11
    assert raw(dash.p, "GET", "/ui/api/latency?bucket=1").status == 400


def test_without_a_request_log(fakes: Any, proxies: Any) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    p = proxies(
        make_config({"a": ollama_backend(fo)}, {"one": model("a", "m1")}, log={"enabled": False})
    )
    assert raw(p, "GET", "/ui/api/requests").json() == {
        "requests": [],
        "next_before": None,
        "log": False,
    }
    assert raw(p, "GET", "/ui/api/latency").json()["log"] is False
    assert raw(p, "GET", "/ui/api/requests/1").status == 404
    assert raw(p, "GET", "/ui/api/meta").json()["log"] is False


# --------------------------------------------------------------------------- keys


def test_keys_set_replace_delete_and_values_never_returned(
    dash: Dash, clients: Any, memory_keyring: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="traywire")
    p = dash.p
    s = session_of(p)
    v1 = "sk-test-first-value-0123456789abcdef"
    v2 = "sk-test-second-value-fedcba9876543210"
    answers: list[Raw] = []

    def do(method: str, path: str, body: Any = None) -> Raw:
        r = call(p, method, path, body, session=s)
        answers.append(r)
        return r

    listed = do("GET", "/ui/api/keys").json()
    assert listed == {
        "keys": [{"name": KEY_NAME, "kind": "keyring", "set": False, "backends": ["c"]}],
        "keyring": None,
    }

    r = do("POST", "/ui/api/keys", {"name": KEY_NAME, "value": v1})
    assert r.status == 200, r
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == {"name": KEY_NAME, "set": True, "replaced": False, "backends": ["c"]}
    assert memory_keyring.entries[("traywire", KEY_NAME)] == v1
    assert p.call(lambda: p.rt.keys.get("c")) == v1  # in use at once
    assert do("GET", "/ui/api/keys").json()["keys"][0]["set"] is True
    # the cloud backend gets it
    clients.openai(p).chat.completions.create(model="cloudy", messages=USER)
    assert dash.fc.last_request is not None
    assert dash.fc.last_request.headers["Authorization"] == f"Bearer {v1}"

    r = do("POST", "/ui/api/keys", {"name": KEY_NAME, "value": v2})
    assert r.status == 200 and r.json()["replaced"] is True
    assert memory_keyring.entries[("traywire", KEY_NAME)] == v2
    assert p.call(lambda: p.rt.keys.get("c")) == v2

    # a key no backend uses yet can be stored too
    r = do("POST", "/ui/api/keys", {"name": "spare", "value": "spare-value-123"})
    assert r.status == 200 and r.json()["backends"] == []

    r = do("DELETE", f"/ui/api/keys/{KEY_NAME}")
    assert r.status == 200 and r.json() == {"name": KEY_NAME, "deleted": True, "backends": ["c"]}
    assert ("traywire", KEY_NAME) not in memory_keyring.entries
    assert p.call(lambda: p.rt.keys.get("c")) is None
    assert status_of(p)["backends"]["c"]["no_key"] is True
    r = do("DELETE", f"/ui/api/keys/{KEY_NAME}")
    assert r.status == 200 and r.json()["deleted"] is False

    # never a value: not in any answer, not in /status, not in the log
    answers += [raw(p, "GET", "/status"), raw(p, "GET", "/ui/api/requests")]
    logged(dash, 1)
    for rid in [row["id"] for row in answers[-1].json()["requests"]]:
        answers.append(raw(p, "GET", f"/ui/api/requests/{rid}"))
    for a in answers:
        blob = a.body.decode() + json.dumps(a.headers)
        assert v1 not in blob and v2 not in blob and "spare-value-123" not in blob
    assert v1 not in caplog.text and v2 not in caplog.text
    assert "spare-value-123" not in caplog.text


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": KEY_NAME, "value": ""}, 400, "empty"),
        ({"name": KEY_NAME, "value": "   "}, 400, "empty"),
        ({"name": KEY_NAME, "value": "abc\ndef-secretish"}, 400, "control"),
        ({"name": KEY_NAME, "value": " padded-secretish "}, 400, "whitespace"),
        ({"name": "bad name", "value": "whatever-secretish"}, 400, "invalid key name"),
        ({"name": "sk-proj-abcdefghijklmnopqrstuv", "value": "x-secretish"}, 400, "literal"),
        ({"name": KEY_NAME}, 400, "expected"),
        ({"name": KEY_NAME, "value": 5}, 400, "expected"),
        ({"name": KEY_NAME, "value": "x" * 9000}, 400, "longer"),
    ],
)
def test_key_errors_never_echo_the_value(
    dash: Dash, memory_keyring: Any, body: dict[str, Any], status: int, words: str
) -> None:
    r = call(dash.p, "POST", "/ui/api/keys", body, session=session_of(dash.p))
    assert r.status == status, r
    message = r.json()["error"]
    assert words in message.lower(), message
    value = body.get("value")
    if isinstance(value, str) and value.strip():
        assert value.strip() not in message
    assert memory_keyring.entries == {}


def test_keys_without_a_keyring(dash: Dash, fail_keyring: Any) -> None:
    s = session_of(dash.p)
    listed = call(dash.p, "GET", "/ui/api/keys").json()
    assert listed["keys"][0]["set"] is None
    assert "keyring is not usable" in listed["keyring"]
    r = call(dash.p, "POST", "/ui/api/keys", {"name": KEY_NAME, "value": "v-123456"}, session=s)
    assert r.status == 503 and "keyring is not usable" in r.json()["error"]
    assert "v-123456" not in r.body.decode()
    r = call(dash.p, "DELETE", f"/ui/api/keys/{KEY_NAME}", session=s)
    assert r.status == 503


def test_env_key_references_are_listed_read_only(
    fakes: Any, proxies: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fo = fakes("ollama", name="oll", models=["m1"])
    monkeypatch.setenv("TW_TEST_KEY", "env-secret-value-1")
    p = proxies(
        make_config(
            {"a": ollama_backend(fo, "cloud", key="env:TW_TEST_KEY")},
            {"one": model("a", "m1", tier="cloud_standard")},
        )
    )
    r = raw(p, "GET", "/ui/api/keys")
    assert r.json()["keys"] == [
        {"name": "TW_TEST_KEY", "kind": "env", "set": True, "backends": ["a"]}
    ]
    assert b"env-secret-value-1" not in r.body


# --------------------------------------------------------------------------- the session token


def test_changes_need_the_session_token(dash: Dash, memory_keyring: Any) -> None:
    p = dash.p
    s = session_of(p)
    port = p.server.port
    body = {"name": KEY_NAME, "value": "value-123456"}
    own = {"Origin": f"http://127.0.0.1:{port}"}
    refused = [
        call(p, "POST", "/ui/api/keys", body),  # no token
        call(p, "POST", "/ui/api/keys", body, session="wrong"),
        call(p, "POST", "/ui/api/keys", body, session=s + "x"),
        call(p, "POST", "/ui/api/keys", body, session="", headers=own),
        call(p, "DELETE", f"/ui/api/keys/{KEY_NAME}"),
        call(p, "POST", "/ui/api/reload"),
        # the right token from another origin (another port of this machine, another site)
        call(p, "POST", "/ui/api/keys", body, session=s, headers={"Origin": "http://127.0.0.1:1"}),
        call(p, "POST", "/ui/api/keys", body, session=s, headers={"Origin": "http://evil.example"}),
        call(p, "POST", "/ui/api/keys", body, session=s, headers={"Origin": "null"}),
    ]
    for r in refused:
        assert r.status == 403, r
    # every answer under /ui is no-store, refusals of foreign origins included
    assert all(r.headers["cache-control"] == "no-store" for r in refused)
    assert "X-Traywire-Session" in refused[0].json()["error"]
    # a form's content type, even with the token
    r = raw(
        p,
        "POST",
        "/ui/api/keys",
        b"name=cloud_key&value=value-123456",
        {"Content-Type": "application/x-www-form-urlencoded", "X-Traywire-Session": s},
    )
    assert r.status == 415
    assert memory_keyring.entries == {}
    # the page's own origin with the token: fine
    r = call(p, "POST", "/ui/api/keys", body, session=s, headers=own)
    assert r.status == 200, r
    assert memory_keyring.entries == {("traywire", KEY_NAME): "value-123456"}
    # reading needs no token
    assert call(p, "GET", "/ui/api/keys").status == 200


def test_browser_admin_calls_need_the_session_token(dash: Dash) -> None:
    p = dash.p
    s = session_of(p)
    own = {"Origin": f"http://127.0.0.1:{p.server.port}"}
    # a browser (it sends Origin) without the token: refused, even from the own origin
    r = call(p, "POST", "/admin/preference", {"preference": "local_only"}, headers=own)
    assert r.status == 403 and "X-Traywire-Session" in r.json()["error"]
    r = call(p, "POST", "/admin/preference", {"preference": "local_only"}, session="x", headers=own)
    assert r.status == 403
    assert status_of(p)["preference"] == "auto"
    # another localhost port, with a form: refused whatever it sends
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://127.0.0.1:9"}
    r = raw(p, "POST", "/admin/preference", b"preference=local_only", form)
    assert r.status == 403
    r = raw(p, "POST", "/admin/preference", b"preference=local_only", {**form, "Origin": "null"})
    assert r.status == 403
    assert status_of(p)["preference"] == "auto"
    # the dashboard (own origin + token)
    r = call(p, "POST", "/admin/preference", {"preference": "local_only"}, session=s, headers=own)
    assert r.status == 200
    assert status_of(p)["preference"] == "local_only"
    # local clients without an Origin (the tray, curl) are unchanged
    r = call(p, "POST", "/admin/preference", {"preference": "prefer_cloud"})
    assert r.status == 200
    assert status_of(p)["preference"] == "prefer_cloud"


# --------------------------------------------------------------------------- reload


GOOD = """\
extends: none
backends:
  a: {{kind: ollama, url: "{url}", location: local}}
models:
  one: {{backend: a, upstream: m1, params_b: 8, tier: local, capabilities: [chat], context: 8192}}
{more}"""


def test_reload_good_and_bad_config(fakes: Any, tmp_path: Path) -> None:
    from traywire import config

    fo = fakes("ollama", name="oll", models=["m1", "m2"])
    path = tmp_path / "traywire.yaml"
    path.write_text(GOOD.format(url=fo.url, more=""))
    p = ProxyThread(config.load(path), config_file=str(path))
    with p:
        s = session_of(p)
        assert raw(p, "GET", "/ui/api/meta").json()["config_file"] == str(path)
        assert [m["id"] for m in raw(p, "GET", "/v1/models").json()["data"]] == ["one"]

        more = (
            "  two: {backend: a, upstream: m2, params_b: 8, tier: local, capabilities: [chat],"
            " context: 8192}\n"
        )
        path.write_text(GOOD.format(url=fo.url, more="") + more)
        r = call(p, "POST", "/ui/api/reload", session=s)
        assert r.status == 200, r
        assert r.json()["ok"] is True and "1 backends, 2 models" in r.json()["message"]
        assert r.json()["restart_needed"] is False
        assert r.headers["cache-control"] == "no-store"
        assert sorted(m["id"] for m in raw(p, "GET", "/v1/models").json()["data"]) == [
            "one",
            "two",
        ]

        # a typo: the located error, and the running config stays
        path.write_text(GOOD.format(url=fo.url, more="") + more + "preferenc: auto\n")
        r = call(p, "POST", "/ui/api/reload", session=s)
        assert r.status == 400, r
        message = r.json()["error"]
        assert str(path) in message and ":7 " in message and "preferenc" in message, message
        assert sorted(m["id"] for m in raw(p, "GET", "/v1/models").json()["data"]) == [
            "one",
            "two",
        ]
        # an unreadable file
        path.unlink()
        r = call(p, "POST", "/ui/api/reload", session=s)
        assert r.status == 400 and "cannot read" in r.json()["error"]

        # server settings need a restart: said so
        path.write_text(GOOD.format(url=fo.url, more="server: {port: 1}\n"))
        r = call(p, "POST", "/ui/api/reload", session=s)
        assert r.status == 200 and r.json()["restart_needed"] is True


def test_server_passes_the_config_file(tmp_path: Path) -> None:
    from traywire import config

    cfg = config.load(None, user_file=False)
    server = Server(Runtime(cfg), "127.0.0.1", 0, config_file=tmp_path / "x.yaml")
    assert server.app[dashboard.CONFIG_FILE] == str(tmp_path / "x.yaml")
    assert Server(Runtime(cfg), "127.0.0.1", 0).app[dashboard.CONFIG_FILE] is None
