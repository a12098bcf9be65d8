"""Test doubles at banger's seams: the helper's network verbs and the VMM.

They implement the Protocols the services receive (``NetHelper``, ``Vmm``)
and record what was asked of them, so tests compare calls, not internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from banger.errors import VmmError
from banger.vmm.base import AgentEndpoint, VmmConfig


class RecordingHelper:
    """banger-helper's network verbs, recorded in order as (verb, args...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.taps: set[str] = set()
        self.nat: set[str] = set()
        self.links: list[dict[str, Any]] = []

    def verbs(self) -> list[str]:
        return [call[0] for call in self.calls]

    def ensure_bridge(self, name: str, address: str) -> dict[str, Any]:
        self.calls.append(("bridge_ensure", name, address))
        return {"changed": []}

    def delete_bridge(self, name: str) -> bool:
        self.calls.append(("bridge_delete", name))
        return True

    def create_tap(self, name: str, bridge: str, owner_uid: int) -> bool:
        self.calls.append(("tap_create", name, bridge))
        self.taps.add(name)
        return True

    def delete_tap(self, name: str) -> bool:
        self.calls.append(("tap_delete", name))
        gone = name in self.taps
        self.taps.discard(name)
        return gone

    def open_tap(self, name: str) -> int:
        self.calls.append(("tap_open", name))
        return os.open("/dev/null", os.O_RDWR)

    def list_links(self) -> list[dict[str, Any]]:
        self.calls.append(("link_list",))
        return list(self.links)

    def nat_enable(self, bridge: str, subnet: str, source: str) -> dict[str, Any]:
        self.calls.append(("nat_enable", source))
        self.nat.add(source)
        return {}

    def nat_disable(self, source: str) -> dict[str, Any]:
        self.calls.append(("nat_disable", source))
        self.nat.discard(source)
        return {}

    def nat_list(self) -> list[dict[str, str]]:
        self.calls.append(("nat_list",))
        return []

    def net_isolate(self, bridge: str) -> dict[str, Any]:
        self.calls.append(("net_isolate", bridge))
        return {}

    def dns_redirect(self, bridge: str, address: str, port: int) -> dict[str, Any]:
        self.calls.append(("dns_redirect", bridge))
        return {}

    def net_teardown(self, bridge: str) -> bool:
        self.calls.append(("net_teardown", bridge))
        return True

    def resolver_link(self, bridge: str, address: str) -> dict[str, Any]:
        self.calls.append(("resolver_link", bridge))
        return {"linked": False, "reason": "no systemd-resolved in tests"}

    def resolver_unlink(self, bridge: str) -> dict[str, Any]:
        self.calls.append(("resolver_unlink", bridge))
        return {}


class FakeVmm:
    """A VMM that records launches; ``fail`` makes launch raise like QEMU failing."""

    name = "fake"
    takes_tap_fd = True

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.launched: list[VmmConfig] = []
        self.killed: list[Path] = []

    def check_host(self) -> None:
        return None

    def argv(self, config: VmmConfig) -> list[str]:
        return []

    def launch(self, config: VmmConfig) -> int:
        if self.fail:
            raise VmmError(f"QEMU failed to start VM {config.name!r}: boom")
        self.launched.append(config)
        return 4242

    def pid(self, run_dir: Path) -> int | None:
        return None

    def signal(self, run_dir: Path, sig: signal.Signals) -> bool:
        return False

    def running_under(self, root: Path) -> dict[Path, int]:
        return {}

    def kill(self, run_dir: Path, *, timeout: float = 10.0) -> None:
        self.killed.append(run_dir)

    def shutdown(self, run_dir: Path) -> bool:
        return False

    def metrics(self, run_dir: Path) -> dict[str, Any] | None:
        return None

    def agent_endpoint(self, run_dir: Path) -> AgentEndpoint:
        return AgentEndpoint(run_dir / "agent.sock")

    def version(self) -> str:
        return "fake 1.0"

    def pause(self, run_dir: Path) -> None:
        return None

    def resume(self, run_dir: Path) -> None:
        return None

    def paused(self, run_dir: Path) -> bool:
        return False

    def save(self, run_dir: Path, into: Path) -> None:
        return None

    def restore(self, config: VmmConfig, snapshot: Path) -> int:
        return self.launch(config)


@contextlib.contextmanager
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop serving from a thread, as the daemon's does for its DNS responder."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def wired_services(settings: Any, store: Any, tmp_path: Path) -> Iterator[Any]:
    """The daemon's services as ``wire`` builds them, with a fake VMM and helper, on a loop.

    The user's SSH key is made under ``tmp_path``, as ``wire`` needs one.
    """
    import subprocess

    from banger.daemon.services import wire
    from banger.vmm.accel import AccelChoice

    user_key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(user_key)], check=True)
    with running_loop() as loop:
        yield wire(
            settings,
            store=store,
            vmm=FakeVmm(),
            accel=AccelChoice("tcg", "t"),
            helper=RecordingHelper(),
            user_key=user_key,
            loop=loop,
        )
