"""The helper's socket protocol, against a real server on a temporary socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger import errors
from banger.errors import HelperError, UserError
from banger.helper import server as wire
from banger.helper.errors import Conflict, HostError
from banger.helper.main import serve
from banger.helper.validate import Policy
from banger.helper_client.client import HelperClient

IS_ROOT = os.geteuid() == 0
# As root, serve a made-up owner so the owner and a stranger can both be played.
OWNER = 4242 if IS_ROOT else os.getuid()
NOBODY = 65534
needs_root = pytest.mark.skipif(not IS_ROOT, reason="switching uids needs root")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 107-byte limit of a unix socket path.
    path = Path(tempfile.mkdtemp(prefix="bgh", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wait_for(path: Path, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


@pytest.fixture
def helper(sockdir: Path) -> Iterator[Path]:
    path = sockdir / "run" / "helper.sock"
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(path, Policy.create(OWNER, [sockdir]), stop))
    thread.start()
    try:
        wait_for(path)
        # An answer means bind() finished, chown and chmod included.
        HelperClient(path).ping()
        yield path
    finally:
        stop.set()
        thread.join(5)
    assert not path.exists(), "the helper left its socket behind"


def exchange(path: Path, data: bytes) -> list[dict[str, object]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return [json.loads(line) for line in received.splitlines()]


def test_ping_answers_version_and_uid(helper: Path) -> None:
    result = HelperClient(helper).ping()
    assert result["uid"] == os.getuid()
    assert result["owner_uid"] == OWNER
    assert "tap_create" in result["verbs"]


def test_replies_echo_the_request_id(helper: Path) -> None:
    replies = exchange(helper, b'{"id": "abc", "verb": "ping"}\n{"id": 7, "verb": "ping"}\n')
    assert [r["id"] for r in replies] == ["abc", 7]
    assert all(r["ok"] for r in replies)


def test_unknown_verbs_come_back_as_user_errors(helper: Path) -> None:
    with pytest.raises(UserError, match="unknown verb 'sh'") as info:
        HelperClient(helper).call("sh", c="id")
    assert "bridge_ensure" in (info.value.hint or "")


def test_bad_lines_get_an_error_and_the_connection_goes_on(helper: Path) -> None:
    replies = exchange(
        helper,
        b"this is not json\n"
        b"[1, 2]\n"
        b"\n"
        b'{"id": 2, "verb": "ping", "sudo": true}\n'
        b'{"id": true, "verb": "ping"}\n'
        b'{"id": 3, "verb": "ping", "args": []}\n'
        b'{"id": 4, "verb": "ping"}\n',
    )
    assert [r["ok"] for r in replies] == [False, False, False, False, False, True]
    codes = {r["error"]["code"] for r in replies if not r["ok"]}  # type: ignore[index]
    assert codes == {"invalid"}
    messages = [r["error"]["message"] for r in replies[:5]]  # type: ignore[index]
    assert messages[0].startswith("request is not JSON")
    assert messages[1] == "request must be a JSON object"
    assert "unknown field(s) sudo" in messages[2]
    assert "id must be an integer or a string" in messages[3]
    assert "args must be an object" in messages[4]
    assert replies[5]["id"] == 4


def test_an_overlong_line_is_refused_and_closed(helper: Path) -> None:
    replies = exchange(helper, b"x" * (wire.MAX_LINE + 10) + b'\n{"verb": "ping"}\n')
    assert len(replies) == 1
    assert "longer than" in replies[0]["error"]["message"]  # type: ignore[index]


def test_concurrent_callers_are_all_answered(helper: Path) -> None:
    client = HelperClient(helper)
    results: list[dict[str, object]] = []

    def worker() -> None:
        for _ in range(10):
            results.append(client.ping())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 80


@needs_root
def test_socket_belongs_to_the_owner_with_mode_0600(helper: Path) -> None:
    st = helper.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (OWNER, 0o600)


def as_user(uid: int, path: Path) -> dict[str, object]:
    """Connect to ``path`` as ``uid`` in a forked child; its reply, or the error it met."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                out = exchange(path, b'{"id": 1, "verb": "ping"}\n')[0]
            except OSError as exc:
                out = {"os_error": type(exc).__name__, "detail": str(exc)}
            os.write(write_end, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    os.waitpid(pid, 0)
    return json.loads(data)  # type: ignore[no-any-return]


@needs_root
def test_the_owner_uid_is_served(helper: Path) -> None:
    helper.parent.parent.chmod(0o755)
    reply = as_user(OWNER, helper)
    assert reply.get("ok") is True, reply


@needs_root
def test_other_uids_cannot_even_open_the_socket(helper: Path) -> None:
    helper.parent.parent.chmod(0o755)
    assert as_user(NOBODY, helper)["os_error"] == "PermissionError"


@needs_root
def test_other_uids_are_refused_by_peer_credentials(helper: Path) -> None:
    # Loosen the file mode so the uid check itself is what stops the caller.
    helper.parent.parent.chmod(0o755)
    helper.chmod(0o666)
    reply = as_user(NOBODY, helper)
    assert reply.get("ok") is False, reply
    error = reply["error"]
    assert isinstance(error, dict)
    assert error["code"] == "helper"
    assert error["message"] == f"uid {NOBODY} may not use this helper; it serves uid {OWNER}"


def test_a_missing_helper_says_how_to_start_one(sockdir: Path) -> None:
    with pytest.raises(HelperError, match="banger-helper is not running") as info:
        HelperClient(sockdir / "none.sock").ping()
    assert "system install" not in (info.value.hint or "")  # no such command yet
    assert f"banger-helper --socket {sockdir / 'none.sock'}" in (info.value.hint or "")


def test_a_stale_socket_is_replaced(sockdir: Path) -> None:
    path = sockdir / "helper.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    server = wire.bind(path, Policy.create(OWNER, [sockdir]))
    try:
        assert path.stat().st_ino == server.inode
    finally:
        server.server_close()
        wire.unlink_if_ours(server)
    assert not path.exists()


def test_a_live_helper_is_not_displaced(helper: Path) -> None:
    with pytest.raises(Conflict, match="another helper already answers"):
        wire.bind(helper, Policy.create(OWNER, []))
    assert HelperClient(helper).ping()


def test_a_file_that_is_not_a_socket_is_left_alone(sockdir: Path) -> None:
    path = sockdir / "helper.sock"
    path.write_text("precious")
    with pytest.raises(HostError, match="exists and is not a socket"):
        wire.bind(path, Policy.create(OWNER, []))
    assert path.read_text() == "precious"


HELPER_BIN = Path(sys.executable).parent / "banger-helper"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_process_logs_calls_and_cleans_up_on_signals(sockdir: Path, sig: int) -> None:
    path = sockdir / "sub" / "helper.sock"
    argv = [str(HELPER_BIN), "--socket", str(path), "--owner-uid", str(OWNER)]
    child = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(path)
        HelperClient(path).ping()
        with pytest.raises(UserError):
            HelperClient(path).call("tap_delete", name="eth0")
    finally:
        child.send_signal(sig)
        _, stderr = child.communicate(timeout=10)
    assert child.returncode == 0
    assert not path.exists()
    assert oct(path.parent.stat().st_mode & 0o777) == "0o755"
    assert f'uid={os.getuid()} pid={os.getpid()} "ping" {{}} -> ok' in stderr
    assert '"tap_delete" {"name": "eth0"} -> refused invalid: "argument \'name\'' in stderr


def test_the_process_refuses_to_start_over_a_regular_file(sockdir: Path) -> None:
    path = sockdir / "helper.sock"
    path.write_text("x")
    argv = [str(HELPER_BIN), "--socket", str(path), "--owner-uid", str(OWNER)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1
    assert f"banger-helper: {path} exists and is not a socket" in result.stderr


def test_the_helper_imports_only_the_standard_library_and_itself() -> None:
    code = (
        "import sys, banger.helper.main;"
        "print(sorted(m for m in sys.modules if m.startswith('banger')"
        " and m != 'banger' and not m.startswith('banger.helper')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_daemon_side_client_stays_light() -> None:
    code = (
        "import sys, banger.helper_client.client, banger.helper_client.launch;"
        "heavy = ('click', 'httpx', 'pydantic', 'fastapi', 'rich', 'uvicorn', 'asyncssh');"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_client_asks_for_exactly_the_verbs_the_helper_has() -> None:
    from banger.helper.verbs import VERBS
    from banger.helper_client.client import REQUIRED_VERBS

    assert set(VERBS) == REQUIRED_VERBS


def test_helper_error_codes_are_banger_error_codes() -> None:
    from banger.helper import errors as helper_errors

    for cls in (
        helper_errors.UserError,
        helper_errors.NotFound,
        helper_errors.Conflict,
        helper_errors.HostError,
        helper_errors.Refused,
    ):
        rebuilt = errors.from_dict(cls("x").to_dict())
        assert rebuilt.code == cls.code
