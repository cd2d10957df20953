"""Tests for the configuration schema (`traywire.config`) and the principle
checks (`traywire.core.principles`).

Every test keeps off the user's real config dir: layers are tmp files loaded
with ``user_file=False`` or an explicit Path, and XDG_CONFIG_HOME / HOME point
at tmp dirs.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers_config import assert_located, layer_error, load_layer, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traywire import config
from traywire.core import principles
from traywire.errors import ConfigError
from traywire.types import STRATEGIES

DEFAULT = "<built-in default>"


@pytest.fixture(autouse=True)
def _no_real_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# --------------------------------------------------------------------------- the default


def test_default_has_six_backends_at_their_usual_ports() -> None:
    cfg = config.load(user_file=False)
    assert cfg.sources == (DEFAULT,)
    assert set(cfg.backends) == {
        "ollama",
        "ollama_cloud",
        "vllm_qwen",
        "vllm_dolphin",
        "llama_cpp_native",
        "llama_cpp_python",
    }
    local_ports = {
        "ollama": 11434,
        "vllm_qwen": 8001,
        "vllm_dolphin": 8002,
        "llama_cpp_native": 8080,
        "llama_cpp_python": 8000,
    }
    for name, port in local_ports.items():
        b = cfg.backends[name]
        url = urlsplit(b.url)
        assert (url.scheme, url.hostname, url.port) == ("http", "127.0.0.1", port), name
        assert b.location == "local", name
        assert b.key is None, name
    cloud = cfg.backends["ollama_cloud"]
    assert cloud.url == "https://ollama.com"
    assert cloud.location == "cloud"
    assert cloud.key == "keyring:ollama_cloud"
    assert cloud.kind == "ollama"


def test_default_vllm_exclusive_group_with_qwen_active() -> None:
    cfg = config.load(user_file=False)
    assert cfg.backends["vllm_qwen"].exclusive_group == "vllm"
    assert cfg.backends["vllm_dolphin"].exclusive_group == "vllm"
    assert set(cfg.groups) == {"vllm"}
    group = cfg.groups["vllm"]
    assert set(group.members) == {"vllm_qwen", "vllm_dolphin"}
    assert group.active == "vllm_qwen"
    others = set(cfg.backends) - {"vllm_qwen", "vllm_dolphin"}
    assert all(cfg.backends[b].exclusive_group is None for b in others)


def test_default_saturation_preference_and_cross_references() -> None:
    cfg = config.load(user_file=False)
    assert cfg.saturation == 0.8
    assert cfg.preference == "auto"
    assert cfg.server.port == config.DEFAULT_PORT
    assert cfg.server.host == "127.0.0.1"
    # every model sits on a defined backend, every chain and route names models
    assert all(m.backend in cfg.backends for m in cfg.models.values())
    for head, chain in cfg.fallbacks.items():
        assert head in cfg.models
        assert all(m in cfg.models and m != head for m in chain)
    assert {"code", "reasoning", "analytical", "creative", "chat"} <= set(cfg.routes)
    assert cfg.routes["code"].strategy == "complexity_based"
    assert [b.upto for b in cfg.routes["code"].bands] == [49, 100, None]
    assert "auto" in cfg.names()


def test_default_loads_through_the_user_layer_when_no_user_file_exists(tmp_path: Path) -> None:
    # user_file=True looks in the (tmp) platformdirs dir, finds nothing: default only
    assert not config.user_config_path().exists()
    assert str(config.user_config_path()).startswith(str(tmp_path))
    cfg = config.load()
    assert cfg.sources == (DEFAULT,)
    assert len(cfg.backends) == 6


def test_default_text_is_the_packaged_file() -> None:
    text = config.default_config_text()
    via_texts = config.load_texts([(DEFAULT, text)])
    assert via_texts == config.load(user_file=False)


def test_default_gives_no_principle_warnings() -> None:
    assert principles.check(config.load(user_file=False)) == []


# --------------------------------------------------------------------------- layering


def test_user_file_then_config_file_precedence(tmp_path: Path) -> None:
    user = write(
        tmp_path / "user.yaml",
        """
        saturation: 0.6
        preference: prefer_local
        server: {port: 9000}
        """,
    )
    cli = write(
        tmp_path / "cli.yaml",
        """
        saturation: 0.7
        server: {host: 127.0.0.2}
        """,
    )
    cfg = config.load(cli, user_file=user)
    assert cfg.saturation == 0.7  # set in both: --config wins
    assert cfg.preference == "prefer_local"  # only in the user file: survives
    assert cfg.server.port == 9000  # user's key survives a --config merge of server
    assert cfg.server.host == "127.0.0.2"
    assert cfg.server.max_body_mb == 32  # default survives both
    assert cfg.sources == (DEFAULT, str(user), str(cli))


def test_user_file_overrides_the_default(tmp_path: Path) -> None:
    user = write(tmp_path / "user.yaml", "saturation: 0.5\n")
    assert config.load(user_file=user).saturation == 0.5
    assert config.load(user_file=False).saturation == 0.8


def test_mappings_merge_key_by_key(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        backends:
          ollama: {capacity: 9}
        models:
          llama3.1:latest: {context: 16384}
        """,
    )
    ollama = cfg.backends["ollama"]
    assert ollama.capacity == 9
    assert ollama.url == "http://127.0.0.1:11434"  # untouched keys of the entry stay
    assert ollama.location == "local"
    assert len(cfg.backends) == 6  # untouched entries stay
    llama = cfg.models["llama3.1:latest"]
    assert llama.context == 16384
    assert llama.params_b == 8
    assert llama.capabilities == ("chat", "creative", "reasoning", "analytical")


def test_nested_timeouts_merge_over_defaults(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        defaults:
          timeouts: {connect: 1}
        backends:
          ollama: {timeouts: {total: 60}}
        """,
    )
    t = cfg.backends["ollama"].timeouts
    assert (t.connect, t.first_byte, t.idle, t.total) == (1, 60, 30, 60)
    cloud = cfg.backends["ollama_cloud"].timeouts
    assert (cloud.connect, cloud.first_byte, cloud.total) == (5, 30, 600)


def test_lists_replace(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        fallbacks:
          llama3.1:latest: [gpt-oss:20b-cloud]
        routes:
          reasoning: {candidates: [kimi-k2:1t-cloud]}
        models:
          llama3.1:latest: {capabilities: [chat]}
        """,
    )
    assert cfg.fallbacks["llama3.1:latest"] == ("gpt-oss:20b-cloud",)
    assert [c.model for c in cfg.routes["reasoning"].candidates] == ["kimi-k2:1t-cloud"]
    assert cfg.models["llama3.1:latest"].capabilities == ("chat",)


def test_null_deletes_an_inherited_entry(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        routes:
          large_context: null
        fallbacks:
          llama-cpp-native: null
        backends:
          ollama_cloud: {key: null}
        """,
    )
    assert "large_context" not in cfg.routes
    assert "code" in cfg.routes
    assert "llama-cpp-native" not in cfg.fallbacks
    assert "llama-cpp-native" in cfg.models
    assert cfg.backends["ollama_cloud"].key is None


def test_null_deletes_then_a_later_layer_can_add_back(tmp_path: Path) -> None:
    user = write(tmp_path / "user.yaml", "routes: {large_context: null}\n")
    cli = write(
        tmp_path / "cli.yaml",
        "routes:\n  large_context: {strategy: direct, candidates: [llama-cpp-python]}\n",
    )
    cfg = config.load(cli, user_file=user)
    route = cfg.routes["large_context"]
    assert route.strategy == "direct"
    assert [c.model for c in route.candidates] == ["llama-cpp-python"]
    assert route.description == ""  # the default's keys were deleted, not merged back


def test_extends_none_starts_from_nothing(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        extends: none
        backends:
          box: {kind: openai, url: "http://10.0.0.2:9000/v1", location: local}
        models:
          tiny: {backend: box, params_b: 1, tier: local, capabilities: [chat], context: 2048}
        """,
    )
    assert list(cfg.backends) == ["box"]
    assert list(cfg.models) == ["tiny"]
    assert dict(cfg.routes) == {}
    assert dict(cfg.fallbacks) == {}
    assert dict(cfg.groups) == {}
    assert cfg.saturation == 0.8  # built-in values, not the default file's
    assert cfg.backends["box"].capacity == 4
    assert cfg.models["tiny"].upstream == "tiny"


def test_extends_none_in_config_file_drops_the_user_layer_too(tmp_path: Path) -> None:
    user = write(tmp_path / "user.yaml", "saturation: 0.3\n")
    cli = write(
        tmp_path / "cli.yaml",
        """
        extends: none
        backends: {box: {kind: ollama, url: "http://127.0.0.1:1", location: local}}
        models: {m: {backend: box, params_b: 1, tier: local, capabilities: [chat], context: 9}}
        """,
    )
    cfg = config.load(cli, user_file=user)
    assert cfg.saturation == 0.8
    assert list(cfg.backends) == ["box"]
    # what `traywire check` lists: only the layers that count
    assert cfg.sources == (str(cli),)


def test_extends_none_without_backends_is_an_error(tmp_path: Path) -> None:
    path, msg = layer_error(tmp_path, "extends: none\nsaturation: 0.5\n")
    assert str(path) in msg
    assert "missing required keys 'backends', 'models'" in msg


def test_load_picks_up_the_platformdirs_user_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write(tmp_path / "somewhere" / "traywire.yaml", "preference: prefer_cloud\n")
    monkeypatch.setattr(config, "user_config_path", lambda: user)
    cfg = config.load()
    assert cfg.preference == "prefer_cloud"
    assert cfg.sources == (DEFAULT, str(user))
    # user_file=False skips it even though it exists
    assert config.load(user_file=False).preference == "auto"


@pytest.mark.skipif(sys.platform != "linux", reason="platformdirs reads XDG only on Linux")
def test_load_finds_the_user_file_under_xdg_config_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    user = write(xdg / "traywire" / "traywire.yaml", "saturation: 0.65\n")
    assert config.user_config_path() == user
    cfg = config.load()
    assert cfg.saturation == 0.65
    assert str(user) in cfg.sources


def test_user_file_path_that_does_not_exist_is_skipped(tmp_path: Path) -> None:
    cfg = config.load(user_file=tmp_path / "missing.yaml")
    assert cfg.sources == (DEFAULT,)


def test_empty_layer_changes_nothing(tmp_path: Path) -> None:
    cfg = load_layer(tmp_path, "# only a comment\n")
    assert cfg.sources == (DEFAULT, str(tmp_path / "layer.yaml"))
    assert dataclasses.replace(cfg, sources=(DEFAULT,)) == config.load(user_file=False)


# --------------------------------------------------------------------------- errors, one per kind


def test_error_invalid_yaml(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        saturation: 0.5
        preference: auto
        server: port: 8485
        """,
    )
    assert_located(msg, path, 3, None, "invalid YAML", "mapping values are not allowed")


def test_error_top_level_not_a_mapping(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        # backends as a list, by mistake
        - ollama
        - vllm
        """,
    )
    assert_located(msg, path, 2, None, "expected a mapping at the top level")


def test_error_top_level_scalar(tmp_path: Path) -> None:
    path, msg = layer_error(tmp_path, "just some words\n")
    assert_located(msg, path, 1, None, "expected a mapping at the top level")


def test_error_unknown_top_level_key(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        saturation: 0.5
        routing: fast
        """,
    )
    assert_located(
        msg, path, 2, "routing", "unknown key", "expected one of: version, preference, saturation"
    )


def test_error_unknown_top_level_key_did_you_mean(tmp_path: Path) -> None:
    path, msg = layer_error(tmp_path, "saturation: 0.5\nsaturaton: 0.6\n")
    assert_located(msg, path, 2, "saturaton", "unknown key", "did you mean 'saturation'?")


def test_error_unknown_nested_key_did_you_mean(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        # tweak the code route
        routes:
          code:
            stratgy: direct
        """,
    )
    assert_located(
        msg,
        path,
        4,
        "routes.code.stratgy",
        "unknown key",
        "did you mean 'strategy'?",
        "expected one of: strategy, candidates, bands",
    )


def test_error_unknown_key_line_is_the_key_line_even_with_a_block_value(tmp_path: Path) -> None:
    # The unknown key is on line 3; its (block) value starts on line 4.
    path, msg = layer_error(
        tmp_path,
        """
        saturation: 0.5
        version: 1
        serverr:
          port: 8485
        """,
    )
    assert_located(msg, path, 3, "serverr", "unknown key", "did you mean 'server'?")


def test_error_bad_enum_value(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        routes:
          code:
            strategy: complexty_based
        """,
    )
    assert_located(
        msg,
        path,
        3,
        "routes.code.strategy",
        "'complexty_based' is not one of: " + ", ".join(STRATEGIES),
        "did you mean 'complexity_based'?",
    )


def test_error_bad_enum_value_capability(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        "models:\n  llama3.1:latest: {capabilities: [chat, poetry]}\n",
    )
    assert_located(
        msg,
        path,
        2,
        'models["llama3.1:latest"].capabilities[1]',
        "'poetry' is not one of: code, reasoning, analytical, creative, chat",
    )


@pytest.mark.parametrize(
    ("text", "line", "key_path", "expected"),
    [
        ("preference: auto\nsaturation: high\n", 2, "saturation", "expected a number, got string"),
        (
            "backends:\n  ollama:\n    capacity: true\n",
            3,
            "backends.ollama.capacity",
            "expected an integer, got boolean True",
        ),
        (
            'server:\n  port: "8485"\n',
            2,
            "server.port",
            "expected an integer, got string '8485'",
        ),
        (
            "models:\n  llama3.1:latest:\n    context: 8192.5\n",
            3,
            'models["llama3.1:latest"].context',
            "expected an integer, got float 8192.5",
        ),
        (
            "backends:\n  ollama: {enabled: 1}\n",
            2,
            "backends.ollama.enabled",
            "expected true or false, got int 1",
        ),
        (
            "models:\n  llama3.1:latest: {capabilities: chat}\n",
            2,
            'models["llama3.1:latest"].capabilities',
            "expected a non-empty list of capabilities",
        ),
        ("server: 8485\n", 1, "server", "expected a mapping, got int 8485"),
    ],
)
def test_error_wrong_type(
    tmp_path: Path, text: str, line: int, key_path: str, expected: str
) -> None:
    path, msg = layer_error(tmp_path, text)
    assert_located(msg, path, line, key_path, expected)


@pytest.mark.parametrize(
    ("text", "line", "key_path", "expected"),
    [
        ("saturation: 1.5\n", 1, "saturation", "must be <= 1, got 1.5"),
        ("saturation: 0\n", 1, "saturation", "must be > 0, got 0"),
        ("server:\n  port: 70000\n", 2, "server.port", "must be <= 65535, got 70000"),
        ("server:\n  port: 0\n", 2, "server.port", "must be >= 1, got 0"),
        (
            "backends:\n  ollama:\n    capacity: 0\n",
            3,
            "backends.ollama.capacity",
            "must be >= 1, got 0",
        ),
        (
            "health:\n  failure_threshold: 0\n",
            2,
            "health.failure_threshold",
            "must be >= 1, got 0",
        ),
        (
            "routes:\n  analytical: {headroom: 0.95}\n",
            2,
            "routes.analytical.headroom",
            "must be <= 0.9, got 0.95",
        ),
    ],
)
def test_error_out_of_range(
    tmp_path: Path, text: str, line: int, key_path: str, expected: str
) -> None:
    path, msg = layer_error(tmp_path, text)
    assert_located(msg, path, line, key_path, expected)


@pytest.mark.parametrize(
    ("text", "line", "key_path"),
    [
        ("backends:\n  ollama_cloud:\n    key: sk-abc123def456\n", 3, "backends.ollama_cloud.key"),
        ("server:\n  host: 0.0.0.0\n  token: sk-abc123def456\n", 3, "server.token"),
    ],
)
def test_error_literal_api_key(tmp_path: Path, text: str, line: int, key_path: str) -> None:
    path, msg = layer_error(tmp_path, text)
    assert_located(
        msg, path, line, key_path, "expected a key reference 'keyring:NAME' or 'env:VAR'"
    )
    assert "sk-abc123def456" not in msg  # the secret is never echoed


def test_key_references_are_accepted(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        "backends:\n  ollama_cloud: {key: env:OLLAMA_API_KEY}\nserver: {token: keyring:proxy}\n",
    )
    assert cfg.backends["ollama_cloud"].key == "env:OLLAMA_API_KEY"
    assert cfg.server.token == "keyring:proxy"


def test_error_chain_names_undefined_model(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        fallbacks:
          llama3.1:latest: [mythomax-l2-13b, llama3.2:latest]
        """,
    )
    assert_located(
        msg,
        path,
        2,
        'fallbacks["llama3.1:latest"][1]',
        "undefined model 'llama3.2:latest'",
        "did you mean 'llama3.1:latest'?",
    )


def test_error_chain_head_is_undefined_model(tmp_path: Path) -> None:
    path, msg = layer_error(tmp_path, "fallbacks:\n  nosuchmodel: [llama3.1:latest]\n")
    assert_located(msg, path, 2, "fallbacks.nosuchmodel", "undefined model 'nosuchmodel'")


def test_error_route_candidate_is_undefined_model(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path, "routes:\n  reasoning: {candidates: [deepseek-v3.1:671b-cloud, gpt-5]}\n"
    )
    assert_located(msg, path, 2, "routes.reasoning.candidates[1]", "undefined model 'gpt-5'")


def test_error_model_on_undefined_backend(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        models:
          phi4:
            backend: lmstudio
            params_b: 14
            tier: local
            capabilities: [reasoning]
            context: 16384
        """,
    )
    assert_located(
        msg,
        path,
        3,
        "models.phi4.backend",
        "undefined backend 'lmstudio'",
        "defined: llama_cpp_native, llama_cpp_python, ollama, ollama_cloud",
    )


def test_error_route_without_candidates_key(tmp_path: Path) -> None:
    path, msg = layer_error(tmp_path, "routes:\n  summaries: {strategy: direct}\n")
    assert_located(
        msg, path, 2, "routes.summaries", "at least one candidate", "missing key 'candidates'"
    )


def test_error_route_with_empty_candidates(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        routes:
          reasoning:
            candidates: []
        """,
    )
    assert_located(msg, path, 3, "routes.reasoning.candidates", "at least one candidate")


def test_error_complexity_based_without_bands(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        "routes:\n  triage: {strategy: complexity_based, candidates: [llama3.1:latest]}\n",
    )
    # The error may be located at the route or at its strategy key.
    assert msg.startswith(f"{path}:2 routes.triage"), msg
    assert "complexity_based needs 'bands'" in msg


def test_error_complexity_based_without_bands_names_the_layer_that_set_it(
    tmp_path: Path,
) -> None:
    # The route comes from the default; this layer switches its strategy.
    path, msg = layer_error(
        tmp_path,
        """
        # make reasoning depend on prompt size
        routes:
          reasoning:
            strategy: complexity_based
        """,
    )
    assert "complexity_based needs 'bands'" in msg
    assert msg.startswith(f"{path}:4 routes.reasoning"), msg


def test_error_bands_not_increasing(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        routes:
          code:
            bands:
              - {label: simple, upto: 100, candidates: [qwen2.5-coder:7b]}
              - {label: medium, upto: 100, candidates: [qwen-coder-vllm]}
              - {label: complex, candidates: [qwen3-coder:480b-cloud]}
        """,
    )
    assert_located(
        msg, path, 5, "routes.code.bands[1].upto", "bands must be in increasing order; 100 <= 100"
    )


def test_error_last_band_bounded(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        routes:
          code:
            bands:
              - {label: simple, upto: 49, candidates: [qwen2.5-coder:7b]}
              - {label: complex, upto: 5000, candidates: [qwen3-coder:480b-cloud]}
        """,
    )
    assert "routes.code.bands" in msg
    assert "the last band must be unbounded" in msg
    # Either the `bands:` key (line 3) or the bounded last band (line 5) is the
    # place to look; the first band (line 4) is not.
    assert msg.startswith((f"{path}:3 ", f"{path}:5 ")), msg


def test_error_band_after_unbounded_band(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        routes:
          code:
            bands:
              - {label: simple, candidates: [qwen2.5-coder:7b]}
              - {label: complex, candidates: [qwen3-coder:480b-cloud]}
        """,
    )
    assert_located(msg, path, 5, "routes.code.bands[1]", "unreachable")


def test_error_duplicate_model_in_a_chain(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        fallbacks:
          llama3.1:latest: [mythomax-l2-13b, gpt-oss:20b-cloud, mythomax-l2-13b]
        """,
    )
    assert_located(
        msg, path, 2, 'fallbacks["llama3.1:latest"][2]', "'mythomax-l2-13b' appears twice"
    )


def test_error_duplicate_model_in_route_candidates(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        "routes:\n  reasoning:\n"
        "    candidates: [llama3.1:latest, kimi-k2:1t-cloud, llama3.1:latest]\n",
    )
    assert_located(
        msg, path, 3, "routes.reasoning.candidates[2]", "'llama3.1:latest' is listed twice"
    )


def test_error_model_is_its_own_fallback(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        fallbacks:
          mythomax-l2-13b:
            - llama3.1:latest
            - mythomax-l2-13b
        """,
    )
    assert_located(
        msg, path, 4, "fallbacks.mythomax-l2-13b[1]", "its own fallback", "'mythomax-l2-13b'"
    )


def test_error_duplicate_yaml_key(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        backends:
          ollama: {capacity: 2}
          vllm_qwen: {capacity: 8}
          ollama: {capacity: 6}
        """,
    )
    assert_located(msg, path, 4, "backends.ollama", "duplicate key")


def test_error_exclusive_group_active_not_a_member(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        exclusive_groups:
          vllm:
            active: ollama
        """,
    )
    assert_located(
        msg,
        path,
        3,
        "exclusive_groups.vllm.active",
        "'ollama' is not a member of group 'vllm'",
        "members: vllm_qwen, vllm_dolphin",
    )


def test_error_exclusive_group_nobody_belongs_to(tmp_path: Path) -> None:
    path, msg = layer_error(tmp_path, "exclusive_groups:\n  gpu: {active: ollama}\n")
    assert_located(msg, path, 2, "exclusive_groups.gpu", "no backend names exclusive_group 'gpu'")


def test_exclusive_group_active_switch(tmp_path: Path) -> None:
    cfg = load_layer(tmp_path, "exclusive_groups:\n  vllm: {active: vllm_dolphin}\n")
    assert cfg.groups["vllm"].active == "vllm_dolphin"


def test_error_route_name_is_a_model_name(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        routes:
          llama3.1:latest: {strategy: direct, candidates: [mythomax-l2-13b]}
        """,
    )
    assert_located(
        msg,
        path,
        2,
        'routes["llama3.1:latest"]',
        "route name 'llama3.1:latest' is also a model name",
    )


def test_error_route_named_auto(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        saturation: 0.8
        routes:
          auto: {strategy: direct, candidates: [llama3.1:latest]}
        """,
    )
    assert_located(msg, path, 3, "routes.auto", "'auto' is reserved")


def test_error_unsupported_version(tmp_path: Path) -> None:
    path, msg = layer_error(tmp_path, "# future\nversion: 2\n")
    assert_located(msg, path, 2, "version", "unsupported config version 2; expected 1")


def test_error_bad_extends(tmp_path: Path) -> None:
    path, msg = layer_error(tmp_path, "extends: maybe\n")
    assert_located(msg, path, 1, "extends", "expected 'default' or 'none'")


def test_error_backend_without_url(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        """
        backends:
          lmstudio: {kind: openai, location: local}
        """,
    )
    assert_located(msg, path, 2, "backends.lmstudio", "missing required key 'url'")


def test_error_model_without_context(tmp_path: Path) -> None:
    path, msg = layer_error(
        tmp_path,
        "models:\n  phi4: {backend: ollama, params_b: 14, tier: local, capabilities: [chat]}\n",
    )
    assert_located(msg, path, 2, "models.phi4", "missing required key 'context'")


def test_error_model_names_every_missing_key_at_once(tmp_path: Path) -> None:
    # A user writing a new model learns everything it still needs in one error.
    path, msg = layer_error(tmp_path, "models:\n  phi4: {backend: ollama}\n")
    assert_located(
        msg,
        path,
        2,
        "models.phi4",
        "missing required keys 'params_b', 'tier', 'context'",
    )


def test_error_missing_key_line_is_the_entry_line_for_a_block_mapping(tmp_path: Path) -> None:
    # `lmstudio:` is on line 2; its first key (`kind:`) on line 3.
    path, msg = layer_error(
        tmp_path,
        """
        backends:
          lmstudio:
            kind: openai
            location: local
        """,
    )
    assert_located(msg, path, 2, "backends.lmstudio", "missing required key 'url'")


@pytest.mark.parametrize("url", ["localhost:11434", "ftp://127.0.0.1:21", "http://", "11434"])
def test_error_bad_url(tmp_path: Path, url: str) -> None:
    path, msg = layer_error(tmp_path, f"backends:\n  ollama:\n    url: '{url}'\n")
    assert_located(msg, path, 3, "backends.ollama.url", "expected an http:// or https:// URL")


def test_url_trailing_slash_is_dropped(tmp_path: Path) -> None:
    cfg = load_layer(tmp_path, "backends:\n  ollama: {url: 'http://127.0.0.1:11434/'}\n")
    assert cfg.backends["ollama"].url == "http://127.0.0.1:11434"


def test_error_unreadable_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "traywire.yaml"
    with pytest.raises(ConfigError) as info:
        config.load(missing, user_file=False)
    msg = str(info.value)
    assert msg.startswith(f"{missing}: cannot read config file")


def test_error_config_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path, user_file=False)
    assert str(info.value).startswith(f"{tmp_path}: cannot read config file")


def test_config_error_carries_its_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_layer(tmp_path, "saturation: 2\n")
    assert info.value.problems == [str(info.value)]


# --------------------------------------------------------------------------- errors in layers


def test_error_in_config_file_names_that_file_and_its_line(tmp_path: Path) -> None:
    user = write(
        tmp_path / "user.yaml",
        """
        # my settings
        preference: prefer_local
        saturation: 0.7
        server:
          port: 9000
        """,
    )
    cli = write(
        tmp_path / "cli.yaml",
        """
        # experiment

        backends:
          ollama:
            capacity: 2
          vllm_qwen:
            capacity: -1
        """,
    )
    with pytest.raises(ConfigError) as info:
        config.load(cli, user_file=user)
    msg = str(info.value)
    assert_located(msg, cli, 7, "backends.vllm_qwen.capacity", "must be >= 1, got -1")
    assert str(user) not in msg


def test_error_in_user_file_names_the_user_file(tmp_path: Path) -> None:
    user = write(tmp_path / "user.yaml", "preference: prefer_local\nsaturation: 3\n")
    cli = write(tmp_path / "cli.yaml", "server: {port: 9001}\n")
    with pytest.raises(ConfigError) as info:
        config.load(cli, user_file=user)
    assert_located(str(info.value), user, 2, "saturation", "must be <= 1")


def test_error_overridden_by_a_later_layer_is_no_error(tmp_path: Path) -> None:
    user = write(tmp_path / "user.yaml", "routes:\n  code: {strategy: direct}\n")
    cli = write(tmp_path / "cli.yaml", "routes:\n  code: {strategy: complexity_based}\n")
    cfg = config.load(cli, user_file=user)
    assert cfg.routes["code"].strategy == "complexity_based"


def test_cross_reference_error_names_the_layer_that_broke_it(tmp_path: Path) -> None:
    # The route is the default's; the layer points one of its candidates at nothing.
    cli = write(
        tmp_path / "cli.yaml",
        """
        routes:
          low_latency:
            candidates:
              - llama-cpp-native
              - llama-cpp-pythn
        """,
    )
    with pytest.raises(ConfigError) as info:
        config.load(cli, user_file=False)
    assert_located(
        str(info.value),
        cli,
        5,
        "routes.low_latency.candidates[1]",
        "undefined model 'llama-cpp-pythn'",
        "did you mean 'llama-cpp-python'?",
    )


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    padding=st.lists(st.sampled_from(["", "# note", "   ", "#"]), max_size=30),
    value=st.sampled_from(["1.5", "-0.1", "'high'", "true", "[0.5]"]),
)
def test_error_line_counts_comments_and_blank_lines(
    tmp_path: Path, padding: list[str], value: str
) -> None:
    text = "\n".join([*padding, "preference: auto", f"saturation: {value}", ""])
    path = tmp_path / "pad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config.load(path, user_file=False)
    assert str(info.value).startswith(f"{path}:{len(padding) + 2} saturation: ")


# --------------------------------------------------------------------------- principles


def _by_principle(cfg: config.Config) -> dict[str, list[principles.Warning_]]:
    out: dict[str, list[principles.Warning_]] = {}
    for w in principles.check(cfg):
        out.setdefault(w.principle, []).append(w)
    return out


def test_principle_graceful_degradation(tmp_path: Path) -> None:
    # A 20B cloud model whose first fallback is a 13B local one (65% kept: no cliff).
    cfg = load_layer(
        tmp_path,
        """
        fallbacks:
          gpt-oss:20b-cloud: [mythomax-l2-13b, glm-4.6:cloud]
        """,
    )
    found = _by_principle(cfg)
    assert list(found) == ["graceful degradation"]
    (w,) = found["graceful degradation"]
    assert w.where == 'fallbacks["gpt-oss:20b-cloud"]'
    assert "mythomax-l2-13b" in w.message
    assert "smaller local model" in w.message
    assert "(graceful degradation)" in str(w)


def test_principle_graceful_degradation_not_for_a_larger_local_hop(tmp_path: Path) -> None:
    # glm-4.6 (4.6B, cloud) falling back to llama3.1 (8B, local) keeps the size.
    cfg = load_layer(tmp_path, "fallbacks:\n  glm-4.6:cloud: [llama3.1:latest]\n")
    assert principles.check(cfg) == []


def test_principle_quality_preservation(tmp_path: Path) -> None:
    # A 70B local model whose first hop is an 8B local one, with large cloud models around.
    cfg = load_layer(
        tmp_path,
        """
        models:
          llama3.3:70b: {backend: ollama, params_b: 70, tier: local, capabilities: [chat],
                         context: 8192}
        fallbacks:
          llama3.3:70b: [llama3.1:latest, gpt-oss:120b-cloud]
        """,
    )
    found = _by_principle(cfg)
    assert list(found) == ["quality preservation"]
    (w,) = found["quality preservation"]
    assert w.where == 'fallbacks["llama3.3:70b"]'
    assert "llama3.1:latest keeps 11%" in w.message
    assert "cloud model kimi-k2:1t-cloud" in w.message


def test_principle_quality_preservation_silent_without_a_cloud_alternative(
    tmp_path: Path,
) -> None:
    cfg = load_layer(
        tmp_path,
        """
        backends:
          ollama_cloud: {enabled: false}
        models:
          llama3.3:70b: {backend: ollama, params_b: 70, tier: local, capabilities: [chat],
                         context: 8192}
        fallbacks:
          llama3.3:70b: [llama3.1:latest]
        """,
    )
    assert "quality preservation" not in _by_principle(cfg)


def test_principle_quality_preservation_threshold_is_configurable(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        principles: {max_first_hop_drop: 0.95}
        models:
          llama3.3:70b: {backend: ollama, params_b: 70, tier: local, capabilities: [chat],
                         context: 8192}
        fallbacks:
          llama3.3:70b: [llama3.1:latest]
        """,
    )
    assert principles.check(cfg) == []


def test_principle_complexity_awareness_simple_band_cloud_only(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        routes:
          code:
            bands:
              - {label: simple, upto: 49, candidates: [qwen3-coder:480b-cloud]}
              - {label: medium, upto: 100, candidates: [qwen-coder-vllm]}
              - {label: complex, candidates: [qwen3-coder:480b-cloud]}
        """,
    )
    found = _by_principle(cfg)
    assert list(found) == ["complexity awareness"]
    (w,) = found["complexity awareness"]
    assert "simplest band goes to the cloud only" in w.message
    assert w.where.endswith("bands[0]")


def test_principle_complexity_awareness_complex_band_local_only(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        routes:
          code:
            bands:
              - {label: simple, upto: 49, candidates: [qwen2.5-coder:7b]}
              - {label: complex, candidates: [qwen-coder-vllm]}
        """,
    )
    found = _by_principle(cfg)
    assert list(found) == ["complexity awareness"]
    (w,) = found["complexity awareness"]
    assert "most complex band goes to local models only" in w.message
    assert w.where.endswith("bands[1]")


def test_principle_capability_preservation(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        fallbacks:
          qwen2.5-coder:7b: [llama3.1:latest, qwen-coder-vllm]
        """,
    )
    found = _by_principle(cfg)
    assert list(found) == ["capability preservation"]
    (w,) = found["capability preservation"]
    assert w.where == 'fallbacks["qwen2.5-coder:7b"][0]'
    assert "llama3.1:latest has no code capability" in w.message
    assert "qwen-coder-vllm" in w.message


def test_principle_capability_preservation_fine_when_code_models_come_first(
    tmp_path: Path,
) -> None:
    cfg = load_layer(
        tmp_path, "fallbacks:\n  qwen2.5-coder:7b: [qwen-coder-vllm, llama3.1:latest]\n"
    )
    assert principles.check(cfg) == []


def test_principle_request_kinds(tmp_path: Path) -> None:
    cfg = load_layer(
        tmp_path,
        """
        fallbacks:
          llama3.1:latest: [nomic-embed-text, mythomax-l2-13b]
          nomic-embed-text: [llama3.1:latest]
        routes:
          chat:
            strategy: direct
            candidates: [llama3.1:latest, nomic-embed-text]
        """,
    )
    found = _by_principle(cfg)
    messages = [w.message for w in found["request kinds"]]
    assert any(
        "nomic-embed-text cannot serve chats or plain completions, which requests for "
        "llama3.1:latest are" in m
        for m in messages
    )
    assert any("llama3.1:latest cannot serve embeddings" in m for m in messages)
    assert any(
        "nomic-embed-text cannot chat, and a route is asked for chats" in m for m in messages
    )
    no_embed = load_layer(
        tmp_path,
        "models:\n  nomic-embed-text: null\naliases:\n  names:\n    text-embedding-*: null\n",
        "two.yaml",
    )
    (w,) = principles.check(no_embed)
    assert "no model makes embeddings" in w.message


def test_principle_warnings_carry_file_and_line_of_a_chain(tmp_path: Path) -> None:
    path = tmp_path / "layer.yaml"
    cfg = load_layer(
        tmp_path,
        """
        # a chain to a general model first
        fallbacks:
          qwen2.5-coder:7b: [llama3.1:latest, qwen-coder-vllm]
        """,
    )
    (w,) = principles.check(cfg)
    assert w.origin == f"{path}:3"
    assert str(w).startswith(f"{path}:3 ")


def test_principle_warnings_carry_file_and_line_for_simple_names(tmp_path: Path) -> None:
    # Names without ':' or '.' are written plainly in key paths (fallbacks.coder);
    # the warning must still find where the chain was defined.
    path = tmp_path / "layer.yaml"
    cfg = load_layer(
        tmp_path,
        """
        models:
          coder: {backend: ollama, params_b: 7, tier: local, capabilities: [code],
                  context: 8192}
        fallbacks:
          coder: [llama3.1:latest, qwen-coder-vllm]
        """,
    )
    (w,) = principles.check(cfg)
    assert w.principle == "capability preservation"
    assert w.origin == f"{path}:5", w


def test_principle_warnings_carry_file_and_line_of_a_band(tmp_path: Path) -> None:
    path = tmp_path / "layer.yaml"
    cfg = load_layer(
        tmp_path,
        """
        routes:
          code:
            bands:
              - {label: simple, upto: 49, candidates: [qwen2.5-coder:7b]}
              - {label: complex, candidates: [qwen-coder-vllm]}
        """,
    )
    (w,) = principles.check(cfg)
    assert w.origin == f"{path}:5", w


def test_layers_below_extends_none_are_not_parsed() -> None:
    """`extends: none` starts from nothing: what is below it (the built-in
    default, most often) is not even parsed (start-up time)."""
    top = (
        "extends: none\nbackends:\n  b:\n    kind: openai\n    url: http://127.0.0.1:1/v1\n"
        "    location: local\n"
        "models:\n  m:\n    backend: b\n    params_b: 1\n    tier: local\n"
        "    capabilities: [chat]\n    context: 4096\n"
    )
    cfg = config.load_texts([("below.yaml", "{not: [yaml"), ("top.yaml", top)])
    assert list(cfg.models) == ["m"] and cfg.sources == ("top.yaml",)
    with pytest.raises(ConfigError, match=r"below\.yaml"):
        config.load_texts([("below.yaml", "{not: [yaml"), ("top.yaml", "preference: auto\n")])
