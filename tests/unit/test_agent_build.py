"""Building banger-agent: a static binary keyed by its Go sources, a clear error without Go."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from banger.errors import HostError
from banger.guest import agentbin, bundle


def test_the_agent_is_a_static_binary(agent_binary: Path) -> None:
    data = agent_binary.read_bytes()
    assert data[:4] == b"\x7fELF"
    assert bundle.elf_interpreter(data) is None  # runs in any image, whatever its libc
    assert bundle.elf_needed(data) == []


def test_the_key_follows_every_source_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(agentbin.source_dir(), src)
    before = agentbin.source_key(src)
    assert before == agentbin.source_key(agentbin.source_dir())
    (src / "main.go").write_text((src / "main.go").read_text() + "\n// changed\n")
    assert agentbin.source_key(src) != before
    assert (src / "go.mod").is_file() and len(list(src.glob("*.go"))) >= 5


def test_a_built_agent_is_reused_without_go(tmp_path: Path, monkeypatch) -> None:
    cached = tmp_path / agentbin.source_key() / agentbin.BINARY_NAME
    cached.parent.mkdir()
    cached.write_bytes(b"\x7fELF cached")
    monkeypatch.setattr(agentbin.proc, "which", lambda name: None)
    assert agentbin.build_agent(tmp_path) == cached


def test_without_go_the_error_says_how_to_install_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(agentbin.proc, "which", lambda name: None)
    with pytest.raises(HostError, match="`go` is not installed") as caught:
        agentbin.build_agent(tmp_path)
    assert "apt-get install golang-go" in (caught.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_the_agent_serves_vsock_beside_a_unix_socket(agent_binary: Path, tmp_path: Path) -> None:
    # No vsock transport to connect through here; the listener itself must come up.
    sock = tmp_path / "a.sock"
    proc = subprocess.Popen(
        [str(agent_binary), "--vsock", "47011", "--listen", f"unix:{sock}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == "banger-agent: channel up\n"
        line = proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait()
    if "vsock port 47011" not in line:
        pytest.skip(f"this host has no AF_VSOCK: {line.strip()}")
    assert line.strip() == f"banger-agent: serving vsock port 47011, unix {sock}"


def test_without_any_channel_the_agent_says_so(agent_binary: Path) -> None:
    result = subprocess.run(
        [str(agent_binary), "--serial", "/nonexistent/vport"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 1
    assert "no channel to the host" in result.stderr
    assert "channel up" not in result.stdout
