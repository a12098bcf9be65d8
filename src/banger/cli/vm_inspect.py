"""``banger vm logs|stats|ports|health|ping``: looking into a VM."""

from __future__ import annotations

import sys
from typing import Any

import click

from banger.cli import common
from banger.cli.helptext import epilog


@click.command(
    epilog=epilog(
        [
            "banger vm logs dev",
            "banger vm logs -f dev  # follow until the VM stops",
            "banger vm logs dev | grep -i error  # escapes and \\r cleaned off",
            "banger vm logs --raw dev > raw.log  # bytes as the guest wrote them",
        ]
    )
)
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the VM stops.")
@click.option(
    "--raw",
    is_flag=True,
    help="Keep the console's escape sequences and \\r\\n line ends even when piped.",
)
def logs(name: str, follow: bool, raw: bool) -> None:
    """Print VM NAME's serial console: kernel messages, init, agent.

    On a terminal the console's bytes pass through as they are. Piped or
    redirected, colour and cursor escapes are removed and line ends become
    plain newlines, unless --raw.
    """
    from banger.cli.console import ConsoleCleaner

    cleaner = None if raw or sys.stdout.isatty() else ConsoleCleaner()
    out = sys.stdout.buffer
    with common.client() as conn:
        for chunk in conn.stream(f"/vms/{name}/logs?follow={'true' if follow else 'false'}"):
            out.write(cleaner.feed(chunk) if cleaner else chunk)
            out.flush()
    if cleaner:
        out.write(cleaner.flush())
        out.flush()


def _size(num: int | float | None) -> str:
    from banger.units import format_size

    return format_size(num) if num is not None else "-"


@click.command(
    epilog=epilog(
        [
            "banger vm stats dev",
            "banger vm stats dev --json  # counters in bytes and seconds",
        ]
    )
)
@click.argument("name")
@common.json_option
def stats(name: str, as_json: bool) -> None:
    """Show VM NAME's CPU, memory, disk and network use.

    Both sides: its VMM process on the host, and what the guest reports.
    """
    from banger.api.shapes import VmStats

    with common.client() as conn:
        data = conn.get(f"/vms/{name}/stats", VmStats.from_json)
    if as_json:
        common.print_json(data)
        return
    host, guest = data.host, data.guest
    pairs: list[tuple[str, Any]] = [
        ("vmm pid", host.pid),
        ("vmm cpu", f"{host.cpu_seconds} s"),
        ("vmm memory (rss)", _size(host.rss_bytes)),
        ("vmm disk io", f"read {_size(host.read_bytes)}, written {_size(host.write_bytes)}"),
        ("network", f"received {_size(host.net_rx_bytes)}, sent {_size(host.net_tx_bytes)}"),
        (
            "guest memory",
            f"{_size(guest.mem_available_bytes)} available of {_size(guest.mem_total_bytes)}",
        ),
        ("guest load", " ".join(str(x) for x in guest.load or [])),
    ]
    for disk in guest.disks:
        pairs.append(
            (
                f"guest disk {disk.mount}",
                f"{_size(disk.used_bytes)} used of {_size(disk.size_bytes)}",
            )
        )
    common.print_fields(pairs)


@click.command(
    epilog=epilog(
        [
            "banger vm ports dev",
            "banger vm ports dev --json",
        ],
        next_step="reach a listener from the host at its ENDPOINT, e.g. with curl.",
    )
)
@click.argument("name")
@common.json_option
def ports(name: str, as_json: bool) -> None:
    """List what listens in VM NAME, and where to reach it.

    Every TCP and UDP socket listening in the guest, with its process and an
    endpoint that works from this host: the VM's address, or NAME.vm where
    the host resolves banger's names (`banger doctor` says whether it does).
    FORWARDED is the host address bangerd forwards to it (`vm port add`,
    `-p`, or --forward-ports auto, where ports below 1024 get a free high one);
    "via agent" marks a listener on the guest's loopback, reached through
    banger's guest agent instead of the VM's address.
    """
    from banger.api.shapes import Port

    common.list_records(
        f"/vms/{name}/ports",
        Port.from_json,
        as_json,
        ["PROTO", "ADDRESS", "PORT", "PROCESS", "ENDPOINT", "FORWARDED"],
        lambda p: (p.proto, p.address, p.port, p.process or "-", p.endpoint, _forwarded(p)),
        empty=f"nothing listens in {name}",
    )


@click.command(
    epilog=epilog(
        [
            "banger vm health dev",
            "banger vm health dev --json",
        ]
    )
)
@click.argument("name")
@common.json_option
def health(name: str, as_json: bool) -> None:
    """Check VM NAME's VMM process, SSH and guest init.

    Exits 1 when a check fails, so scripts can wait on it.
    """
    from banger.api.shapes import VmHealth

    with common.client() as conn:
        data = conn.get(f"/vms/{name}/health", VmHealth.from_json)
    if as_json:
        common.print_json(data)
    else:
        click.echo(f"{data.name}: {'healthy' if data.healthy else 'UNHEALTHY'} ({data.state})")
        from banger.cli.render import check_detail

        for check, result in data.checks.items():
            detail = check_detail(check, result.to_json())
            click.echo(f"  {'ok  ' if result.ok else 'FAIL'} {check}: {detail}")
    if not data.healthy:
        raise SystemExit(1)


@click.command(
    epilog=epilog(
        [
            "banger vm ping dev",
            "banger vm ping dev --json",
        ]
    )
)
@click.argument("name")
@common.json_option
def ping(name: str, as_json: bool) -> None:
    """Check that VM NAME answers on the network.

    Connects to its SSH port over TCP and prints the round trip; exits 1 when
    it does not answer.
    """
    from banger.api.shapes import VmPing

    with common.client() as conn:
        data = conn.get(f"/vms/{name}/ping", VmPing.from_json)
    if as_json:
        common.print_json(data)
    elif data.reachable:
        click.echo(f"{data.name} ({data.ip}) answered in {data.rtt_ms or 0:.2f} ms")
    else:
        click.echo(f"{data.name} ({data.ip}) does not answer: {data.error}")
    if not data.reachable:
        raise SystemExit(1)


def _forwarded(port: Any) -> str:
    if not port.forwarded:
        return "-"
    return str(port.forwarded) + (" via agent" if port.via == "agent" else "")
