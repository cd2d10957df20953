"""The Ollama API beyond inference (issue 13, item 3): /api/show, /api/tags and
/v1/models (order and metadata), /api/ps, legacy /api/embeddings, model
management (pull, push, create, copy, delete) forwarded to the local Ollama,
GET/HEAD /. Driven with the official ``ollama`` client against a real proxy
and fake backends (tests/fakes.py)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import ollama
import pytest
from proxy_fixtures import (
    Clients,
    Proxies,
    clients,
    fakes,
    make_config,
    ollama_backend,
    openai_backend,
    proxies,
    raw,
)

from traywire.core import catalog
from traywire.core.schema import Model
from traywire.proxy.ollama_api import OLLAMA_COMPAT_VERSION

__all__ = ["clients", "fakes", "proxies"]

NATIVE = 131072  # what the fake Ollama says its models hold
WINDOW = 8192  # what traywire is configured to plan with


class Setup:
    def __init__(self, fakes: Any, proxies: Proxies, clients: Clients) -> None:
        self.oll = fakes(
            "ollama",
            name="oll",
            models=["llama3.1:8b", "nomic-embed-text"],
            context_length=NATIVE,
            registry=["llama3.1:8b", "qwen3:4b", "nomic-embed-text"],
        )
        self.vllm = fakes("openai", name="vllm", models=["Qwen/Qwen2.5-Coder-7B-Instruct-AWQ"])
        self.lcpp = fakes("openai", name="lcpp", models=["default"], any_model=True)
        self.ocloud = fakes("ollama", name="ocloud", models=["gpt-oss:120b"])
        self.cloud = fakes("openai", name="cloud", models=["kimi-k2"])
        backends = {
            "ollama": ollama_backend(self.oll),
            "vllm_qwen": openai_backend(self.vllm),
            "llama_cpp": openai_backend(self.lcpp, single_model=True),
            "ollama_cloud": ollama_backend(self.ocloud, "cloud"),
            "cloudy": openai_backend(self.cloud, "cloud"),
        }
        models = {
            "llama3.1:latest": _model("ollama", "llama3.1:8b", 8, WINDOW, ["chat"]),
            "nomic-embed-text": {
                "backend": "ollama",
                "upstream": "nomic-embed-text:latest",
                "params_b": 0.137,
                "tier": "local",
                "features": ["embed"],
                "context": 2048,
            },
            "qwen-coder-vllm": _model(
                "vllm_qwen", "Qwen/Qwen2.5-Coder-7B-Instruct-AWQ", 7, 32768, ["code"]
            ),
            "llama-cpp-native": _model("llama_cpp", "default", 8, 4096, ["chat"]),
            "gpt-oss:120b-cloud": _model(
                "ollama_cloud", "gpt-oss:120b", 120, 131072, ["chat", "reasoning"]
            ),
            "kimi-k2:1t-cloud": {
                **_model("cloudy", "kimi-k2", 1000, 262144, ["chat"]),
                "features": ["chat", "completion", "vision"],
            },
        }
        routes = {
            "code": {"strategy": "direct", "candidates": ["qwen-coder-vllm", "llama3.1:latest"]},
            "chat": {
                "strategy": "direct",
                "description": "everyday chat",
                "candidates": ["llama3.1:latest", "kimi-k2:1t-cloud"],
            },
        }
        self.cfg = make_config(
            backends,
            models,
            routes=routes,
            aliases={"names": {"gpt-4o": "chat", "my-llama": "llama3.1:latest", "o3*": "code"}},
        )
        self.p = proxies(self.cfg, keys={"ollama_cloud": "k1", "cloudy": "k2"})
        self.c = clients.ollama(self.p)


def _model(
    backend: str, upstream: str, params: float, context: int, caps: list[str]
) -> dict[str, Any]:
    return {
        "backend": backend,
        "upstream": upstream,
        "params_b": params,
        "tier": "local",
        "capabilities": caps,
        "context": context,
    }


@pytest.fixture
def s(fakes: Any, proxies: Proxies, clients: Clients) -> Setup:
    return Setup(fakes, proxies, clients)


def _recent(when: datetime | None) -> bool:
    assert when is not None
    return abs(when.timestamp() - time.time()) < 3600


# --------------------------------------------------------------------------- show


def test_show_ollama_model_is_the_backends_own_with_traywires_window(s: Setup) -> None:
    got = s.c.show("llama3.1:latest")
    assert got.details is not None
    assert got.details.quantization_level == "Q4_K_M"  # the fake Ollama's own words
    assert got.details.format == "gguf"
    assert got.modelinfo is not None
    assert got.modelinfo["llama.context_length"] == WINDOW  # not the model's 131072
    assert got.modelinfo["general.parameter_count"] == 135_000_000  # untouched
    assert got.capabilities == ["completion"]
    assert got.modelfile == "FROM llama3.1:8b\n"
    shows = [r for r in s.oll.requests if r.path == "/api/show"]
    assert [r.json["model"] for r in shows] == ["llama3.1:8b"]  # the upstream id
    # `name` without a tag finds name:latest, as for chat
    assert s.c.show("llama3.1").modelinfo["llama.context_length"] == WINDOW  # type: ignore[index]
    assert len([r for r in s.oll.requests if r.path == "/api/show"]) == 1  # kept a few seconds
    # the features the config declares win over what Ollama says
    emb = s.c.show("nomic-embed-text")
    assert emb.capabilities == ["embedding"]
    assert emb.modelinfo["llama.context_length"] == 2048  # type: ignore[index]


def test_show_keeps_a_smaller_native_window(fakes: Any, proxies: Proxies, clients: Clients) -> None:
    oll = fakes("ollama", name="oll", models=["m1"], context_length=2048)
    cfg = make_config({"o": ollama_backend(oll)}, {"one": _model("o", "m1", 8, 8192, ["chat"])})
    got = clients.ollama(proxies(cfg)).show("one")
    assert got.modelinfo["llama.context_length"] == 2048  # type: ignore[index]


def test_show_synthesized_for_other_backends(s: Setup) -> None:
    vllm = s.c.show("qwen-coder-vllm")
    assert vllm.details is not None and vllm.modelinfo is not None
    assert vllm.details.family == "qwen2"
    assert vllm.details.parameter_size == "7B"
    assert vllm.details.quantization_level == "AWQ"
    assert vllm.details.format == ""
    assert vllm.modelinfo["general.architecture"] == "qwen2"
    assert vllm.modelinfo["qwen2.context_length"] == 32768
    assert vllm.capabilities == ["completion", "tools"]
    assert _recent(vllm.modified_at)
    assert "num_ctx 32768" in (vllm.parameters or "")

    cpp = s.c.show("llama-cpp-native")
    assert cpp.capabilities == ["completion"]  # no tools assumed of llama.cpp
    assert cpp.modelinfo["llama.context_length"] == 4096  # type: ignore[index]

    kimi = s.c.show("kimi-k2:1t-cloud")
    assert kimi.details is not None and kimi.details.parameter_size == "1T"
    assert kimi.details.family == "deepseek2"
    assert kimi.capabilities == ["completion", "vision"]

    cloud = s.c.show("gpt-oss:120b-cloud")  # Ollama's cloud: described, not asked
    assert cloud.details is not None and cloud.details.family == "gptoss"
    assert cloud.modelinfo["gptoss.context_length"] == 131072  # type: ignore[index]
    assert s.ocloud.count("/api/show") == 0
    assert s.vllm.count("/api/show") == 0 and s.cloud.count("/api/show") == 0


def test_show_route_alias_and_auto(s: Setup) -> None:
    code = s.c.show("code")
    assert code.details is not None and code.details.family == "traywire-route"
    assert code.modelinfo is not None
    assert code.modelinfo["traywire-route.context_length"] == 32768  # the largest candidate
    assert code.capabilities == ["completion", "tools"]
    assert "qwen-coder-vllm, llama3.1:latest" in (code.modelfile or "")

    chat = s.c.show("chat")
    assert chat.capabilities == ["completion", "vision", "tools"]  # any candidate's
    assert chat.modelinfo["general.description"] == "everyday chat"  # type: ignore[index]

    # an alias is described as what it stands for
    assert s.c.show("gpt-4o").model_dump() == chat.model_dump()
    assert s.c.show("o3-mini").modelinfo == code.modelinfo  # a pattern too
    mine = s.c.show("my-llama")
    assert mine.modelinfo["llama.context_length"] == WINDOW  # type: ignore[index]
    assert mine.details is not None and mine.details.quantization_level == "Q4_K_M"

    auto = s.c.show("auto")
    assert auto.modelinfo["traywire-route.context_length"] == 262144  # type: ignore[index]
    assert "embedding" not in (auto.capabilities or [])

    with pytest.raises(ollama.ResponseError) as err:
        s.c.show("nope")
    assert err.value.status_code == 404 and "nope" in err.value.error


def test_show_answers_when_the_ollama_is_down(s: Setup) -> None:
    s.oll.refuse()
    got = s.c.show("llama3.1:latest")
    assert got.details is not None and got.details.family == "llama"
    assert got.details.parameter_size == "8B"
    assert got.modelinfo["llama.context_length"] == WINDOW  # type: ignore[index]
    assert got.capabilities == ["completion", "tools"]  # the config's default features
    # and /api/tags still lists it, described by traywire
    tags = {m.model: m for m in s.c.list().models}
    assert tags["llama3.1:latest"].size == 0
    assert _recent(tags["llama3.1:latest"].modified_at)


def test_show_bad_bodies(s: Setup) -> None:
    r = raw(s.p, "POST", "/api/show", b"{nope", {"Content-Type": "application/json"})
    assert r.status == 400 and "error" in r.json()
    r = raw(s.p, "POST", "/api/show", {"model": 3})
    assert r.status == 400 and "model" in r.json()["error"]
    r = raw(s.p, "POST", "/api/show", {"name": "code"})  # older clients say name
    assert r.status == 200


# --------------------------------------------------------------------------- listings

ORDER = [
    "llama3.1:latest",
    "nomic-embed-text",
    "qwen-coder-vllm",
    "llama-cpp-native",
    "gpt-oss:120b-cloud",
    "kimi-k2:1t-cloud",
    "code",
    "chat",
    "auto",
    "gpt-4o",
    "my-llama",
]


def test_tags_real_models_first_with_metadata(s: Setup) -> None:
    got = s.c.list().models
    assert [m.model for m in got] == ORDER
    by = {m.model: m for m in got}
    llama = by["llama3.1:latest"]
    assert llama.size == 100_000_000  # from the local Ollama
    assert llama.modified_at is not None and llama.modified_at.year == 2025
    assert llama.details is not None and llama.details.quantization_level == "Q4_K_M"
    vllm = by["qwen-coder-vllm"]
    assert vllm.size == 0 and _recent(vllm.modified_at)
    assert vllm.details is not None
    assert (vllm.details.family, vllm.details.families) == ("qwen2", ["qwen2"])
    assert len(vllm.digest or "") == 64
    assert by["nomic-embed-text"].details.parameter_size == "135M"  # type: ignore[union-attr]
    for name in ("code", "chat", "auto"):
        assert by[name].details.family == "traywire-route"  # type: ignore[union-attr]
    alias = by["gpt-4o"].details
    assert alias is not None and (alias.family, alias.parent_model) == ("traywire-alias", "chat")
    # asked once, then kept a few seconds
    s.c.list()
    assert s.oll.count("/api/tags") == 1
    assert s.ocloud.count("/api/tags") == 0  # clouds are described, not asked


def test_v1_models_same_order_with_kinds(s: Setup) -> None:
    data = raw(s.p, "GET", "/v1/models").json()["data"]
    assert [m["id"] for m in data] == ORDER
    kinds = {m["id"]: m["traywire"]["kind"] for m in data}
    assert kinds["llama3.1:latest"] == "model" and kinds["code"] == "route"
    assert kinds["auto"] == "auto" and kinds["gpt-4o"] == "alias"
    by = {m["id"]: m["traywire"] for m in data}
    assert by["gpt-4o"]["target"] == "chat"
    assert by["code"]["backends"] == ["ollama", "vllm_qwen"]
    assert all(m["created"] > 1_600_000_000 for m in data)
    assert raw(s.p, "GET", "/v1/models/my-llama").json()["id"] == "my-llama"


# --------------------------------------------------------------------------- ps


def test_ps_public_names_and_running_local_servers(s: Setup) -> None:
    for name in ("vllm_qwen", "llama_cpp"):  # as the probes would mark them
        s.p.call(s.p.rt.health.probe_result, name, s.p.rt.clock.monotonic(), True, 5.0)
    got = s.c.ps().models
    names = [m.model for m in got]
    # the Ollama's loaded models under their public names, then the running local servers
    assert names == ["llama3.1:latest", "nomic-embed-text", "qwen-coder-vllm", "llama-cpp-native"]
    by = {m.model: m for m in got}
    assert by["llama3.1:latest"].context_length == NATIVE  # what Ollama loaded it with
    assert by["qwen-coder-vllm"].context_length == 32768
    body = raw(s.p, "GET", "/api/ps").json()["models"]
    assert body[0]["traywire_upstream"] == "llama3.1:8b"
    assert body[0]["traywire_backend"] == "ollama"
    # a server that is down has nothing loaded
    s.p.call(s.p.rt.health.probe_result, "vllm_qwen", s.p.rt.clock.monotonic(), False, 5.0)
    assert "qwen-coder-vllm" not in [m.model for m in s.c.ps().models]


# --------------------------------------------------------------------------- management


def test_pull_streams_progress_as_it_comes(s: Setup) -> None:
    s.oll.chunk_delay = 0.1
    seen: list[tuple[str | None, bool]] = []
    for part in s.c.pull("qwen3:4b", stream=True):
        done = s.oll.last_request is not None and s.oll.last_request.outcome is not None
        seen.append((part.status, done))
    statuses = [st for st, _ in seen]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying sha256 digest" in statuses
    assert sum(1 for st in statuses if (st or "").startswith("pulling ")) == 7
    assert not seen[0][1]  # the first line came while the fake was still sending
    pulls = [r for r in s.oll.requests if r.path == "/api/pull"]
    assert len(pulls) == 1 and pulls[0].json["model"] == "qwen3:4b"
    assert "qwen3:4b" in s.oll.models


def test_pull_a_configured_model_sends_its_upstream_id(s: Setup) -> None:
    s.c.list()  # the listing is kept ...
    assert s.c.pull("llama3.1:latest").status == "success"  # not streamed
    assert s.oll.last_request is not None and s.oll.last_request.json["model"] == "llama3.1:8b"
    s.c.list()  # ... and forgotten once a model changed
    assert s.oll.count("/api/tags") == 2


def test_pull_errors_come_back_in_ollamas_shape(s: Setup) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        list(s.c.pull("not-in-registry", stream=True))
    assert "file does not exist" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        s.c.pull("not-in-registry")
    assert err.value.status_code == 500


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("qwen-coder-vllm", ["vllm_qwen", "OpenAI-compatible", "cannot pull"]),
        ("Qwen/Qwen2.5-Coder-7B-Instruct-AWQ", ["vllm_qwen"]),  # by its upstream id
        ("gpt-oss:120b-cloud", ["Ollama's cloud", "nothing to install"]),
        ("kimi-k2:1t-cloud", ["cloud"]),
        ("llama-cpp-native", ["llama_cpp"]),
        ("code", ["route"]),
        ("gpt-4o", ["alias", "chat"]),
    ],
)
def test_pull_refuses_what_is_not_a_local_ollama_model(
    s: Setup, name: str, words: list[str]
) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        s.c.pull(name)
    assert err.value.status_code == 400
    for word in words:
        assert word in err.value.error, err.value.error
    assert s.oll.count("/api/pull") == 0 and s.ocloud.count("/api/pull") == 0


def test_delete_copy_create_push(s: Setup) -> None:
    assert s.c.copy("llama3.1:latest", "mine:v1").status == "success"
    copy = s.oll.last_request
    assert copy is not None and copy.json == {"source": "llama3.1:8b", "destination": "mine:v1"}
    assert "mine:v1" in s.oll.models

    parts = list(s.c.create("made:v1", from_="llama3.1:latest", system="be brief", stream=True))
    assert parts[-1].status == "success"
    created = s.oll.last_request
    assert created is not None and created.json["from"] == "llama3.1:8b"
    assert created.json["model"] == "made:v1" and created.json["system"] == "be brief"

    assert [p.status for p in s.c.push("mine:v1", stream=True)][-1] == "success"

    assert s.c.delete("mine:v1").status == "success"
    assert "mine:v1" not in s.oll.models
    with pytest.raises(ollama.ResponseError) as err:
        s.c.delete("mine:v1")
    assert err.value.status_code == 404

    with pytest.raises(ollama.ResponseError) as err:
        s.c.delete("qwen-coder-vllm")
    assert err.value.status_code == 400 and "cannot delete" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        s.c.copy("llama3.1:latest", "chat")
    assert err.value.status_code == 400 and "route" in err.value.error
    assert s.c.delete("llama3.1:latest").status == "success"  # by public name
    assert s.oll.last_request is not None and s.oll.last_request.json == {"model": "llama3.1:8b"}


def test_management_refuses_a_foreign_origin(s: Setup) -> None:
    evil = {"Origin": "https://evil.example"}
    for method, path, body in (
        ("POST", "/api/pull", {"model": "qwen3:4b"}),
        ("DELETE", "/api/delete", {"model": "llama3.1:latest"}),
        ("POST", "/api/copy", {"source": "llama3.1:latest", "destination": "x"}),
        ("POST", "/api/create", {"model": "x", "from": "llama3.1:latest"}),
    ):
        r = raw(s.p, method, path, body, evil)
        assert r.status == 403, (path, r)
    assert s.oll.count("/api/pull") + s.oll.count("/api/delete") == 0
    assert s.oll.count("/api/copy") + s.oll.count("/api/create") == 0
    # nor may a page of another origin on this machine (it changes the disk:
    # the admin calls' rule); without an Origin (an app, a script) it may
    r = raw(
        s.p,
        "DELETE",
        "/api/delete",
        {"model": "nomic-embed-text"},
        {"Origin": "http://localhost:3000"},
    )
    assert r.status == 403 and "model management from origin" in r.json()["error"]
    r = raw(s.p, "DELETE", "/api/delete", {"model": "nomic-embed-text"})
    assert r.status == 200


def test_pull_with_no_local_ollama(fakes: Any, proxies: Proxies, clients: Clients) -> None:
    vl = fakes("openai", name="vl", models=["M"])
    cfg = make_config({"v": openai_backend(vl)}, {"m": _model("v", "M", 7, 8192, ["chat"])})
    with pytest.raises(ollama.ResponseError) as err:
        clients.ollama(proxies(cfg)).pull("llama3.2")
    assert err.value.status_code == 400 and "no enabled local Ollama" in err.value.error


def test_pull_down_ollama_is_a_clear_502(s: Setup) -> None:
    s.oll.refuse()
    with pytest.raises(ollama.ResponseError) as err:
        s.c.pull("qwen3:4b")
    assert err.value.status_code == 502 and "ollama" in err.value.error


def test_pull_cut_off_ends_with_an_error_line(s: Setup) -> None:
    s.oll.cut_after(3, paths=["/api/pull"])
    got: list[str | None] = []
    with pytest.raises(ollama.ResponseError) as err:
        for part in s.c.pull("qwen3:4b", stream=True):
            got.append(part.status)
    assert got[0] == "pulling manifest" and "success" not in got
    assert "ollama" in err.value.error


def test_client_leaving_a_pull_closes_the_upstream(s: Setup) -> None:
    s.oll.chunk_delay = 0.5
    stream = s.c.pull("qwen3:4b", stream=True)
    assert next(stream).status == "pulling manifest"
    stream.close()  # type: ignore[attr-defined]
    s.c._client.close()
    assert s.oll.wait_for_disconnect(timeout=5)


# --------------------------------------------------------------------------- embeddings, /


def test_legacy_embeddings(s: Setup) -> None:
    got = s.c.embeddings(model="nomic-embed-text", prompt="hello")
    direct = ollama.Client(host=s.oll.url).embed(model="nomic-embed-text", input="hello")
    assert list(got.embedding) == list(direct.embeddings[0])
    sent = next(r for r in s.oll.requests if r.path == "/api/embed")
    assert sent.json["input"] == "hello" and sent.json["model"] == "nomic-embed-text:latest"
    assert s.oll.count("/api/embeddings") == 0
    # routed like any embeddings request: a route goes to the embedding model
    assert len(s.c.embeddings(model="chat", prompt="hi").embedding) == 8
    assert list(s.c.embeddings(model="nomic-embed-text", prompt="").embedding) == []
    with pytest.raises(ollama.ResponseError) as err:
        s.c.embeddings(model="nope", prompt="x")
    assert err.value.status_code == 404
    r = raw(s.p, "POST", "/api/embeddings", {"model": "nomic-embed-text", "prompt": 3})
    assert r.status == 400 and "prompt" in r.json()["error"]


def test_root_answers_like_ollama(s: Setup) -> None:
    r = raw(s.p, "GET", "/")
    assert r.status == 200 and r.body == b"Ollama is running"
    assert r.headers["content-type"].startswith("text/plain")
    r = raw(s.p, "HEAD", "/")
    assert r.status == 200 and r.body == b""
    r = raw(s.p, "GET", "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status == 302 and r.headers["location"] == "/ui"
    assert raw(s.p, "GET", "/api/version").json()["version"] == OLLAMA_COMPAT_VERSION


# --------------------------------------------------------------------------- the pure part


def _m(name: str, upstream: str = "", params: float = 8) -> Model:
    return Model(name, "b", upstream or name, params, "local", ("chat",), 8192)


@pytest.mark.parametrize(
    ("name", "upstream", "family"),
    [
        ("llama3.1:latest", "", "llama"),
        ("qwen2.5-coder:7b", "", "qwen2"),
        ("qwen3-coder:480b-cloud", "qwen3-coder:480b", "qwen3moe"),
        ("deepseek-v3.1:671b-cloud", "", "deepseek2"),
        ("glm-4.6:cloud", "glm-4.6", "glm4moe"),
        ("dolphin-vllm", "solidrust/dolphin-2.8-mistral-7b-v02-AWQ", "llama"),
        ("mythomax-l2-13b", "", "llama"),
        ("nomic-embed-text", "", "nomic-bert"),
        ("gpt-oss:20b-cloud", "", "gptoss"),
        ("zephyr-beta", "", "zephyr"),
    ],
)
def test_family(name: str, upstream: str, family: str) -> None:
    assert catalog.family(_m(name, upstream)) == family


def test_sizes_and_quantization() -> None:
    assert [catalog.parameter_size(p) for p in (8, 4.6, 671, 0.137, 1000, 7.25)] == [
        "8B",
        "4.6B",
        "671B",
        "137M",
        "1T",
        "7.2B",
    ]
    assert catalog.quantization(_m("x", "llama3.1:8b-instruct-q4_K_M")) == "Q4_K_M"
    assert catalog.quantization(_m("x", "Org/Model-7B-AWQ")) == "AWQ"
    assert catalog.quantization(_m("x", "llama3.1:8b")) == ""
    assert catalog.ollama_capabilities({"embed"}) == ["embedding"]
    assert catalog.ollama_capabilities({"chat", "json", "tools", "vision"}) == [
        "completion",
        "vision",
        "tools",
    ]


def test_management_picks_the_ollama_that_holds_the_model(
    fakes: Any, proxies: Proxies, clients: Clients
) -> None:
    first = fakes("ollama", name="first", models=["a1"])
    second = fakes("ollama", name="second", models=["b1", "extra:1"])
    cfg = make_config(
        {"one": ollama_backend(first), "two": ollama_backend(second)},
        {"a": _model("one", "a1", 8, 8192, ["chat"]), "b": _model("two", "b1", 8, 8192, ["chat"])},
    )
    c = clients.ollama(proxies(cfg))
    assert c.delete("extra:1").status == "success"  # not configured: the Ollama that lists it
    assert second.count("/api/delete") == 1 and first.count("/api/delete") == 0
    assert c.pull("new:1").status == "success"  # a new model: the first local Ollama
    assert "new:1" in first.models
    assert c.create("made", from_="b").status == "success"  # next to what it is made from
    assert second.last_request is not None and second.last_request.json["from"] == "b1"
    assert "made" in second.models
    with pytest.raises(ollama.ResponseError) as err:
        c.copy("a", "b")
    assert err.value.status_code == 400 and "stays on one Ollama" in err.value.error
