"""Every command that waits on an operation shows its stages on stderr, results on stdout."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any

import pytest
from click.testing import CliRunner

from banger.api.shapes import Event, EventType, Operation, OpState
from banger.cli import common
from banger.cli.main import cli

VM = {
    "name": "dev",
    "state": "running",
    "image": "debian-bookworm",
    "vcpus": 1,
    "memory_mib": 2048,
    "overlay_bytes": 4 << 30,
    "work_disk_bytes": 8 << 30,
    "ip": "10.77.0.2",
    "nat": False,
    "vmm": "qemu",
}
# Every field a Vm, an Image and a Kernel need, for the shapes the CLI reads.
VM_RECORD = {
    **VM,
    "id": "3f2a9c01d4",
    "tap": "bgt3f2a9c01d4",
    "mac": "02:00:0a:4d:00:02",
    "dir": "/d",
    "created_at": "t",
    "kernel": "k",
    "size_bytes": 1,
    "source": "catalog",
    "vmlinuz": "/k/vmlinuz",
    "initrd": "/k/initrd",
}
SPEC = (
    "dev: image debian-bookworm, 1 vCPU, 2048 MiB, overlay 4.0 GiB, work disk 8.0 GiB,"
    " IP 10.77.0.2, qemu, running"
)


class FakeDaemon:
    """The client seam: answers each request with an operation whose events it replays."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def _op(self, method: str, path: str) -> Operation:
        self.requests.append((method, path))
        return Operation(
            id=f"op{len(self.requests)}",
            kind=path,
            target="dev",
            state=OpState.RUNNING,
            created_at="t",
        )

    def start(self, method: str, path: str, body: Any = None) -> Operation:
        return self._op(method, path)

    def get_list(self, path: str, read: Any) -> list[Any]:
        assert path == "/vms"
        return [
            read({**VM_RECORD, "name": "dev", "state": "stopped"}),
            read({**VM_RECORD, "name": "web", "state": "running"}),
        ]

    def follow(self, op: Operation, on_event: Any) -> Operation:
        result: dict[str, Any] = {**VM_RECORD, "version": "6.1", "rootfs": "/r", "deleted": ["dev"]}
        for seq, (type_, stage, message) in enumerate(
            [
                (EventType.STAGE, "boot", "starting qemu (tcg)"),
                (EventType.INFO, "boot", "dev answered SSH after 3.1s"),
                (EventType.DONE, "", ""),
            ]
        ):
            on_event(Event(seq=seq, type=type_, stage=stage, message=message, time=time.time()))
        return Operation.from_json({**op.to_json(), "state": "succeeded", "result": result})


@pytest.fixture
def daemon(monkeypatch):
    fake = FakeDaemon()

    @contextmanager
    def client(*, autostart: bool = True):
        yield fake

    monkeypatch.setattr(common, "client", client)
    return fake


WAITING = [
    (["vm", "start", "dev"], "started dev (running)"),
    (["vm", "stop", "dev"], "stopped dev (running)"),
    (["vm", "restart", "dev"], "restarted dev (running)"),
    (["vm", "kill", "dev"], "killed dev (running)"),
    (["vm", "delete", "dev"], "deleted dev"),
    (["vm", "set", "dev", "--memory", "1024"], "updated dev"),
    (["vm", "prune", "--force"], "deleted 1 VM(s): dev"),
    (["vm", "create", "--name", "dev"], SPEC),
    (["image", "pull", "debian-bookworm"], "image dev ready (/r)"),
    (["image", "promote", "dev", "base"], "image dev ready (/r)"),
    (["kernel", "pull", "debian-bookworm-cloud"], "kernel debian-bookworm-cloud 6.1 ready"),
    (["kernel", "import", "mine", "/tmp"], "kernel mine 6.1 ready"),
]


@pytest.mark.parametrize(("args", "said"), WAITING, ids=[" ".join(a) for a, _ in WAITING])
def test_stages_on_stderr_result_on_stdout(daemon, args, said):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == said
    lines = result.stderr.splitlines()
    assert any(line.startswith("[") and "] boot: starting qemu (tcg)" in line for line in lines)
    assert any("dev answered SSH after 3.1s" in line for line in lines)


@pytest.mark.parametrize(("args", "said"), WAITING, ids=[" ".join(a) for a, _ in WAITING])
def test_quiet_keeps_only_the_result(daemon, args, said):
    result = CliRunner().invoke(cli, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.strip() == said


@pytest.mark.parametrize(("args", "said"), WAITING, ids=[" ".join(a) for a, _ in WAITING])
def test_json_is_the_only_thing_on_stdout(daemon, args, said):
    result = CliRunner().invoke(cli, [*args, "--json", "-q"])
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)


def test_several_vms_name_each_in_their_stage_lines(daemon):
    result = CliRunner().invoke(cli, ["vm", "start", "dev", "web"])
    assert result.exit_code == 0, result.output
    assert "] dev: boot: starting qemu (tcg)" in result.stderr
    assert "] web: boot: starting qemu (tcg)" in result.stderr
    assert [p for _, p in daemon.requests] == ["/vms/dev/start", "/vms/web/start"]
