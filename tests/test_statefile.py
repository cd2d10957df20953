"""The state file: the preference and active vLLM member survive a restart."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import MappingProxyType

import pytest
from harness import config_for

from traywire import statefile
from traywire.proxy.runtime import Runtime
from traywire.statefile import State


def group_config() -> object:
    def b(port: int) -> dict[str, object]:
        return {
            "kind": "openai",
            "url": f"http://127.0.0.1:{port}/v1",
            "location": "local",
            "exclusive_group": "vllm",
        }

    models = "\n".join(
        f"  m{n}: {{backend: vllm_{n}, params_b: 7, tier: local, capabilities: [chat], "
        "context: 8192}"
        for n in "ab"
    )
    return config_for({"vllm_a": b(1), "vllm_b": b(2)}, f"models:\n{models}\n")


def test_default_path_is_in_the_platformdirs_state_dir(_isolated_dirs: Path) -> None:
    path = statefile.default_path()
    assert path == Path(os.environ["XDG_STATE_HOME"]) / "traywire" / "state.json"


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    state = State("prefer_local", MappingProxyType({"vllm": "vllm_b"}))
    statefile.save(path, state)
    assert statefile.load(path) == state
    assert json.loads(path.read_text()) == {
        "version": 1,
        "preference": "prefer_local",
        "active": {"vllm": "vllm_b"},
    }
    statefile.save(path, State())
    assert statefile.load(path) == State()


def test_save_is_atomic_and_leaves_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    statefile.save(path, State("auto"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(statefile.os, "replace", broken_replace)
    with pytest.raises(OSError):
        statefile.save(path, State("local_only"))
    # the old file is intact, the temporary file is gone
    assert statefile.load(path) == State("auto")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_missing_file_is_an_empty_state(tmp_path: Path) -> None:
    assert statefile.load(tmp_path / "nope.json") == State()


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", '"x"'],
)
def test_unreadable_file_is_ignored_with_a_warning(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="traywire"):
        assert statefile.load(path) == State()
    assert "ignoring the state file" in caplog.text


def test_bad_values_are_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {"preference": "fastest", "active": {"vllm": "vllm_b", "x": 3, "y": "", "z": None}}
        )
    )
    with caplog.at_level(logging.WARNING, logger="traywire"):
        state = statefile.load(path)
    assert state == State(None, MappingProxyType({"vllm": "vllm_b"}))
    assert "unknown preference 'fastest'" in caplog.text
    path.write_text(json.dumps({"active": ["vllm"]}))
    assert statefile.load(path) == State()


def test_apply_and_capture() -> None:
    rt = Runtime(group_config())  # type: ignore[arg-type]
    assert statefile.capture(rt) == State()
    problems = statefile.apply(
        rt,
        State("local_only", MappingProxyType({"vllm": "vllm_b", "gone": "x"})),
    )
    assert rt.preference == "local_only"
    assert rt.active == {"vllm": "vllm_b"}
    assert len(problems) == 1 and problems[0].startswith("active gone: no exclusive group")
    assert statefile.capture(rt) == State("local_only", MappingProxyType({"vllm": "vllm_b"}))
    problems = statefile.apply(rt, State(None, MappingProxyType({"vllm": "vllm_c"})))
    assert problems and "not a member" in problems[0]
    assert rt.active == {"vllm": "vllm_b"}


def test_a_bad_preference_is_reported_not_raised() -> None:
    rt = Runtime(group_config())  # type: ignore[arg-type]
    problems = statefile.apply(rt, State("sometimes"))  # type: ignore[arg-type]
    assert problems and problems[0].startswith("preference:")
    assert rt.preference is None


def test_capture_leaves_out_a_group_without_member() -> None:
    rt = Runtime(group_config())  # type: ignore[arg-type]
    rt.active["vllm"] = ""  # mid-switch
    assert statefile.capture(rt) == State()


def test_capture_leaves_out_the_configs_own_member() -> None:
    cfg = group_config()
    rt = Runtime(cfg)  # type: ignore[arg-type]
    rt.assign("vllm", cfg.groups["vllm"].active)  # e.g. started at launch
    assert statefile.capture(rt) == State()  # a later config edit is not overridden
