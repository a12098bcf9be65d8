"""``banger vm port add|remove|list``: host ports forwarded to a VM."""

from __future__ import annotations

import urllib.parse

import click

from banger.cli import common
from banger.cli.helptext import Group, epilog

_HEADERS = ["HOST", "GUEST PORT", "PROTO", "SOURCE", "STATE"]


@click.group(
    cls=Group,
    epilog=epilog(
        [
            "banger vm port add dev 8080:80  # 127.0.0.1:8080 -> its port 80",
            "banger vm port add dev 0.0.0.0:8443:443  # every host address, on purpose",
            "banger vm port list dev",
            "banger vm port remove dev 8080",
        ],
        next_step="`curl 127.0.0.1:8080` once something listens on port 80 in the VM;"
        " `banger vm ports dev` lists what listens there.",
    ),
)
def port() -> None:
    """Forward host ports to a VM, as `docker run -p` does.

    bangerd listens on the host address and relays each TCP connection to
    the VM's port. A forward is recorded: it lasts until it is removed or
    the VM is deleted, through VM restarts and daemon restarts. The host
    side is 127.0.0.1 unless an address is written (0.0.0.0 for every
    interface). `vm create -p` publishes ports at creation.
    """


@port.command(
    epilog=epilog(
        [
            "banger vm port add dev 8080:80",
            "banger vm port add dev 127.0.0.1:5432:5432/tcp",
        ]
    )
)
@click.argument("name")
@click.argument("spec", metavar="[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp]")
@common.json_option
def add(name: str, spec: str, as_json: bool) -> None:
    """Forward a host port to a port of VM NAME.

    A host port that something holds is refused, naming the holder where
    this host tells which process it is.
    """
    from banger.api.shapes import PortAdd, PortForward

    with common.client() as conn:
        made = conn.send("POST", f"/vms/{name}/forwards", PortAdd(spec=spec), PortForward.from_json)
    if as_json:
        common.print_json(made)
        return
    click.echo(f"forwarding {_host(made)} to port {made.guest_port} of {name}")


@port.command(
    epilog=epilog(
        [
            "banger vm port remove dev 8080",
            "banger vm port remove dev 0.0.0.0:8443",
        ]
    )
)
@click.argument("name")
@click.argument("address", metavar="[HOST_IP:]HOST_PORT")
@common.json_option
def remove(name: str, address: str, as_json: bool) -> None:
    """Stop forwarding a host port to VM NAME; its connections are closed."""
    from banger.api.shapes import PortForward

    path = f"/vms/{name}/forwards/{urllib.parse.quote(address, safe='')}"
    with common.client() as conn:
        gone = conn.send("DELETE", path, None, PortForward.from_json)
    if as_json:
        common.print_json(gone)
        return
    click.echo(f"no longer forwarding {_host(gone)} to {name}")


@port.command(
    "list",
    epilog=epilog(["banger vm port list dev", "banger vm port list dev --json"]),
)
@click.argument("name")
@common.json_option
def list_(name: str, as_json: bool) -> None:
    """List the host ports forwarded to VM NAME: published ones and automatic ones."""
    from banger.api.shapes import PortForward

    common.list_records(
        f"/vms/{name}/forwards",
        PortForward.from_json,
        as_json,
        _HEADERS,
        lambda f: (_host(f), f.guest_port, f.proto, f.source, _state(f)),
        empty=f"no ports forwarded to {name}: `banger vm port add {name} HOST_PORT:GUEST_PORT`",
    )


def _host(forward: object) -> str:
    ip = str(getattr(forward, "host_ip", ""))
    return f"{f'[{ip}]' if ':' in ip else ip}:{getattr(forward, 'host_port', '')}"


def _state(forward: object) -> str:
    error = str(getattr(forward, "error", ""))
    return f"not listening: {error}" if error else "listening"
