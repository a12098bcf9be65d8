"""A helper that died is started again by the daemon that owns it; a verb cut short says so."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger.errors import HelperError
from banger.helper.main import serve
from banger.helper.validate import Policy
from banger.helper_client.client import HelperClient
from tests.unit.test_helper_protocol import OWNER, wait_for


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bgr", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_gone_helper_is_revived_once_and_the_verb_then_runs(sockdir: Path) -> None:
    path = sockdir / "run" / "helper.sock"
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def revive() -> None:
        thread = threading.Thread(target=serve, args=(path, Policy.create(OWNER, [sockdir]), stop))
        thread.start()
        threads.append(thread)
        wait_for(path)

    try:
        client = HelperClient(path, revive=revive)
        assert client.ping()["verbs"]
        assert len(threads) == 1
        assert client.ping() and len(threads) == 1  # it answers now: no second start
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)


def test_without_a_reviver_a_gone_helper_is_an_error_with_a_hint(sockdir: Path) -> None:
    with pytest.raises(HelperError, match="banger-helper is not running") as info:
        HelperClient(sockdir / "none.sock").ping()
    assert "banger-helper --socket" in (info.value.hint or "")


def test_a_helper_that_hangs_up_mid_verb_is_not_retried(sockdir: Path) -> None:
    path = sockdir / "helper.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)  # the request arrived; the "helper" dies before answering
        conn.close()

    thread = threading.Thread(target=hang_up)
    thread.start()
    revived: list[bool] = []
    try:
        with pytest.raises(HelperError) as info:
            HelperClient(path, revive=lambda: revived.append(True)).call("tap_delete", name="x")
    finally:
        thread.join(5)
        listener.close()
    assert info.value.message == (
        "lost the connection to banger-helper in the middle of tap_delete:"
        " it closed the connection without answering"
    )
    assert "run the command again" in (info.value.hint or "")
    assert revived == []  # the verb may have run: it is not sent twice
