"""``banger daemon`` and ``banger doctor``."""

from __future__ import annotations

import os
import signal
import time

import click

from banger.cli import common


@click.group(
    epilog="""\b
Examples:
  banger daemon status --json
  banger daemon stop
"""
)
def daemon() -> None:
    """Manage bangerd, the daemon that owns VMs, images and kernels.

    You rarely need this: every banger command starts the daemon when none
    answers. Use `status` to see where it listens, `stop` after an upgrade.
    """


@daemon.command()
def start() -> None:
    """Start bangerd unless it already runs."""
    from banger.api.client import Client, start_daemon

    settings = common.settings()
    conn = Client(settings)
    try:
        if conn.ping():
            click.echo(f"bangerd already running on {settings.socket}")
            return
    finally:
        conn.close()
    start_daemon(settings)
    click.echo(f"bangerd started on {settings.socket}")


@daemon.command()
def stop() -> None:
    """Stop bangerd; running VMs keep running."""
    from banger.errors import DaemonUnavailable

    try:
        with common.client(autostart=False) as conn:
            pid = conn.get("/status")["pid"]
            conn.post("/shutdown")
    except DaemonUnavailable:
        click.echo("bangerd is not running")
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            click.echo("bangerd stopped")
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    click.echo(f"bangerd (pid {pid}) did not stop in 30s; sent SIGTERM", err=True)


@daemon.command()
@common.json_option
def status(as_json: bool) -> None:
    """Show whether bangerd runs, its pid, socket and version."""
    from banger.errors import DaemonUnavailable

    settings = common.settings()
    try:
        with common.client(autostart=False) as conn:
            data = conn.get("/status")
    except DaemonUnavailable:
        if as_json:
            common.print_json({"running": False, "socket": str(settings.socket)})
        else:
            click.echo(f"bangerd is not running (socket {settings.socket})")
        raise SystemExit(1) from None
    data["running"] = True
    if as_json:
        common.print_json(data)
        return
    common.print_fields(
        [
            ("running", f"yes (pid {data['pid']})"),
            ("version", data["version"]),
            ("socket", data["socket"]),
            ("home", data["home"]),
            ("vmm", f"{data['vmm']} ({data['accel']}: {data['accel_reason']})"),
            ("vmm auto", data.get("vmm_reason") or data["vmm"]),
        ]
    )


@click.command(
    epilog="""\b
Examples:
  banger doctor
  banger doctor --json | jq '.[] | select(.status != "ok")'
"""
)
@common.json_option
def doctor(as_json: bool) -> None:
    """Check every host prerequisite and say how to fix what is missing.

    Exits non-zero when a check fails (a warning alone still exits 0).
    """
    from dataclasses import asdict

    from banger.doctor import run_checks

    checks = run_checks(common.settings())
    if as_json:
        common.print_json([asdict(c) for c in checks])
    else:
        marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
        for check in checks:
            click.echo(f"[{marks.get(check.status, check.status)}] {check.name}: {check.detail}")
            if check.status != "ok" and check.remedy:
                click.echo(f"       -> {check.remedy}")
    if any(c.status == "fail" for c in checks):
        raise SystemExit(1)
