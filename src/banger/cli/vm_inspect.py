"""``banger vm logs|stats|ports|health|ping``: looking into a VM."""

from __future__ import annotations

import sys
from typing import Any

import click

from banger.cli import common


@click.command()
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the VM stops.")
def logs(name: str, follow: bool) -> None:
    """Print VM NAME's serial console: kernel messages, init, agent.

    Example:  banger vm logs -f dev
    """
    with common.client() as conn:
        for chunk in conn.stream(f"/vms/{name}/logs?follow={'true' if follow else 'false'}"):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()


def _size(num: int | float | None) -> str:
    from banger.units import format_size

    return format_size(num) if num is not None else "-"


@click.command()
@click.argument("name")
@common.json_option
def stats(name: str, as_json: bool) -> None:
    """CPU, memory, disk and network of VM NAME: its VMM on the host, and inside the guest."""
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


@click.command()
@click.argument("name")
@common.json_option
def ports(name: str, as_json: bool) -> None:
    """Listening TCP and UDP sockets in VM NAME, with process and an endpoint to reach them.

    ENDPOINT is what works from this host: the VM's address, or NAME.vm
    where the host resolves banger's names.
    Example:  banger vm ports dev   # then: curl http://ENDPOINT/
    """
    from banger.api.shapes import Port

    common.list_records(
        f"/vms/{name}/ports",
        Port.from_json,
        as_json,
        ["PROTO", "ADDRESS", "PORT", "PROCESS", "ENDPOINT"],
        lambda p: (p.proto, p.address, p.port, p.process or "-", p.endpoint),
        empty=f"nothing listens in {name}",
    )


@click.command()
@click.argument("name")
@common.json_option
def health(name: str, as_json: bool) -> None:
    """Check VM NAME: VMM process, SSH, and the guest's init. Exits 1 when unhealthy."""
    from banger.api.shapes import VmHealth

    with common.client() as conn:
        data = conn.get(f"/vms/{name}/health", VmHealth.from_json)
    if as_json:
        common.print_json(data)
    else:
        click.echo(f"{data.name}: {'healthy' if data.healthy else 'UNHEALTHY'} ({data.state})")
        for check, result in data.checks.items():
            facts = {k: v for k, v in result.to_json().items() if k != "ok" and v is not None}
            detail = ", ".join(f"{k}={v}" for k, v in facts.items()) or "not running"
            click.echo(f"  {'ok  ' if result.ok else 'FAIL'} {check}: {detail}")
    if not data.healthy:
        raise SystemExit(1)


@click.command()
@click.argument("name")
@common.json_option
def ping(name: str, as_json: bool) -> None:
    """Check that VM NAME answers on the network (TCP to its SSH port), with the round trip."""
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


COMMANDS = (logs, stats, ports, health, ping)
