"""``bangerd``: bind the socket, open the store, serve the API until told to stop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from banger import __version__, rundir
from banger.config import Settings, load_settings
from banger.errors import BangerError, DaemonUnavailable

log = logging.getLogger("banger.daemon")


def bind_socket(path: Path, trusted: Collection[int] = ()) -> socket.socket:
    """Bind the API socket, refusing to steal one another daemon still serves.

    Its directory must be private to this user (see ``banger.rundir``):
    nobody else may be able to swap the socket or plant the pidfile.
    """
    rundir.ensure_private_dir(path.parent, trusted)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: its daemon is gone
        else:
            raise DaemonUnavailable(
                f"another bangerd already serves {path}",
                hint="stop it with `banger daemon stop`, or use it",
            )
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    sock.listen(128)
    return sock


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        # bangerd handles SIGTERM itself: it lets running operations finish
        # before the server goes, where uvicorn's handlers would just exit.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


async def serve(settings: Settings) -> None:
    import uvicorn

    _Server = _server_class()

    from banger.daemon import services as wiring
    from banger.daemon.app import create_app

    sock = bind_socket(settings.socket, rundir.trusted_owners(settings))
    pidfile = settings.runtime_dir / "bangerd.pid"
    services = await asyncio.to_thread(wiring.build, settings, asyncio.get_running_loop())
    ops = services.ops
    shutdown = asyncio.Event()
    app = create_app(services, shutdown)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown.set)

    async def stop_when_asked() -> None:
        await shutdown.wait()
        log.info("stopping: waiting for running operations")
        await ops.wait_all()
        server.should_exit = True

    rundir.write_pidfile(pidfile, os.getpid())
    log.info(
        "bangerd %s serving %s (vmm %s, %s)",
        __version__,
        settings.socket,
        services.vmm.name,
        services.accel.kind,
    )
    stopper = asyncio.create_task(stop_when_asked())
    try:
        await server.serve(sockets=[sock])
    finally:
        stopper.cancel()
        with contextlib.suppress(FileNotFoundError):
            settings.socket.unlink()
        await services.close()
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bangerd",
        description="banger's daemon. The banger CLI starts it on demand; run it by hand to debug.",
    )
    parser.add_argument("--debug", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncssh logs every connection at INFO; readiness polling makes dozens.
    logging.getLogger("asyncssh").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        settings = load_settings()
        asyncio.run(serve(settings))
    except BangerError as exc:
        print(f"bangerd: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
