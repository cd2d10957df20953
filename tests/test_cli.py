"""Tests for the ``traywire`` command line (`traywire.cli`).

Most tests call ``traywire.cli.main([...])`` in-process and read capsys; a few
run the installed console script in a subprocess. XDG_CONFIG_HOME and HOME
point at tmp dirs, so the user's real config dir is never read or written.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers_config import line_of, write

import traywire
from traywire import config, secrets
from traywire.cli import main
from traywire.core.tokens import count_text

PLAN_KEYS = {"model", "backend", "upstream_model", "reason", "tier"}


@pytest.fixture(autouse=True)
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tmp XDG_CONFIG_HOME (and HOME), so no test sees the real config dir."""
    xdg = tmp_path / "xdg-config"
    xdg.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert str(config.user_config_path()).startswith(str(tmp_path))
    return xdg


@pytest.fixture(autouse=True)
def keys_are_set(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """`route` reads keys as the server does: here every key is set (a user who
    stored them), except in tests marked ``no_keys``."""
    if "no_keys" not in request.keywords:
        monkeypatch.setattr(secrets, "resolve", lambda ref: "test-key-0123456789")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def route_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    rc, out, err = run(capsys, "route", "--json", *argv)
    assert rc == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def plan_models(decision: dict[str, Any]) -> list[str]:
    return [a["model"] for a in decision["plan"]]


def state_file(tmp_path: Path, state: dict[str, Any], name: str = "state.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(state), encoding="utf-8")
    return str(path)


def chat_tokens(*texts: str) -> int:
    """The estimator's count for a chat request with these message texts."""
    return count_text("\n".join(texts)) + 4 * len(texts) + 3


# --------------------------------------------------------------------------- check


def test_check_default_ok_without_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "check")
    assert rc == 0
    assert err == ""
    assert out.startswith("config OK: 6 backends, 14 models, 13 fallback chains, 8 routes")
    assert "(from <built-in default>)" in out
    assert "warning" not in out


def test_check_broken_config_exits_1_with_located_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path / "bad.yaml",
        """
        # my routes
        routes:
          code:
            strategy: complexty_based
        """,
    )
    rc, out, err = run(capsys, "check", "--config", str(bad))
    assert rc == 1
    assert "config OK" not in out
    assert err.startswith(
        f"traywire: config error: {bad}:4 routes.code.strategy: 'complexty_based' is not one of:"
    )
    assert "did you mean 'complexity_based'?" in err


def test_check_missing_config_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    rc, out, err = run(capsys, "check", "--config", str(missing))
    assert rc == 1
    assert out == ""
    assert f"{missing}: cannot read config file" in err


def test_check_prints_principle_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_file = write(
        tmp_path / "warn.yaml",
        """
        fallbacks:
          qwen2.5-coder:7b: [llama3.1:latest, qwen-coder-vllm]
          gpt-oss:20b-cloud: [mythomax-l2-13b, glm-4.6:cloud]
        """,
    )
    rc, out, err = run(capsys, "check", "--config", str(cfg_file))
    assert rc == 0  # warnings do not fail the check
    assert err == ""
    assert "config OK" in out
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert any(
        w.startswith(f"warning: {cfg_file}:2 ") and w.endswith("(capability preservation)")
        for w in warnings
    ), warnings
    assert any(
        w.startswith(f"warning: {cfg_file}:3 ") and w.endswith("(graceful degradation)")
        for w in warnings
    ), warnings


def test_check_reads_the_user_file_in_the_config_dir(
    xdg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = config.user_config_path()
    write(user, "saturation: 0.6\n")
    rc, out, _ = run(capsys, "check")
    assert rc == 0
    assert f"(from <built-in default>, {user})" in out


def test_check_broken_user_file_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    user = config.user_config_path()
    write(user, "preference: auto\nsaturation: 1.5\n")
    rc, _, err = run(capsys, "check")
    assert rc == 1
    assert f"{user}:2 saturation: must be <= 1" in err


# --------------------------------------------------------------------------- route --json


def test_route_json_with_model_and_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    d = route_json(capsys, "--model", "llama3.1:latest", "--prompt", "hello there")
    assert d["requested"] == "llama3.1:latest"
    assert d["capability"] == "chat"
    assert d["prompt_tokens"] == chat_tokens("hello there")
    assert d["strategy"] is None
    assert d["route"] is None
    assert isinstance(d["plan"], list)
    assert all(set(a) == PLAN_KEYS for a in d["plan"])
    assert plan_models(d) == ["llama3.1:latest", "mythomax-l2-13b", "gpt-oss:20b-cloud"]
    first = d["plan"][0]
    assert first == {
        "model": "llama3.1:latest",
        "backend": "ollama",
        "upstream_model": "llama3.1:latest",
        "reason": "requested by name",
        "tier": "local",
    }
    assert d["plan"][2]["backend"] == "ollama_cloud"
    assert d["plan"][2]["upstream_model"] == "gpt-oss:20b"
    assert d["plan"][2]["tier"] == "cloud_entry"
    assert "fallback 2 of llama3.1:latest's chain" in d["plan"][2]["reason"]
    assert d["description"] is None  # asked for a model, not a route


def test_route_json_for_a_route(capsys: pytest.CaptureFixture[str]) -> None:
    d = route_json(capsys, "--model", "code", "--prompt", "write a sort function")
    assert d["capability"] == "code"
    assert d["route"] == "code"
    assert d["strategy"] == "complexity_based"
    assert plan_models(d)[0] == "qwen2.5-coder:7b"  # a short prompt: the simple band
    assert "band simple" in d["plan"][0]["reason"]
    assert all(set(a) == PLAN_KEYS for a in d["plan"])
    assert d["description"] == "code generation, by prompt complexity"
    # the keys in order: the description right after the route and its strategy
    assert list(d)[3:6] == ["route", "strategy", "description"]


def test_route_json_shows_each_planned_models_tier_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config.load(user_file=False)
    d = route_json(capsys, "--model", "analytical", "--prompt", "compare these two reports")
    assert d["plan"]
    assert [a["tier"] for a in d["plan"]] == [cfg.models[a["model"]].tier for a in d["plan"]]
    assert {a["tier"] for a in d["plan"]} >= {"cloud_premium", "local"}
    # a route without a description (the key is optional) shows an empty one
    path = write(
        tmp_path / "nodesc.yaml",
        "routes:\n  chat:\n    description: null\n",
    )
    d = route_json(capsys, "--config", str(path), "--model", "chat", "--prompt", "hi")
    assert d["route"] == "chat" and d["description"] == ""


def test_route_untagged_name_matches_latest(capsys: pytest.CaptureFixture[str]) -> None:
    d = route_json(capsys, "--model", "llama3.1", "--prompt", "hi")
    assert d["requested"] == "llama3.1"
    assert plan_models(d)[0] == "llama3.1:latest"


def test_route_request_file_openai_body(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    system = "You are a careful senior engineer."
    user = "Refactor this module so that the parser and the printer are separate. " * 8
    body = {
        "model": "code",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": 512,
        "stream": True,
    }
    req = tmp_path / "openai.json"
    req.write_text(json.dumps(body), encoding="utf-8")
    d = route_json(capsys, "--request", str(req))
    assert d["requested"] == "code"
    assert d["capability"] == "code"
    assert d["strategy"] == "complexity_based"
    assert d["prompt_tokens"] == chat_tokens(system, user)
    assert d["prompt_tokens"] > 100
    assert plan_models(d)[0] == "qwen3-coder:480b-cloud"  # the complex band
    assert "band complex" in d["plan"][0]["reason"]
    assert all(set(a) == PLAN_KEYS for a in d["plan"])


def test_route_request_file_ollama_body_with_num_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {
        "model": "llama3.1:latest",
        "messages": [{"role": "user", "content": "Tell me everything about tides."}],
        "options": {"num_predict": 9000, "temperature": 0.2},
        "stream": False,
    }
    req = tmp_path / "ollama.json"
    req.write_text(json.dumps(body), encoding="utf-8")
    d = route_json(capsys, "--request", str(req))
    tokens = chat_tokens("Tell me everything about tides.")
    assert d["prompt_tokens"] == tokens
    assert d["capability"] == "chat"
    # prompt + 9000 reply tokens do not fit the 8192/4096 local windows
    assert plan_models(d) == ["gpt-oss:20b-cloud"]
    skipped = {s["model"]: s["reason"] for s in d["skipped"]}
    assert skipped["llama3.1:latest"] == (
        f"window too small: needs {tokens + 9000} tokens, llama3.1:latest holds 8192"
    )
    assert "mythomax-l2-13b" in skipped
    # without num_predict the local model comes first again
    del body["options"]
    req.write_text(json.dumps(body), encoding="utf-8")
    assert plan_models(route_json(capsys, "--request", str(req)))[0] == "llama3.1:latest"


def test_route_request_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt = "Why does this python function fail?\n```\ndef f(x): return x +\n```"
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(body)))
    d = route_json(capsys, "--request", "-")
    assert d["requested"] == "auto"
    assert d["capability"] == "code"
    assert d["route"] == "code"
    assert d["strategy"] == "complexity_based"
    assert d["prompt_tokens"] == chat_tokens(prompt)
    assert d["plan"] and all(set(a) == PLAN_KEYS for a in d["plan"])
    assert d["plan"][0]["reason"].startswith("auto → code")


def test_route_request_model_flag_overrides_the_body(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    req = tmp_path / "r.json"
    req.write_text(json.dumps({"model": "code", "messages": [{"role": "user", "content": "x"}]}))
    d = route_json(capsys, "--request", str(req), "--model", "mythomax-l2-13b")
    assert d["requested"] == "mythomax-l2-13b"
    assert plan_models(d)[0] == "mythomax-l2-13b"


def test_route_max_tokens_flag(capsys: pytest.CaptureFixture[str]) -> None:
    d = route_json(
        capsys, "--model", "mythomax-l2-13b", "--prompt", "a poem", "--max-tokens", "5000"
    )
    assert "mythomax-l2-13b" not in plan_models(d)  # 4096 window
    assert any(s["model"] == "mythomax-l2-13b" for s in d["skipped"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "code"], "route needs --model M --prompt TEXT, or --request FILE"),
        (["--prompt", "hi"], "route needs --model M --prompt TEXT, or --request FILE"),
        (["--request", "{req}", "--prompt", "hi"], "give either --request or --prompt"),
        (["--request", "{missing}"], "cannot read request"),
        (["--request", "{notjson}"], "cannot read request"),
        (["--request", "{array}"], "the request must be a JSON object"),
        (["--request", "{nomodel}"], "the request has no model"),
    ],
)
def test_route_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    files = {
        "req": json.dumps({"model": "code", "messages": []}),
        "notjson": "{not json",
        "array": "[1, 2]",
        "nomodel": json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
    }
    paths = {"missing": str(tmp_path / "missing.json")}
    for key, text in files.items():
        (tmp_path / f"{key}.json").write_text(text)
        paths[key] = str(tmp_path / f"{key}.json")
    rc, out, err = run(capsys, "route", *(a.format(**paths) for a in argv))
    assert rc == 2
    assert out == ""
    assert err.startswith("traywire: ")
    assert expected in err


# --------------------------------------------------------------------------- route, readable


def test_route_readable_output_lists_the_plan_with_reasons(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = run(capsys, "route", "--model", "llama3.1:latest", "--prompt", "hello there")
    assert rc == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "request   llama3.1:latest"
    assert "capability chat" in lines[1]
    assert f"{chat_tokens('hello there')} prompt tokens" in lines[1]
    assert "plan" in lines
    i = lines.index("plan")
    assert not any(line.startswith("route ") for line in lines)  # a model: no route
    assert lines[i + 1 : i + 7] == [
        "  1. llama3.1:latest on ollama  [tier local · upstream llama3.1:latest]",
        "     requested by name",
        "  2. mythomax-l2-13b on ollama  [tier local · upstream mythomax-l2-13b]",
        "     fallback 1 of llama3.1:latest's chain (+62% params, same capability)",
        "  3. gpt-oss:20b-cloud on ollama_cloud  [tier cloud_entry · upstream gpt-oss:20b]",
        "     fallback 2 of llama3.1:latest's chain (+150% params, same capability)",
    ]


def test_route_readable_output_for_a_route_shows_strategy_and_skipped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, _ = run(
        capsys, "route", "--model", "reasoning", "--prompt", "prove it", "--prefer", "local_only"
    )
    assert rc == 0
    assert "route reasoning (direct)" in out
    assert "route     reasoning: multi-step reasoning and maths" in out.splitlines()
    assert "preference local_only" in out
    assert "  1. llama3.1:latest on ollama  [tier local · upstream llama3.1:latest]" in out
    assert "skipped" in out.splitlines()
    assert (
        "  - deepseek-v3.1:671b-cloud on ollama_cloud: "
        "local_only: cloud backend ollama_cloud is never planned"
    ) in out


# --------------------------------------------------------------------------- preference, state


@pytest.mark.parametrize(
    "model", ["reasoning", "chat", "code", "creative", "auto", "kimi-k2:1t-cloud", "large_context"]
)
def test_route_prefer_local_only_plans_no_cloud_backend(
    capsys: pytest.CaptureFixture[str], model: str
) -> None:
    cfg = config.load(user_file=False)
    d = route_json(capsys, "--model", model, "--prompt", "hello", "--prefer", "local_only")
    assert d["preference"] == "local_only"
    assert d["plan"], d
    assert all(cfg.backends[a["backend"]].location == "local" for a in d["plan"]), d["plan"]
    # and without the flag, the same request does use the cloud somewhere
    default = route_json(capsys, "--model", model, "--prompt", "hello")
    assert any(cfg.backends[a["backend"]].location == "cloud" for a in default["plan"])


def test_route_local_only_with_nothing_local_is_an_empty_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_file = write(tmp_path / "c.yaml", "fallbacks:\n  gpt-oss:20b-cloud: [glm-4.6:cloud]\n")
    d = route_json(
        capsys,
        "--config",
        str(cfg_file),
        "--model",
        "gpt-oss:20b-cloud",
        "--prompt",
        "hi",
        "--prefer",
        "local_only",
    )
    assert d["plan"] == []
    assert "local_only" in d["note"]
    assert "nothing was planned on a cloud backend" in d["note"]


def test_route_prefer_cloud_only(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config.load(user_file=False)
    d = route_json(capsys, "--model", "llama3.1:latest", "--prompt", "hi", "--prefer", "cloud_only")
    assert plan_models(d) == ["gpt-oss:20b-cloud"]
    assert all(cfg.backends[a["backend"]].location == "cloud" for a in d["plan"])


def test_route_state_open_circuit_moves_backend_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = state_file(tmp_path, {"backends": {"ollama": {"circuit": "open"}}})
    d = route_json(capsys, "--model", "llama3.1:latest", "--prompt", "hi", "--state", state)
    assert plan_models(d) == ["gpt-oss:20b-cloud", "llama3.1:latest", "mythomax-l2-13b"]
    assert "circuit open on ollama" in d["plan"][1]["reason"]
    assert d["plan"][1]["reason"].endswith("tried last")
    # a closed circuit changes nothing
    closed = state_file(tmp_path, {"backends": {"ollama": {"circuit": "closed"}}}, "c.json")
    d = route_json(capsys, "--model", "llama3.1:latest", "--prompt", "hi", "--state", closed)
    assert plan_models(d) == ["llama3.1:latest", "mythomax-l2-13b", "gpt-oss:20b-cloud"]


def test_route_state_saturation_overflows_to_cloud(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--model", "llama3.1:latest", "--prompt", "hi", "--state")
    # 3 of 4 in flight is 75%, under the default 80%: unchanged
    below = state_file(tmp_path, {"backends": {"ollama": {"in_flight": 3}}}, "below.json")
    d = route_json(capsys, *args, below)
    assert plan_models(d) == ["llama3.1:latest", "mythomax-l2-13b", "gpt-oss:20b-cloud"]
    # 4 of 4: the cloud attempt goes first
    full = state_file(tmp_path, {"backends": {"ollama": {"in_flight": 4}}}, "full.json")
    d = route_json(capsys, *args, full)
    assert plan_models(d) == ["gpt-oss:20b-cloud", "llama3.1:latest", "mythomax-l2-13b"]
    assert "overflow: ollama saturated (4/4 in flight ≥ 80%)" in d["plan"][0]["reason"]


def test_route_state_saturation_follows_the_configured_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg_file = write(tmp_path / "c.yaml", "saturation: 0.5\n")
    state = state_file(tmp_path, {"backends": {"ollama": {"in_flight": 2}}})
    d = route_json(
        capsys,
        "--config",
        str(cfg_file),
        "--model",
        "llama3.1:latest",
        "--prompt",
        "hi",
        "--state",
        state,
    )
    assert plan_models(d)[0] == "gpt-oss:20b-cloud"
    assert "≥ 50%" in d["plan"][0]["reason"]


def test_route_state_active_vllm_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # by default dolphin is the inactive member
    d = route_json(capsys, "--model", "dolphin-vllm", "--prompt", "hi")
    assert "dolphin-vllm" not in plan_models(d)
    assert any(
        s["model"] == "dolphin-vllm" and "not the active member" in s["reason"]
        for s in d["skipped"]
    )
    state = state_file(tmp_path, {"active": {"vllm": "vllm_dolphin"}})
    d = route_json(capsys, "--model", "dolphin-vllm", "--prompt", "hi", "--state", state)
    assert plan_models(d)[0] == "dolphin-vllm"
    assert d["plan"][0]["backend"] == "vllm_dolphin"
    # and now the qwen member is the one left out
    d = route_json(capsys, "--model", "high_throughput", "--prompt", "hi", "--state", state)
    assert "qwen-coder-vllm" not in plan_models(d)
    assert any(
        s["model"] == "qwen-coder-vllm" and "(active: vllm_dolphin)" in s["reason"]
        for s in d["skipped"]
    )


def test_route_state_preference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = state_file(tmp_path, {"preference": "local_only"})
    d = route_json(capsys, "--model", "kimi-k2:1t-cloud", "--prompt", "hi", "--state", state)
    assert d["preference"] == "local_only"
    assert plan_models(d) == ["llama3.1:latest"]
    # --prefer overrides the state file
    d = route_json(
        capsys,
        "--model",
        "kimi-k2:1t-cloud",
        "--prompt",
        "hi",
        "--state",
        state,
        "--prefer",
        "auto",
    )
    assert plan_models(d)[0] == "kimi-k2:1t-cloud"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"backends": {"lmstudio": {"in_flight": 1}}}, "backends.lmstudio: no such backend"),
        (
            {"backends": {"ollama": {"circuit": "broken"}}},
            "backends.ollama.circuit: closed, open or half_open",
        ),
        ({"backends": {"ollama": {"inflight": 1}}}, "backends.ollama: unknown keys: inflight"),
        ({"backends": {"ollama": 3}}, "backends.ollama: expected a JSON object"),
        ({"backend": {}}, "unknown keys: backend"),
        ({"active": {"vllm": "ollama"}}, "active.vllm: 'ollama' is not a member"),
        ({"active": {"gpu": "ollama"}}, "active.gpu"),
        ({"preference": "local"}, "preference: one of auto, prefer_local"),
        ({"random": 1.5}, "random: a number in [0, 1)"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_route_bad_state_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: Any, expected: str
) -> None:
    path = state_file(tmp_path, state)
    rc, out, err = run(capsys, "route", "--model", "chat", "--prompt", "hi", "--state", path)
    assert rc == 2
    assert out == ""
    assert err.startswith(f"traywire: {path}: ")
    assert expected in err


def test_route_unreadable_state_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "state.json"
    bad.write_text("{oops")
    rc, _, err = run(capsys, "route", "--model", "chat", "--prompt", "hi", "--state", str(bad))
    assert rc == 2
    assert f"cannot read state file {bad}" in err


@pytest.mark.parametrize(
    ("backend_state", "field"),
    [
        ({"in_flight": "lots"}, "in_flight"),
        ({"latency_ms": "fast"}, "latency_ms"),
        ({"missing_models": 5}, "missing_models"),
        ({"no_key": "yes"}, "no_key"),
    ],
)
def test_route_state_with_wrong_field_types_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    backend_state: dict[str, Any],
    field: str,
) -> None:
    path = state_file(tmp_path, {"backends": {"ollama": backend_state}})
    rc, out, err = run(
        capsys, "route", "--model", "llama3.1:latest", "--prompt", "hi", "--state", path
    )
    assert rc == 2
    assert out == ""
    assert f"backends.ollama.{field}" in err


def test_route_state_with_wrong_usage_type_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = state_file(tmp_path, {"usage": {"llama3.1:latest": "many"}})
    rc, _, err = run(capsys, "route", "--model", "chat", "--prompt", "hi", "--state", path)
    assert rc == 2
    assert "usage" in err


# --------------------------------------------------------------------------- unknown model


def test_route_unknown_model_exits_2_and_lists_known_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = run(capsys, "route", "--model", "no-such-model-9", "--prompt", "hi")
    assert rc == 2
    assert out == ""
    assert err.startswith("traywire: unknown model 'no-such-model-9'; known models and aliases: ")
    known = config.load(user_file=False).names()
    listed = err.strip().split("known models and aliases: ", 1)[1].split(", ")
    assert listed == known
    assert {"auto", "code", "llama3.1:latest", "kimi-k2:1t-cloud"} <= set(listed)


def test_route_config_error_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.yaml", "saturation: 0.5\nserver: {port: 70000}\n")
    rc, _, err = run(capsys, "route", "--config", str(bad), "--model", "chat", "--prompt", "hi")
    assert rc == 1
    assert f"{bad}:2 server.port: must be <= 65535" in err


# --------------------------------------------------------------------------- init


def test_init_writes_the_default_to_the_user_config_dir(
    xdg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = config.user_config_path()
    if sys.platform == "linux":
        assert target == xdg / "traywire" / "traywire.yaml"
    assert not target.exists()
    rc, out, err = run(capsys, "init")
    assert rc == 0
    assert err == ""
    assert out == f"wrote {target}\n"
    assert target.read_text(encoding="utf-8") == config.default_config_text()
    # the written file is then picked up, and is a valid config
    rc, out, _ = run(capsys, "check")
    assert rc == 0
    assert f"(from <built-in default>, {target})" in out
    assert "warning" not in out


def test_init_refuses_to_overwrite(capsys: pytest.CaptureFixture[str]) -> None:
    target = config.user_config_path()
    write(target, "saturation: 0.5\n")
    rc, out, err = run(capsys, "init")
    assert rc == 2
    assert out == ""
    assert f"{target} already exists" in err
    assert target.read_text(encoding="utf-8") == "saturation: 0.5\n"


def test_init_twice_keeps_the_first_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "init")[0] == 0
    target = config.user_config_path()
    target.write_text("preference: local_only\n", encoding="utf-8")
    assert run(capsys, "init")[0] == 2
    assert target.read_text(encoding="utf-8") == "preference: local_only\n"


def test_init_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "deep" / "er" / "mine.yaml"
    rc, out, _ = run(capsys, "init", "--path", str(target))
    assert rc == 0
    assert out == f"wrote {target}\n"
    assert target.read_text(encoding="utf-8") == config.default_config_text()
    assert not config.user_config_path().exists()  # the user dir is left alone
    # and it refuses to overwrite there too
    target.write_text("# mine\n", encoding="utf-8")
    rc, _, err = run(capsys, "init", "--path", str(target))
    assert rc == 2
    assert "already exists" in err
    assert target.read_text(encoding="utf-8") == "# mine\n"
    # the written default loads as a --config layer
    write(tmp_path / "copy.yaml", config.default_config_text())
    rc, _, _ = run(capsys, "check", "--config", str(tmp_path / "copy.yaml"))
    assert rc == 0


# --------------------------------------------------------------------------- misc


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"traywire {traywire.__version__}"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    # (no command at all starts the app: see tests/test_desktop.py)
    with pytest.raises(SystemExit) as info:
        main(["-h"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: traywire" in out
    for command in ("check", "route", "init", "serve", "keys", "app"):
        assert command in out


def test_bad_prefer_choice_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["route", "--model", "chat", "--prompt", "hi", "--prefer", "local"])
    assert info.value.code == 2
    assert "invalid choice: 'local'" in capsys.readouterr().err


# --------------------------------------------------------------------------- subprocess


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "sub-xdg")
    env["HOME"] = str(tmp_path / "sub-home")
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _console_script() -> Path:
    script = Path(sys.executable).with_name("traywire")
    assert script.is_file(), (
        f"the traywire console script is not installed next to {sys.executable}"
    )
    return script


def test_python_dash_m_traywire_check(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "traywire", "check"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config OK: 6 backends")
    assert "warning" not in proc.stdout


def test_console_script_route_json(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(_console_script()), "route", "--json", "--model", "code", "--prompt", "sort a list"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["capability"] == "code"
    assert d["strategy"] == "complexity_based"
    assert d["prompt_tokens"] == chat_tokens("sort a list")
    assert d["plan"] and all(set(a) == PLAN_KEYS for a in d["plan"])


def test_console_script_check_broken_config_and_version(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "# x\nbackends:\n  ollama: {capacity: 0}\n")
    line = line_of(bad, "capacity")
    proc = subprocess.run(
        [str(_console_script()), "check", "--config", str(bad)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"{bad}:{line} backends.ollama.capacity: must be >= 1, got 0" in proc.stderr
    version = subprocess.run(
        [str(_console_script()), "--version"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert version.returncode == 0
    assert version.stdout.strip() == f"traywire {traywire.__version__}"


def test_console_script_init_in_a_tmp_config_dir(tmp_path: Path) -> None:
    env = _env(tmp_path)
    proc = subprocess.run(
        [str(_console_script()), "init"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    written = Path(proc.stdout.strip().removeprefix("wrote "))
    assert str(written).startswith(str(tmp_path))
    assert written.read_text(encoding="utf-8") == config.default_config_text()
    again = subprocess.run(
        [str(_console_script()), "init"], capture_output=True, text=True, env=env, timeout=60
    )
    assert again.returncode == 2
    assert "already exists" in again.stderr


def test_route_follows_what_the_tray_saved(capsys: pytest.CaptureFixture[str]) -> None:
    """The tray's routing and vLLM menus change what `traywire route` shows."""
    from types import MappingProxyType

    from traywire import statefile

    path = statefile.default_path()
    statefile.save(
        path,
        statefile.State(preference="local_only", active=MappingProxyType({"vllm": "vllm_dolphin"})),
    )
    rc, out, _ = run(capsys, "route", "--json", "--model", "dolphin-vllm", "--prompt", "hi")
    assert rc == 0
    data = json.loads(out)
    assert data["preference"] == "local_only"
    assert data["plan"][0]["model"] == "dolphin-vllm"  # dolphin is the active member now
    # --prefer still overrides the saved preference
    rc, out, _ = run(
        capsys,
        "route",
        "--json",
        "--prefer",
        "auto",
        "--model",
        "deepseek-v3.1:671b-cloud",
        "--prompt",
        "hi",
    )
    assert json.loads(out)["plan"][0]["backend"] == "ollama_cloud"


# ------------------------------------------------------------- route agrees with the server


@pytest.mark.no_keys
def test_route_skips_a_cloud_model_whose_key_is_missing_as_the_server_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = route_json(capsys, "--model", "kimi-k2:1t-cloud", "--prompt", "prove it")
    planned = [a["model"] for a in d["plan"]]
    assert "kimi-k2:1t-cloud" not in planned
    assert planned and all(not m.endswith("-cloud") for m in planned)
    first = d["skipped"][0]
    assert first["model"] == "kimi-k2:1t-cloud"
    assert "set it with `traywire keys set ollama_cloud`" in first["reason"]


def _status_of_a_running_server(tmp_path: Path) -> dict[str, Any]:
    """What `GET /status` of a running traywire says, taken from a real one."""
    from harness import ProxyThread

    cfg = config.load(user_file=False)
    p = ProxyThread(cfg, keys={"ollama_cloud": None}).start()
    try:
        p.call(p.rt.set_preference, "prefer_local")
        r = urllib.request.urlopen(p.url + "/status", timeout=10)
        return json.loads(r.read())  # type: ignore[no-any-return]
    finally:
        p.stop()


def test_route_takes_a_running_servers_status_as_it_is(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status = _status_of_a_running_server(tmp_path)
    assert status["backends"]["ollama_cloud"]["no_key"] is True
    state = tmp_path / "status.json"
    state.write_text(json.dumps(status))
    d = route_json(capsys, "--model", "chat", "--prompt", "hi", "--state", str(state))
    assert d["preference"] == "prefer_local"  # the server's, set at run time
    assert all(not a["model"].endswith("-cloud") for a in d["plan"])
    assert any("no key" in s["reason"] for s in d["skipped"])


def test_route_live_reads_the_running_instance(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import ProxyThread

    from traywire.desktop import instance

    cfg = config.load(user_file=False)
    p = ProxyThread(cfg, keys={"ollama_cloud": "k-0123456789"}).start()
    try:
        p.call(p.rt.set_preference, "cloud_only")
        monkeypatch.setattr(instance, "running_url", lambda directory, wait=10.0: p.url)
        d = route_json(capsys, "--model", "chat", "--prompt", "hi", "--live")
        assert d["preference"] == "cloud_only"
        assert d["plan"] and all(a["model"].endswith("cloud") for a in d["plan"])
        # the same through its URL
        d = route_json(capsys, "--model", "chat", "--prompt", "hi", "--state", p.url + "/status")
        assert d["preference"] == "cloud_only"
    finally:
        p.stop()
    rc, _, err = run(capsys, "route", "--model", "chat", "--prompt", "hi", "--live")
    assert rc == 2 and "cannot read the live state from" in err


def test_every_option_of_every_command_has_a_help_text() -> None:
    """`traywire COMMAND -h` explains each flag and argument."""
    import argparse

    from traywire.cli import _parser

    missing: list[str] = []

    def walk(p: argparse.ArgumentParser, where: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{where} {name}")
                continue
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")

    walk(_parser(), "traywire")
    assert missing == []


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "-h"],
        ["serve", "--bogus"],
        ["serve", "--port", "x"],
        ["serve", "--log-level", "loud"],
        ["serve", "--config", "c.yaml", "--port", "5", "--grace", "1"],
        ["app", "-h"],
        ["app", "--no-tray", "--port", "9"],
        ["keys"],
        ["keys", "set"],
        ["keys", "list", "--config", "z"],
        ["route", "--model", "m", "--prompt", "p", "--json"],
        ["doctor", "--no-backends"],
        ["init", "--path", "p"],
        ["check"],
    ],
)
def test_a_command_first_on_the_line_parses_as_with_the_whole_parser(argv: list[str]) -> None:
    """`main` builds only the named command's parser (start-up): the same
    options, help, errors and exit codes as the whole command line's."""
    import contextlib

    from traywire.cli import _parser

    def parse(only: str | None) -> tuple[str, str, object]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                got: object = vars(_parser(only).parse_args(argv))
            except SystemExit as exc:
                got = exc.code
        return out.getvalue(), err.getvalue(), got

    assert parse(argv[0]) == parse(None)
