"""banger.VM against the whole daemon API on a test socket, with the real agent behind it.

Everything between the SDK and the agent is real: the client, the daemon's
routes, operations and services, the store, the Agents service's link. The
VMM and the root helper are the fakes (``tests/unit/sdk_daemon.py``), so a
"VM" is a record, its disks, and the host-run banger-agent.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

import banger
from banger.api.shapes import Event
from tests.unit.sdk_daemon import IMAGE, SdkDaemon
from tests.unit.test_workspace import git


@pytest.fixture
def daemon(settings, store, agent_binary, tmp_path):
    served = SdkDaemon(settings, store, agent_binary, tmp_path).start()
    yield served
    served.stop()


def vms(daemon: SdkDaemon) -> list[str]:
    return [vm.name for vm in daemon.store.list_vms()]


def test_a_with_block_makes_a_vm_runs_in_it_and_deletes_it(daemon):
    stages: list[Event] = []
    with banger.VM(image=IMAGE, settings=daemon.settings, on_progress=stages.append) as vm:
        assert vms(daemon) == [vm.name]
        r = vm.commands.run("echo out; echo err >&2; exit 3")
        assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
        assert not r.ok
    assert vms(daemon) == []
    assert any(e.stage for e in stages)  # create's and delete's stages reached the callback


def test_a_raising_body_still_deletes_its_vm(daemon):
    with pytest.raises(ZeroDivisionError), banger.VM(image=IMAGE, settings=daemon.settings):
        assert len(vms(daemon)) == 1
        _ = 1 / 0
    assert vms(daemon) == []


def test_run_takes_argv_cwd_env_stdin_and_a_timeout(daemon, tmp_path):
    with banger.VM(image=IMAGE, settings=daemon.settings) as vm:
        r = vm.commands.run(["sh", "-c", 'pwd; echo "$G"; cat'], cwd=str(tmp_path),
                            env={"G": "hi"}, stdin="in")  # fmt: skip
        assert r.stdout == f"{tmp_path}\nhi\nin"
        seen: list[str] = []
        r = vm.commands.run("echo a; echo b >&2", on_stdout=seen.append, on_stderr=seen.append)
        assert sorted(seen) == ["a\n", "b\n"] and r.stdout == "a\n"
        r = vm.commands.run(["sleep", "30"], timeout=0.5)
        assert (r.exit_code, r.timed_out) == (124, True)


def test_a_missing_command_is_127_with_the_guests_reason(daemon):
    with banger.VM(image=IMAGE, settings=daemon.settings) as vm:
        r = vm.commands.run(["no-such-command-here"])
        assert r.exit_code == 127
        assert "no-such-command-here: command not found in VM" in r.stderr


def test_stream_yields_stdout_and_stderr_apart_then_the_result(daemon):
    with banger.VM(image=IMAGE, settings=daemon.settings) as vm:
        stream = vm.commands.stream(["sh", "-c", "echo one; echo two >&2; exit 5"])
        chunks = list(stream)
        out = b"".join(c.data for c in chunks if c.stream == "stdout")
        err = b"".join(c.data for c in chunks if c.stream == "stderr")
        assert (out, err, stream.result.exit_code) == (b"one\n", b"two\n", 5)


def test_files_write_read_and_list(daemon, tmp_path):
    where = tmp_path / "guest" / "deep"
    with banger.VM(image=IMAGE, settings=daemon.settings) as vm:
        vm.files.write(f"{where}/notes.txt", "hi")
        vm.files.write(f"{where}/blob", bytes(range(256)) * 1000, mode=0o600)
        assert vm.files.read(f"{where}/notes.txt") == "hi"
        assert vm.files.read_bytes(f"{where}/blob") == bytes(range(256)) * 1000
        (where / "sub").mkdir()
        (where / ".hidden").write_text("")
        listed = [(e.name, e.type) for e in vm.files.list(str(where))]
        assert listed == [(".hidden", "file"), ("blob", "file"), ("notes.txt", "file"),
                          ("sub", "dir")]  # fmt: skip
        with pytest.raises(banger.NotFound) as missing:
            vm.files.read(f"{where}/absent")
        assert "absent" in missing.value.message
        with pytest.raises(banger.NotFound, match="no such directory"):
            vm.files.list(f"{where}/absent")


def test_a_workspace_prepares_runs_there_and_exports_a_patch(daemon, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    git("config", "user.email", "t@example.invalid", cwd=repo)
    git("config", "user.name", "t", cwd=repo)
    (repo / "a.txt").write_text("one\n")
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "first", cwd=repo)
    guest = tmp_path / "guest-repo"
    with banger.VM(image=IMAGE, settings=daemon.settings) as vm:
        ws = vm.workspace.prepare(repo, guest_path=str(guest))
        assert ws.guest_path == str(guest)
        assert vm.commands.run("pwd").stdout == f"{guest}\n"  # commands run in the workspace
        vm.commands.run("echo two >> a.txt && echo new > b.txt")
        exported = vm.workspace.export()
        assert sorted((c.status, c.path) for c in exported.changes) == [("A", "b.txt"),
                                                                        ("M", "a.txt")]  # fmt: skip
        assert b"+two" in exported.patch
    applied = subprocess.run(["git", "-C", str(repo), "apply", "-"], input=exported.patch)
    assert applied.returncode == 0
    assert (repo / "b.txt").read_text() == "new\n"


def test_connect_attaches_and_leaving_keeps_the_vm(daemon):
    made = banger.VM.create(image=IMAGE, name="kept", settings=daemon.settings)
    with banger.VM.connect("kept", settings=daemon.settings) as vm:
        assert vm.commands.run("true").exit_code == 0
        assert vm.info.state == "running"
    assert vms(daemon) == ["kept"]
    made.kill()
    assert vms(daemon) == []


def test_errors_carry_the_apis_code_message_and_hint(daemon):
    with pytest.raises(banger.NotFound) as caught:
        banger.VM.connect("nope", settings=daemon.settings)
    assert caught.value.code == "not_found"
    assert "nope" in caught.value.message
    assert "banger vm list" in (caught.value.hint or "")
    with pytest.raises(banger.UserError) as bad:
        banger.VM(image=IMAGE, vcpus=0, settings=daemon.settings)
    assert bad.value.field == "vcpus"
    assert vms(daemon) == []  # bad input changed nothing


def test_a_vm_that_cannot_be_made_leaves_nothing(daemon):
    with pytest.raises(banger.NotFound, match="no-such-image"):
        banger.VM(image="no-such-image", settings=daemon.settings)
    assert vms(daemon) == []


def test_a_workspace_that_cannot_be_copied_deletes_the_new_vm(daemon, tmp_path):
    with pytest.raises(banger.BangerError):
        banger.VM(image=IMAGE, workspace=tmp_path / "not-a-repo", settings=daemon.settings)
    assert vms(daemon) == []


def test_async_vm_runs_streams_and_deletes(daemon):
    async def main() -> tuple[str, bytes, list[str]]:
        async with banger.AsyncVM(image=IMAGE, settings=daemon.settings) as vm:
            r = await vm.commands.run("echo hi")
            chunks = [c.data async for c in vm.commands.stream(["printf", "a"])]
            await vm.files.write("/tmp/banger-sdk-async", "x")
            inside = vms(daemon)
            return r.stdout, b"".join(chunks), inside

    out, streamed, inside = asyncio.run(main())
    assert (out, streamed, len(inside)) == ("hi\n", b"a", 1)
    assert vms(daemon) == []


def test_import_banger_and_the_cli_load_no_sdk_and_no_mcp():
    import sys

    probe = (
        "import sys, banger, banger.cli.main;"
        " print(sorted(m for m in ('banger.sdk', 'mcp', 'websockets', 'pydantic')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
