"""`traywire keys set|list|delete`: keys go to the OS keyring, never argv or a file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from traywire import cli, secrets


def run(args: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(args)


def test_set_reads_stdin_and_stores_in_the_keyring(
    memory_keyring: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keys", "set", "ollama_cloud"], monkeypatch, "sk-live-abc123\n") == 0
    assert secrets.resolve("keyring:ollama_cloud") == "sk-live-abc123"
    out = capsys.readouterr()
    assert "stored key 'ollama_cloud'" in out.out
    assert "sk-live-abc123" not in out.out + out.err


def test_set_refuses_an_empty_key(
    memory_keyring: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keys", "set", "ollama_cloud"], monkeypatch, "\n") == 1
    assert secrets.resolve("keyring:ollama_cloud") is None
    assert "traywire:" in capsys.readouterr().err


def test_the_key_is_never_taken_from_an_argument(
    memory_keyring: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit):
        run(["keys", "set", "ollama_cloud", "sk-on-the-command-line"], monkeypatch)
    assert secrets.resolve("keyring:ollama_cloud") is None


def test_list_shows_names_and_whether_set_never_values(
    memory_keyring: object,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    secrets.set_key("ollama_cloud", "sk-secret-value-1")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backends:\n  vllm_qwen: {key: 'keyring:vllm_token'}\n")
    assert run(["keys", "list", "--config", str(cfg)], monkeypatch) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "set" in lines["keyring:ollama_cloud"] and "not set" not in lines["keyring:ollama_cloud"]
    assert "not set" in lines["keyring:vllm_token"]
    assert "sk-secret-value-1" not in out


def test_delete_removes_the_key(
    memory_keyring: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets.set_key("ollama_cloud", "sk-x-1234567")
    assert run(["keys", "delete", "ollama_cloud"], monkeypatch) == 0
    assert secrets.resolve("keyring:ollama_cloud") is None
    assert run(["keys", "delete", "ollama_cloud"], monkeypatch) == 1


def test_no_keyring_backend_gives_a_message_naming_the_fix(
    fail_keyring: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["keys", "set", "ollama_cloud"], monkeypatch, "sk-abc-123456\n") == 1
    err = capsys.readouterr().err
    # one short line: what is missing, the quick env:VAR path first, then the fix
    assert err.startswith("traywire: no usable OS keyring (")
    assert err.count("\n") == 1 and len(err) < 400
    assert err.index("env:VAR") < err.index("gnome-keyring")
    assert "traywire doctor" in err
    assert "keyrings.alt" not in err
    assert run(["keys", "list"], monkeypatch) == 1
    assert capsys.readouterr().err.count("no usable OS keyring") == 1
