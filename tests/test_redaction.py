"""Keys never leave: a cloud backend that echoes the key it was sent gets it
cut out of every output channel - answers (passed through, failed over, cut
streams), log lines, the request log on disk, the dashboard API, /status and
/metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import openai
import pytest
from proxy_fixtures import (
    USER,
    clients,
    fakes,
    make_config,
    model,
    ollama_backend,
    openai_backend,
    proxies,
    raw,
    wait_until,
)

from traywire.redact import MARK, Redactor

__all__ = ["clients", "fakes", "proxies"]

KEY = "sk-live-0123456789abcdefSECRET"
TOKEN_ECHO = f"Authorization: Bearer {KEY}"


def test_redactor_cuts_every_secret_and_nothing_else() -> None:
    r = Redactor()
    assert r.text("nothing to hide") == "nothing to hide"
    r.set_secrets("keys", ["abcdefgh12345678", None, "short", "abcdefgh1234567890"])
    r.set_secrets("token", ["tok-tok-tok-tok"])
    assert r.text("k=abcdefgh1234567890 t=tok-tok-tok-tok") == f"k={MARK} t={MARK}"
    assert r.data(b"x abcdefgh12345678 y") == f"x {MARK} y".encode()
    assert r.text("short stays") == "short stays"  # too short to be told from text
    assert r.obj({"a": ["abcdefgh12345678", 3], "abcdefgh12345678": None}) == {
        "a": [MARK, 3],
        MARK: None,
    }
    r.set_secrets("keys", [])  # the keys were deleted: no longer cut
    assert r.text("abcdefgh12345678") == "abcdefgh12345678"


def test_a_key_echoed_by_a_backend_reaches_no_output(
    fakes: Any, proxies: Any, clients: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fc = fakes("openai", name="cloud", models=["C1"])
    fo = fakes("ollama", name="oll", models=["m1"])
    db = tmp_path / "requests.sqlite3"
    cfg = make_config(
        {
            "c": openai_backend(fc, "cloud", key="env:TRAYWIRE_TEST_CLOUD_KEY"),
            "a": ollama_backend(fo),
        },
        {"cloudy": model("c", "C1", tier="cloud_standard"), "one": model("a", "m1")},
        fallbacks={"cloudy": ["one"]},
        log={"path": str(db)},
        health={"failure_threshold": 10},
    )
    p = proxies(cfg, keys={"c": KEY})
    oc = clients.openai(p)
    bodies: list[str] = []

    # 1. a client error passed through as it is (401)
    fc.status(401, body={"error": {"message": f"invalid key; you sent {TOKEN_ECHO}"}}, times=1)
    with pytest.raises(openai.AuthenticationError) as ei:
        oc.chat.completions.create(model="cloudy", messages=USER)
    bodies.append(ei.value.response.text)
    assert MARK in ei.value.message
    assert fc.requests[-1].headers["Authorization"] == f"Bearer {KEY}"  # it went to its own

    # 2. every attempt failing: the summary lists the backend's words
    fc.status(500, body={"error": {"message": f"upstream rejected {TOKEN_ECHO}"}})
    fo.refuse()
    with pytest.raises(openai.InternalServerError) as ei2:
        oc.chat.completions.create(model="cloudy", messages=USER)
    bodies.append(ei2.value.response.text)
    assert MARK in ei2.value.response.text
    fo.revive()

    # 3. a stream whose backend puts an error event in it (failed over: the
    # fallback is down too, so the summary carries the backend's words)
    first = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "C1"}
    first["choices"] = [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]
    sse = (
        f"data: {json.dumps(first)}\n\n"
        f"data: {json.dumps({'error': {'message': f'engine died; {TOKEN_ECHO}'}})}\n\n"
    )
    fc.status(200, body=sse.encode(), headers={"Content-Type": "text/event-stream"}, times=1)
    fo.refuse()
    body = {"model": "cloudy", "messages": USER, "stream": True}
    r = raw(p, "POST", "/v1/chat/completions", body)
    assert r.status == 503 and b"engine died" in r.body
    bodies.append(r.body.decode())
    fo.revive()

    # 4. a successful answer passed through as the backend's own bytes
    answer = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "cloudy",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"debug: {TOKEN_ECHO}"},
                "finish_reason": "stop",
            }
        ],
    }
    fc.status(200, body=answer, times=1)
    c = oc.chat.completions.create(model="cloudy", messages=USER)
    assert c.choices[0].message.content == f"debug: Authorization: Bearer {MARK}"

    for body in bodies:
        assert KEY not in body, body

    # the request log on disk, the dashboard's view of it, status and metrics
    assert wait_until(lambda: len(raw(p, "GET", "/ui/api/requests").json()["requests"]) >= 4, 10)
    for path in ("/ui/api/requests", "/status", "/metrics"):
        text = raw(p, "GET", path).body.decode()
        assert KEY not in text, path
    listed = raw(p, "GET", "/ui/api/requests").json()["requests"]
    for rid in (row["id"] for row in listed):
        assert KEY not in raw(p, "GET", f"/ui/api/requests/{rid}").body.decode()
    p.stop()  # the log is flushed and closed
    on_disk = b"".join(f.read_bytes() for f in tmp_path.glob("requests.sqlite3*"))
    assert b"engine died" in on_disk or b"rejected" in on_disk  # the errors are there...
    assert KEY.encode() not in on_disk  # ...without the key

    # every log line
    for record in caplog.records:
        assert KEY not in record.getMessage(), record.getMessage()
