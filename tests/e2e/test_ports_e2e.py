"""Published ports and shared directories with real guests (issue 15).

A guest HTTP server answers on the host's 127.0.0.1 through `-p`, stops
answering after `vm port remove`, and comes back after bangerd is killed
and restarted; one bound to the guest's loopback only is reached through the
guest agent, automatically or through `-p`; a `--mount` directory is seen
both ways, `:ro` refuses writes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import BIN, Banger, ensure_image, wait_gone

pytestmark = pytest.mark.e2e


# The default image has perl but no python or busybox: a one-connection-at-a-time
# HTTP server in core perl, started in the background with its output in /tmp.
def start_httpd(port: int = 8000, bind: str = "0.0.0.0") -> str:
    """A shell line that starts the server on ``bind:port`` and returns once it listens."""
    script = (
        f'use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalAddr => "{bind}",'
        f" LocalPort => {port}, Listen => 5,"
        " ReuseAddr => 1) or die; while (my $c = $s->accept) { my $r = <$c>;"
        ' print $c "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n'
        'hello from the guest\\n";'
        " close $c }"
    )
    listening = f":{port:04X} 00000000:0000 0A"
    return (
        f": > /tmp/in; nohup perl -e '{script}' > /tmp/httpd-{port}.log 2>&1 < /tmp/in &"
        f" echo $! > /tmp/httpd-{port}.pid;"
        f" while ! grep -q '{listening}' /proc/net/tcp; do sleep 0.05; done"
    )


START_HTTPD = start_httpd()
NINEP_IMAGE = "debian-9p"
NINEP_KERNEL = "debian-bookworm-generic"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ssh(banger: Banger, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    return banger.run("vm", "ssh", name, "--", *command, timeout=60)


def get(port: int, timeout: float = 5) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as resp:
        return str(resp.read().decode())


def answers(port: int, within: float = 30) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            return get(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_published_port_reaches_the_guest_survives_a_daemon_kill_and_goes(banger: Banger):
    port = free_port()
    vm = banger.create("e2e-web", "--memory", "512", "-p", f"{port}:8000")
    assert [(f["host_ip"], f["host_port"], f["guest_port"]) for f in vm["forwards"]] == [
        ("127.0.0.1", port, 8000)
    ]
    start = ssh(banger, "e2e-web", "sh", "-c", START_HTTPD)
    assert start.returncode == 0, start.stderr
    assert answers(port) == "hello from the guest\n"
    shown = banger.run("vm", "show", "e2e-web", check=True).stdout
    assert f"127.0.0.1:{port} -> 8000/tcp" in shown
    listed = banger.json("vm", "port", "list", "e2e-web")
    assert [(f["host_port"], f["source"], f["error"]) for f in listed] == [  # type: ignore[index, union-attr]
        (port, "published", "")
    ]
    ports = banger.json("vm", "ports", "e2e-web")
    assert {p["port"]: p["forwarded"] for p in ports}[8000] == f"127.0.0.1:{port}"  # type: ignore[index, union-attr]

    # A second VM cannot have the same host port, and is not created.
    taken = banger.run("vm", "create", "--name", "e2e-web2", "-p", f"{port}:80")
    assert taken.returncode != 0
    assert "already forwarded to VM 'e2e-web'" in taken.stderr
    assert "e2e-web2" not in [v["name"] for v in banger.json("vm", "list")]  # type: ignore[index, union-attr]

    # kill -9 bangerd: the next command starts another, which listens again.
    status = banger.json("daemon", "status")
    os.kill(int(status["pid"]), signal.SIGKILL)  # type: ignore[index]
    assert wait_gone(int(status["pid"]))  # type: ignore[index]
    assert refused(port)  # the relay lives in bangerd
    banger.run("vm", "list", check=True)
    assert answers(port, within=10) == "hello from the guest\n"

    removed = banger.run("vm", "port", "remove", "e2e-web", str(port))
    assert removed.returncode == 0, removed.stderr
    assert refused(port)
    assert banger.json("vm", "port", "list", "e2e-web") == []

    added = banger.run("vm", "port", "add", "e2e-web", f"{port}:8000")
    assert added.returncode == 0, added.stderr
    assert answers(port, within=5) == "hello from the guest\n"
    banger.run("vm", "delete", "e2e-web", check=True)
    assert refused(port)


def test_a_taken_host_port_names_its_holder_and_creates_nothing(banger: Banger):
    holder = subprocess.Popen(
        [
            str(BIN / "python"),
            "-c",
            "import socket,time; s=socket.create_server(('127.0.0.1',0)); "
            "print(s.getsockname()[1], flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        port = int(holder.stdout.readline())
        result = banger.run("vm", "create", "--name", "e2e-taken", "-p", f"{port}:80")
        assert result.returncode != 0
        assert f"host port 127.0.0.1:{port} is taken by pid {holder.pid} (python" in result.stderr
        assert "hint:" in result.stderr
        assert banger.json("vm", "list") == []
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def ninep_image(banger_env: Banger) -> str:
    """An image whose kernel has virtio-9p (Debian's cloud kernel has none)."""
    if banger_env.run("kernel", "show", NINEP_KERNEL).returncode != 0:
        banger_env.run("kernel", "pull", NINEP_KERNEL, check=True, timeout=1200)
    ensure_image(banger_env, NINEP_IMAGE, "debian-bookworm", "--kernel-ref", NINEP_KERNEL)
    return NINEP_IMAGE


def test_a_mount_is_shared_both_ways_and_ro_refuses_writes(
    banger: Banger, ninep_image: str, tmp_path: Path
):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (rw / "from-host.txt").write_text("written on the host\n")
    # Someone other than root owns it on the host: the guest sees the same numbers.
    os.chown(rw / "from-host.txt", 1234, 2345)
    (ro / "readme.txt").write_text("read-only here\n")
    vm = banger.create(
        "e2e-mount",
        "--image",
        ninep_image,
        "--memory",
        "512",
        "--mount",
        f"{rw}:/mnt/rw",
        "--mount",
        f"{ro}:/root/ro:ro",
    )
    assert [(m["guest_dir"], m["read_only"]) for m in vm["mounts"]] == [
        ("/mnt/rw", False),
        ("/root/ro", True),
    ]
    assert f"{ro} -> /root/ro (read-only)" in banger.run("vm", "show", "e2e-mount").stdout
    read = ssh(banger, "e2e-mount", "cat", "/mnt/rw/from-host.txt", "/root/ro/readme.txt")
    assert read.stdout == "written on the host\nread-only here\n", read.stderr
    wrote = ssh(banger, "e2e-mount", "sh", "-c", "echo from the guest > /mnt/rw/from-guest.txt")
    assert wrote.returncode == 0, wrote.stderr
    assert (rw / "from-guest.txt").read_text() == "from the guest\n"
    owner = ssh(banger, "e2e-mount", "stat", "-c", "%u:%g", "/mnt/rw/from-host.txt")
    assert owner.stdout.strip() == "1234:2345", owner.stderr
    refused_write = ssh(banger, "e2e-mount", "sh", "-c", "echo x > /root/ro/new.txt")
    assert refused_write.returncode != 0
    assert "Read-only file system" in refused_write.stderr
    assert not (ro / "new.txt").exists()


def test_mount_under_a_kernel_without_9p_is_refused_in_one_line(banger: Banger, tmp_path: Path):
    result = banger.run("vm", "create", "--name", "e2e-no9p", "--mount", f"{tmp_path}:/src")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: --mount needs virtio-9p in the guest"), result.stderr
    assert lines[1].startswith("hint: ") and "banger kernel pull" in lines[1]
    assert banger.json("vm", "list") == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["-p", "80"], "-p '80' is not HOST_PORT:GUEST_PORT"),
        (["-p", "8080:70000"], "guest port '70000' is not a port number"),
        (["--mount", "/nonexistent-e2e:/src"], "/nonexistent-e2e does not exist"),
        (["--mount", "/etc/hostname:/src"], "is not a directory"),
        (["--mount", "/tmp:relative"], "must be an absolute path"),
        (["--mount", "/:/host"], "would share the host's whole filesystem"),
    ],
)
def test_bad_ports_and_mounts_fail_in_one_line_and_create_nothing(
    banger: Banger, flags: list[str], message: str
):
    result = banger.run("vm", "create", "--name", "e2e-bad", *flags)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and message in lines[0] and lines[1].startswith("hint: ")
    assert json.loads(banger.run("vm", "list", "--json").stdout) == []


@pytest.fixture(scope="module")
def agent_image(banger_env: Banger, image: str) -> str:
    """The default image: its agent answers the `ports` op."""
    assert banger_env.json("image", "show", image)["channel"]  # type: ignore[index]
    return image


def within(seconds: float, check: Callable[[], bool]) -> float | None:
    """Seconds until ``check`` holds, or None if it did not within ``seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def test_auto_forwarding_follows_guest_listeners_within_2s(banger: Banger, agent_image: str):
    guest_port = free_port()  # free on the host, so the same port can be forwarded there
    banger.create("e2e-auto", "--image", agent_image, "--memory", "512", "--forward-ports", "auto")
    started = ssh(banger, "e2e-auto", "sh", "-c", start_httpd(guest_port))
    assert started.returncode == 0, started.stderr

    def answering() -> bool:
        try:
            return get(guest_port, timeout=1) == "hello from the guest\n"
        except OSError:
            return False

    took = within(2.0, answering)
    assert took is not None, "no forward on the host within 2 s of the guest listening"
    listed = banger.json("vm", "port", "list", "e2e-auto")
    assert [(f["host_port"], f["guest_port"], f["source"]) for f in listed] == [  # type: ignore[index, union-attr]
        (guest_port, guest_port, "auto")
    ]
    ports = banger.json("vm", "ports", "e2e-auto")
    assert {p["port"]: p["forwarded"] for p in ports}[guest_port] == f"127.0.0.1:{guest_port}"  # type: ignore[index, union-attr]

    # A privileged guest port gets a free high host port, said in `vm port list`.
    assert ssh(banger, "e2e-auto", "sh", "-c", start_httpd(80)).returncode == 0
    assert within(2.0, lambda: len(banger.json("vm", "port", "list", "e2e-auto")) == 2)  # type: ignore[arg-type]
    low = next(f for f in banger.json("vm", "port", "list", "e2e-auto") if f["guest_port"] == 80)  # type: ignore[union-attr, index]
    assert low["host_port"] >= 1024  # type: ignore[index]
    assert answers(int(low["host_port"]), within=2) == "hello from the guest\n"  # type: ignore[index]
    assert "privileged guest port" in banger.run("vm", "show", "e2e-auto").stdout

    stopped = ssh(banger, "e2e-auto", "sh", "-c", f"kill $(cat /tmp/httpd-{guest_port}.pid)")
    assert stopped.returncode == 0, stopped.stderr
    gone = within(2.0, lambda: refused(guest_port))
    assert gone is not None, "the host forward outlived the guest listener by more than 2 s"
    print(f"auto forward appeared after {took:.2f}s, withdrawn after {gone:.2f}s")


def test_a_server_on_the_guests_loopback_is_forwarded_through_the_agent(
    banger: Banger, agent_image: str
):
    auto_port, published = free_port(), free_port()
    banger.create("e2e-lo", "--image", agent_image, "--memory", "512",
                  "--forward-ports", "auto", "-p", f"{published}:9001")  # fmt: skip
    for port in (auto_port, 9001):
        started = ssh(banger, "e2e-lo", "sh", "-c", start_httpd(port, bind="127.0.0.1"))
        assert started.returncode == 0, started.stderr
    ports = banger.json("vm", "ports", "e2e-lo")
    assert {p["port"]: p["address"] for p in ports}[auto_port] == "127.0.0.1"  # type: ignore[index, union-attr]
    ip = banger.json("vm", "show", "e2e-lo")["ip"]  # type: ignore[index]
    with pytest.raises(ConnectionRefusedError):  # not on the bridge: only inside the guest
        socket.create_connection((str(ip), auto_port), timeout=5).close()

    def answering(port: int) -> Callable[[], bool]:
        def check() -> bool:
            try:
                return get(port, timeout=2) == "hello from the guest\n"
            except OSError:
                return False

        return check

    took = within(5.0, answering(auto_port))
    assert took is not None, "no forward of the loopback listener within 5 s"
    listed = banger.json("vm", "port", "list", "e2e-lo")
    auto = next(f for f in listed if f["source"] == "auto")  # type: ignore[union-attr, index]
    assert (auto["host_port"], auto["guest_port"], auto["via"]) == (auto_port, auto_port, "agent")  # type: ignore[index]
    table = banger.run("vm", "ports", "e2e-lo", check=True).stdout
    assert f"127.0.0.1:{auto_port} via agent" in table
    curl = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{auto_port}/"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert curl.stdout == "hello from the guest\n", curl.stderr

    # -p to a loopback-only server: refused on the VM's address, tried on its loopback.
    assert answers(published, within=10) == "hello from the guest\n"
    pub = next(f for f in banger.json("vm", "port", "list", "e2e-lo") if f["source"] == "published")  # type: ignore[union-attr, index]
    assert pub["via"] == "agent"  # type: ignore[index]
    assert "via the guest agent" in banger.run("vm", "show", "e2e-lo").stdout

    stopped = ssh(banger, "e2e-lo", "sh", "-c", f"kill $(cat /tmp/httpd-{auto_port}.pid)")
    assert stopped.returncode == 0, stopped.stderr
    gone = within(3.0, lambda: refused(auto_port))
    assert gone is not None, "the loopback forward outlived its listener by more than 3 s"
    print(f"loopback forward appeared after {took:.2f}s, withdrawn after {gone:.2f}s")
