"""Calling banger-helper from bangerd: one short connection per call.

A fresh connection per call keeps the client safe to share between daemon
threads and survives a helper restart between calls. Errors the helper
reports come back as the same banger error classes (UserError, Conflict, ...)
rebuilt from their wire code; failing to reach the helper is a HelperError.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from banger import errors
from banger.errors import HelperError

_MAX_REPLY = 16 << 20

# The verbs this client calls: a running helper from an older banger that lacks
# one of them is replaced (as root) or reported (see launch.py).
REQUIRED_VERBS = frozenset(
    {
        "ping",
        "bridge_ensure",
        "bridge_delete",
        "tap_create",
        "tap_delete",
        "tap_open",
        "link_list",
        "nat_enable",
        "nat_disable",
        "nat_list",
        "net_isolate",
        "dns_redirect",
        "net_teardown",
        "resolver_link",
        "resolver_unlink",
        "vmm_launch",
        "vmm_kill",
    }
)


def start_hint(socket_path: Path) -> str:
    return f"start it as root: `sudo banger-helper --socket {socket_path} --owner-uid $(id -u)`"


def _lost(verb: str, why: OSError | str, socket_path: Path) -> HelperError:
    """The helper went away (or hung up) with ``verb`` sent and unanswered."""
    reason = why if isinstance(why, str) else (why.strerror or str(why)).lower()
    return HelperError(
        f"lost the connection to banger-helper in the middle of {verb}: {reason}",
        hint="the helper stopped (see helper.log, or `journalctl -u banger-helper`); run the"
        " command again: where banger runs as root its daemon starts a new helper; elsewhere "
        + start_hint(socket_path),
    )


class HelperClient:
    """``revive`` starts a new helper when none answers (where bangerd started it)."""

    def __init__(
        self,
        socket_path: Path,
        timeout: float = 30,
        *,
        revive: Callable[[], object] | None = None,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._revive = revive
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HelperClient({str(self.socket_path)!r})"

    def _connect(self) -> socket.socket:
        try:
            return self._connect_once()
        except HelperError as exc:
            # Only a helper that is gone (no request of ours reached it) is
            # revived, so the retried verb has not run before.
            if self._revive is None or not isinstance(
                exc.__cause__, FileNotFoundError | ConnectionRefusedError
            ):
                raise
            self._revive()
            return self._connect_once()

    def _connect_once(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            self._connect_retrying(sock)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise HelperError(
                f"banger-helper is not running (nothing answers on {self.socket_path})",
                hint=start_hint(self.socket_path),
            ) from exc
        except PermissionError as exc:
            sock.close()
            raise HelperError(
                f"no permission to use the helper socket {self.socket_path}",
                hint="the helper serves one user: run banger as that user, or start a"
                " helper for yours (see `banger doctor`)",
            ) from exc
        except OSError as exc:
            sock.close()
            raise HelperError(f"cannot reach banger-helper at {self.socket_path}: {exc}") from exc
        return sock

    def _connect_retrying(self, sock: socket.socket) -> None:
        # A full listen backlog fails a unix connect at once with EAGAIN
        # instead of waiting; give the helper a moment to accept.
        deadline = time.monotonic() + min(self.timeout, 5.0)
        while True:
            try:
                sock.connect(str(self.socket_path))
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _exchange(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._connect() as sock:
            try:
                sock.sendall(json.dumps(request).encode() + b"\n")
                with sock.makefile("rb") as reader:
                    line = reader.readline(_MAX_REPLY)
            except TimeoutError as exc:
                raise HelperError(
                    f"banger-helper did not answer {request['verb']} within {self.timeout:.0f}s",
                    hint="see the helper's log (helper.log, or `journalctl -u banger-helper`)",
                ) from exc
            except OSError as exc:
                raise _lost(request["verb"], exc, self.socket_path) from exc
        if not line:
            raise _lost(request["verb"], "it closed the connection without answering",
                        self.socket_path)  # fmt: skip
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HelperError(f"banger-helper sent something that is not JSON: {exc}") from exc
        if not isinstance(reply, dict):
            raise HelperError("banger-helper sent a reply that is not an object")
        return reply

    def _exchange_fds(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        """Like ``_exchange``, also receiving the descriptors the reply carries."""
        fds: list[int] = []
        data = b""
        try:
            with self._connect() as sock:
                sock.sendall(json.dumps(request).encode() + b"\n")
                while not data.endswith(b"\n") and len(data) < _MAX_REPLY:
                    chunk, got, _flags, _addr = socket.recv_fds(sock, 65536, 4)
                    fds += got
                    if not chunk:
                        break
                    data += chunk
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise _lost(request["verb"], exc, self.socket_path) from exc
        if not data:
            raise _lost(request["verb"], "it closed the connection without answering",
                        self.socket_path)  # fmt: skip
        try:
            reply = json.loads(data)
        except json.JSONDecodeError as exc:
            for fd in fds:
                os.close(fd)
            raise HelperError(f"banger-helper sent something that is not JSON: {exc}") from exc
        return (reply if isinstance(reply, dict) else {}), fds

    def call(self, verb: str, **args: Any) -> dict[str, Any]:
        """Run one verb; its result object, or the helper's error raised."""
        with self._ids_lock:
            rid = next(self._ids)
        reply = self._exchange({"id": rid, "verb": verb, "args": args})
        return self._result(verb, reply)

    def _result(self, verb: str, reply: dict[str, Any]) -> dict[str, Any]:
        if reply.get("ok") is True:
            result = reply.get("result")
            return result if isinstance(result, dict) else {}
        error = reply.get("error")
        if not isinstance(error, dict):
            raise HelperError(f"banger-helper failed {verb} without saying why")
        raise errors.from_dict(error)

    # Typed wrappers, one per verb.

    def ping(self) -> dict[str, Any]:
        return self.call("ping")

    def ensure_bridge(self, name: str, address: str) -> dict[str, Any]:
        """Bridge ``name`` exists, has ``address`` (like ``10.77.0.1/24``) and is up."""
        return self.call("bridge_ensure", name=name, address=address)

    def delete_bridge(self, name: str) -> bool:
        """Remove the bridge; False if it was already gone."""
        return bool(self.call("bridge_delete", name=name).get("deleted"))

    def create_tap(self, name: str, bridge: str, owner_uid: int) -> bool:
        """A tap ``owner_uid`` can open, on ``bridge``, up; False if it already existed."""
        result = self.call("tap_create", name=name, bridge=bridge, owner_uid=owner_uid)
        return bool(result.get("created"))

    def delete_tap(self, name: str) -> bool:
        """Remove the tap; False if it was already gone."""
        return bool(self.call("tap_delete", name=name).get("deleted"))

    def open_tap(self, name: str) -> int:
        """An open descriptor of tap ``name``, for a VMM to inherit; the caller closes it."""
        with self._ids_lock:
            rid = next(self._ids)
        reply, fds = self._exchange_fds({"id": rid, "verb": "tap_open", "args": {"name": name}})
        try:
            self._result("tap_open", reply)
        except Exception:
            for fd in fds:
                os.close(fd)
            raise
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise HelperError(f"banger-helper opened tap {name} but passed {len(fds)} descriptors")
        return fds[0]

    def list_links(self) -> list[dict[str, Any]]:
        """banger's links: ``{name, kind, master, up, addresses}`` each."""
        links = self.call("link_list").get("links")
        return [dict(link) for link in links] if isinstance(links, list) else []

    # Network policy: NAT, isolation, DNS redirect, host resolver.

    def nat_enable(self, bridge: str, subnet: str, source: str) -> dict[str, Any]:
        """Masquerade VM address ``source`` (inside ``subnet``, like ``10.77.0.0/24``)."""
        return self.call("nat_enable", bridge=bridge, subnet=subnet, source=source)

    def nat_disable(self, source: str) -> dict[str, Any]:
        """Stop NAT for ``source``: ``{removed, table_deleted, ip_forward_restored}``."""
        return self.call("nat_disable", source=source)

    def nat_list(self) -> list[dict[str, str]]:
        """VM addresses with NAT: ``{bridge, source}`` each."""
        entries = self.call("nat_list").get("nat")
        return [dict(e) for e in entries] if isinstance(entries, list) else []

    def net_isolate(self, bridge: str) -> dict[str, Any]:
        """Drop traffic leaving ``bridge`` for other interfaces unless its source has NAT."""
        return self.call("net_isolate", bridge=bridge)

    def dns_redirect(self, bridge: str, address: str, port: int) -> dict[str, Any]:
        """Send ``address``:53 (the bridge's own address) to ``address``:``port``."""
        return self.call("dns_redirect", bridge=bridge, address=address, port=port)

    def net_teardown(self, bridge: str) -> bool:
        """Delete the bridge's nftables table; False if there was none."""
        return bool(self.call("net_teardown", bridge=bridge).get("deleted"))

    def resolver_link(self, bridge: str, address: str) -> dict[str, Any]:
        """Route ``*.vm`` lookups of systemd-resolved to ``address``; ``linked`` says if done."""
        return self.call("resolver_link", bridge=bridge, address=address)

    def resolver_unlink(self, bridge: str) -> dict[str, Any]:
        return self.call("resolver_unlink", bridge=bridge)

    # The VMM under its jailer.

    def launch_vmm(
        self,
        *,
        vm_id: str,
        jail_base: str,
        uid: int,
        vcpus: int,
        memory_mib: int,
        files: list[str],
        writable: list[str],
        tap: str,
        log: str,
    ) -> dict[str, Any]:
        """Jailed Firecracker for ``vm_id``: ``{pid, root, api_socket, files: {host: jail}}``."""
        return self.call(
            "vmm_launch",
            id=vm_id,
            jail_base=jail_base,
            uid=uid,
            gid=uid,
            vcpus=vcpus,
            memory_mib=memory_mib,
            files=files,
            writable=writable,
            tap=tap,
            log=log,
        )

    def kill_vmm(self, vm_id: str, jail_base: str) -> bool:
        """Kill the jailed Firecracker of ``vm_id`` and remove its jail; False if none ran."""
        return bool(self.call("vmm_kill", id=vm_id, jail_base=jail_base).get("killed"))
