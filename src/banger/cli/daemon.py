"""``banger daemon`` and ``banger doctor``."""

from __future__ import annotations

import os
import signal

import click

from banger.cli import common
from banger.cli.helptext import Group, epilog


@click.group(
    cls=Group,
    epilog=epilog(
        [
            "banger daemon status  # pid, socket, VMM and acceleration",
            "banger daemon stop  # after an upgrade; running VMs keep running",
            "banger daemon start",
        ],
        next_step="any `banger vm ...` command starts the daemon again when needed.",
    ),
)
def daemon() -> None:
    """Manage bangerd, the daemon that owns VMs, images and kernels.

    You rarely need this: every banger command starts the daemon when none
    answers. `banger daemon status` shows where it listens and which VMM it
    uses; `stop` it after an upgrade.
    """


@daemon.command(epilog=epilog(["banger daemon start", "banger daemon start --json"]))
@common.json_option
def start(as_json: bool) -> None:
    """Start bangerd unless it already runs."""
    from banger.api.client import Client, start_daemon

    settings = common.settings()
    already = Client(settings).ping()
    if not already:
        start_daemon(settings)
    if as_json:
        common.print_json({"running": True, "started": not already, "socket": str(settings.socket)})
    else:
        state = "already running" if already else "started"
        click.echo(f"bangerd {state} on {settings.socket}")


@daemon.command(epilog=epilog(["banger daemon stop"], next_step="`banger daemon status`."))
def stop() -> None:
    """Stop bangerd; running VMs keep running.

    The next banger command, or `banger daemon start`, starts it again; it
    then adopts the VMs that kept running. The bridge goes with the daemon
    when no VM needs it, and so does a banger-helper the daemon started.
    """
    from banger.api.shapes import Accepted, DaemonStatus
    from banger.errors import DaemonUnavailable

    try:
        with common.client(autostart=False) as conn:
            pid = conn.get("/status", DaemonStatus.from_json).pid
            conn.send("POST", "/shutdown", None, Accepted.from_json)
    except DaemonUnavailable:
        click.echo("bangerd is not running")
        return
    if common.process_gone(pid, 30):
        click.echo("bangerd stopped")
        return
    os.kill(pid, signal.SIGTERM)
    click.echo(f"bangerd (pid {pid}) did not stop in 30s; sent SIGTERM", err=True)


@daemon.command(
    epilog=epilog(
        ["banger daemon status", "banger daemon status --json  # exits 1 when it is not running"]
    )
)
@common.json_option
def status(as_json: bool) -> None:
    """Show whether bangerd runs, its pid, socket and version."""
    from banger.api.shapes import DaemonStatus
    from banger.errors import DaemonUnavailable

    settings = common.settings()
    try:
        with common.client(autostart=False) as conn:
            status_ = conn.get("/status", DaemonStatus.from_json)
    except DaemonUnavailable:
        if as_json:
            common.print_json({"running": False, "socket": str(settings.socket)})
        else:
            click.echo(f"bangerd is not running (socket {settings.socket})")
        raise SystemExit(1) from None
    if as_json:
        common.print_json({**status_.to_json(), "running": True})
        return
    common.print_fields(
        [
            ("running", f"yes (pid {status_.pid})"),
            ("version", status_.version),
            ("socket", status_.socket),
            ("home", status_.home),
            ("vmm", f"{status_.vmm} ({status_.accel}: {status_.accel_reason})"),
            ("vmm auto", status_.vmm_reason or status_.vmm),
        ]
    )


@click.command(
    epilog=epilog(
        [
            "banger doctor",
            "banger doctor --json | jq '.[] | select(.status == \"fail\")'",
        ],
        next_step="fix each FAIL with the command after its arrow, then `banger vm run -- true`.",
    )
)
@common.json_option
def doctor(as_json: bool) -> None:
    """Check every host prerequisite and say how to fix what is missing.

    Each line is ok, info (worth knowing, nothing to do: an optional backend
    absent, a fallback in use), WARN (act on it) or FAIL (banger cannot work
    until it is fixed). Exits non-zero when a check fails; warnings exit 0.
    """
    from dataclasses import asdict

    from banger.doctor import run_checks

    checks = run_checks(common.settings())
    if as_json:
        common.print_json([asdict(c) for c in checks])
    else:
        marks = {"ok": " ok ", "info": "info", "warn": "WARN", "fail": "FAIL"}
        for check in checks:
            click.echo(f"[{marks.get(check.status, check.status)}] {check.name}: {check.detail}")
            if check.status != "ok" and check.remedy:
                click.echo(f"       -> {check.remedy}")
        counts = {status: sum(c.status == status for c in checks) for status in marks}
        click.echo(
            f"{counts['fail']} failed, {counts['warn']} to act on (WARN),"
            f" {counts['info']} for information, {counts['ok']} ok"
        )
    if any(c.status == "fail" for c in checks):
        raise SystemExit(1)
