"""banger-helper: banger's narrow root service.

It listens on a unix socket and does a short, fixed list of typed things for
one user (bridges and taps now; NAT rules and the VMM jailer later), each
argument validated against banger's name prefix and directories. It never
runs a shell. Standard library only, so the root process stays small.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from banger import __version__
from banger.helper import server as wire
from banger.helper.errors import Failure
from banger.helper.ledger import Ledger
from banger.helper.validate import Policy

log = logging.getLogger("banger.helper")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banger-helper",
        description=(
            "banger's root helper: banger's bridge, taps, NAT and DNS redirect rules, "
            "for one user, over a unix socket. Started as root by hand or by a service "
            "manager; where banger already runs as root, bangerd starts it itself."
        ),
        epilog=(
            "example: sudo banger-helper --socket /run/banger/helper/helper.sock "
            "--owner-uid 1000 --allowed-dir /var/lib/banger --state-dir /run/banger/helper/state"
        ),
    )
    parser.add_argument("--socket", required=True, type=Path, help="unix socket to listen on")
    parser.add_argument(
        "--owner-uid", required=True, type=int, help="the only non-root uid allowed to call"
    )
    parser.add_argument(
        "--allowed-dir",
        action="append",
        default=[],
        type=Path,
        help="banger home of the owner; paths in requests must lie inside one (repeatable)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="a directory only root can write, where the helper records what it made and"
        " for whom (it acts on nothing else); without it the record lasts as long as the"
        " process",
    )
    parser.add_argument(
        "--firecracker", type=Path, help="absolute path of the Firecracker binary it may jail"
    )
    parser.add_argument("--jailer", type=Path, help="absolute path of Firecracker's jailer")
    parser.add_argument("--debug", action="store_true", help="log every command run")
    parser.add_argument("--version", action="version", version=f"banger-helper {__version__}")
    return parser


def serve(sock: Path, policy: Policy, stop: threading.Event) -> None:
    """Serve until ``stop`` is set, then close and remove the socket."""
    server = wire.bind(sock, policy)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="helper-accept",
        daemon=True,
    )
    thread.start()
    log.info(
        "banger-helper %s (uid %d) serving uid %d on %s; allowed dirs: %s",
        __version__,
        os.geteuid(),
        policy.owner_uid,
        sock,
        ", ".join(str(d) for d in policy.allowed_dirs) or "none",
    )
    try:
        # A timeout keeps the main thread waking up, so signal handlers run promptly.
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        wire.unlink_if_ours(server)
        log.info("banger-helper stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.owner_uid < 0:
        print("banger-helper: --owner-uid must be 0 or more", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        log.warning("not running as root: verbs that change the host will fail")
    for given in (args.firecracker, args.jailer):
        if given is not None and not given.is_absolute():
            print(f"banger-helper: {given} must be an absolute path", file=sys.stderr)
            return 2
    try:
        ledger = Ledger(args.state_dir)
    except Failure as err:
        print(f"banger-helper: {err.message}\n  hint: {err.hint}", file=sys.stderr)
        return 1
    if args.state_dir is None:
        log.warning("no --state-dir: after a restart this helper will not touch links it made")
    policy = Policy.create(
        args.owner_uid,
        args.allowed_dir,
        ledger,
        firecracker=args.firecracker,
        jailer=args.jailer,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("got %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        serve(args.socket, policy, stop)
    except Failure as err:
        hint = f"\n  hint: {err.hint}" if err.hint else ""
        print(f"banger-helper: {err.message}{hint}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"banger-helper: cannot listen on {args.socket}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
