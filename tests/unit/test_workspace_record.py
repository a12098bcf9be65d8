"""The workspace record in the store, banger's ssh_config blocks, the Include edit, completion."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click
import pytest

from banger.api.models import WorkspaceMode, WorkspaceRecord
from banger.cli import completion, sshconfig
from banger.cli.main import cli
from banger.daemon.sshconfig import SshConfigFiles, render_block
from banger.errors import NotFound
from banger.net.leases import lease
from tests.unit.test_store import GATEWAY, NET, draft

# Commands are imported when first used; these tests walk the whole tree.
cli.load_all()


def record(**kw: object) -> WorkspaceRecord:
    data = {
        "host_path": "/src/app",
        "guest_path": "/root/app",
        "base_commit": "a" * 40,
        "tree": "b" * 40,
        "mode": WorkspaceMode.SHALLOW,
        "branch": "main",
    }
    data.update(kw)
    return WorkspaceRecord(**data)  # type: ignore[arg-type]


def test_a_workspace_is_recorded_replaced_and_goes_with_its_vm(store):
    vm = lease(draft("dev"), store, NET, [GATEWAY])
    with pytest.raises(NotFound, match="no workspace in VM named 'dev'"):
        store.get_workspace(vm)
    store.save_workspace(vm, record(), "t1")
    saved = store.save_workspace(vm, record(base_commit="c" * 40, mode=WorkspaceMode.FULL), "t2")
    assert (saved.vm, saved.base_commit, saved.mode, saved.prepared_at) == (
        "dev",
        "c" * 40,
        WorkspaceMode.FULL,
        "t2",
    )
    store.delete_vm(vm.id)
    assert store.db.query("SELECT COUNT(*) FROM workspaces")[0][0] == 0


def test_each_vm_block_pins_its_host_key_and_ssh_reads_it(store, tmp_path: Path):
    vm = lease(
        draft("dev").model_copy(update={"dir": str(tmp_path / "vms" / "x")}), store, NET, [GATEWAY]
    )
    Path(vm.dir).mkdir(parents=True)
    files = SshConfigFiles(store, tmp_path / "vms", tmp_path / "key")
    written = files.refresh()
    assert written.path == f"{tmp_path}/vms/*/ssh_config"
    assert render_block(vm, tmp_path / "key") in written.text
    top = tmp_path / "config"
    top.write_text(sshconfig.include_block(written.path))
    resolved = subprocess.run(
        ["ssh", "-G", "-F", str(top), "dev.vm"], capture_output=True, text=True, check=True
    ).stdout
    assert f"hostname {vm.ip}" in resolved
    assert f"hostkeyalias banger-{vm.id}" in resolved
    assert "stricthostkeychecking true" in resolved


@pytest.mark.parametrize("before", [None, b"", b"Host a\n  User b\n", b"no newline"])
def test_install_then_uninstall_leaves_the_file_byte_for_byte(tmp_path: Path, before):
    config = tmp_path / "ssh" / "config"
    state = tmp_path / "state.json"
    if before is not None:
        config.parent.mkdir()
        config.write_bytes(before)
    assert sshconfig.install(config, "/b/*/ssh_config", state)
    text = config.read_text()
    assert text.startswith(sshconfig.include_block("/b/*/ssh_config"))
    assert not sshconfig.install(config, "/b/*/ssh_config", state)  # once only
    assert sshconfig.uninstall(config, state)
    if before is None:
        assert not config.exists()
    else:
        assert config.read_bytes() == before
    assert not sshconfig.uninstall(config, state)


def test_name_arguments_complete_from_the_daemon(monkeypatch):
    asked = []

    def fake(path: str, incomplete: str) -> list[str]:
        asked.append(path)
        return [n for n in ("dev", "web") if n.startswith(incomplete)]

    monkeypatch.setattr(completion, "names_from_daemon", fake)
    ctx = click.Context(cli)
    for group, command, param in (
        ("vm", "show", "name"),
        ("image", "show", "name"),
        ("kernel", "delete", "names"),
        ("image", "promote", "vm"),
    ):
        cmd = cli.commands[group].commands[command]  # type: ignore[attr-defined]
        arg = next(p for p in cmd.params if p.name == param)
        assert [i.value for i in arg.shell_complete(ctx, "d")] == ["dev"]
    assert asked == ["/vms", "/images", "/kernels", "/vms"]


def test_completion_is_quiet_without_a_daemon(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("BANGER_RUNTIME_DIR", str(tmp_path))
    assert completion.names_from_daemon("/vms", "") == []


def test_exec_options_go_before_the_double_dash_and_the_command_after(monkeypatch):
    from click.testing import CliRunner

    from banger.cli import vm_exec

    seen = {}

    class Channel:
        def run(self, argv, **kw):  # type: ignore[no-untyped-def]
            seen.update(argv=list(argv), **kw)
            return 5

    class Conn:
        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *a):  # type: ignore[no-untyped-def]
            return None

    monkeypatch.setattr(vm_exec.common, "client", lambda: Conn())
    monkeypatch.setattr(vm_exec, "find_workspace", lambda conn, name: None)
    monkeypatch.setattr(vm_exec, "channel_to", lambda conn, name: Channel())
    argv = ["vm", "exec", "dev", "--cwd", "/tmp", "-e", "A=1", "--", "ls", "--cwd", "-la"]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 5, result.output
    assert seen == {"argv": ["ls", "--cwd", "-la"], "cwd": "/tmp", "env": {"A": "1"}, "stdin": None}
    bad = CliRunner().invoke(cli, ["vm", "exec", "dev", "-e", "nokey", "--", "true"])
    assert bad.exit_code != 0 and "is not KEY=VALUE" in str(bad.exception)


def test_export_writes_into_a_pipe_or_device_instead_of_replacing_it(tmp_path: Path):
    import os
    import stat
    import threading

    from banger.cli.workspace import write_patch
    from banger.workspace.export import Exported

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_patch(Exported(base_commit="a", changes=[], patch=b"diff"), str(fifo))
    reader.join(5)
    assert got == [b"diff"] and stat.S_ISFIFO(fifo.stat().st_mode)
    regular = tmp_path / "p.diff"
    write_patch(Exported(base_commit="a", changes=[], patch=b"x"), str(regular))
    assert regular.read_bytes() == b"x" and sorted(os.listdir(tmp_path)) == ["fifo", "p.diff"]
