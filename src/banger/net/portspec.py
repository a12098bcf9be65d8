"""Published ports as Docker users write them, parsed into forwards.

``[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp]``: the host address defaults to
127.0.0.1, so a forward is reachable from this host only unless another
address is written out (``0.0.0.0:8080:80`` for every interface).
"""

from __future__ import annotations

import ipaddress
import re

from banger.api.models import ForwardSource, PortForward
from banger.errors import UserError

LOOPBACK = "127.0.0.1"

_SPEC_RE = re.compile(
    r"(?:(?P<ip>\[[0-9A-Fa-f:.]+\]|[0-9.]+):)?(?P<host>[^:/]+):(?P<guest>[^:/]+)(?:/(?P<proto>\w+))?"
)
_HINT = "write -p [HOST_IP:]HOST_PORT:GUEST_PORT[/tcp], e.g. -p 8080:80 or -p 0.0.0.0:8080:80"


def _digits(text: str) -> bool:
    # str.isdigit() is true of "²" and other digits int() refuses: ASCII only.
    return text.isascii() and text.isdigit()


def parse_port(text: str, what: str) -> int:
    if not _digits(text) or not 1 <= int(text) <= 65535:
        raise UserError(
            f"{what} {text!r} is not a port number between 1 and 65535", hint=_HINT, field="ports"
        )
    return int(text)


def parse_host_ip(text: str, spec: str) -> str:
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise UserError(
            f"{text!r} in {spec!r} is not an IP address of this host", hint=_HINT, field="ports"
        ) from None
    return str(address)


def parse_publish(spec: str) -> PortForward:
    """One ``-p`` value as a forward; UserError naming what is wrong in it."""
    match = _SPEC_RE.fullmatch(spec.strip())
    if match is None:
        raise UserError(f"-p {spec!r} is not HOST_PORT:GUEST_PORT", hint=_HINT, field="ports")
    proto = (match["proto"] or "tcp").lower()
    if proto != "tcp":
        raise UserError(
            f"-p {spec!r} asks for {proto}; banger forwards TCP only",
            hint="drop the /" + proto + ", or reach the VM's UDP ports at NAME.vm directly",
            field="ports",
        )
    host_ip = parse_host_ip(match["ip"], spec) if match["ip"] else LOOPBACK
    return PortForward(
        host_ip=host_ip,
        host_port=parse_port(match["host"], "host port"),
        guest_port=parse_port(match["guest"], "guest port"),
        source=ForwardSource.PUBLISHED,
    )


def parse_publishes(specs: list[str]) -> list[PortForward]:
    """Every ``-p`` of one request, refusing a host address asked for twice."""
    forwards = [parse_publish(spec) for spec in specs]
    seen: set[tuple[str, int]] = set()
    for forward in forwards:
        key = (forward.host_ip, forward.host_port)
        if key in seen:
            raise UserError(
                f"host port {forward.host_ip}:{forward.host_port} is given twice",
                hint="each -p needs its own host port",
                field="ports",
            )
        seen.add(key)
    return forwards


def parse_host_address(text: str) -> tuple[str | None, int]:
    """What `vm port remove` names: ``HOST_PORT``, ``HOST_IP:HOST_PORT`` or a whole -p spec.

    The address is None when only a port is given: any address of the VM's.
    """
    text = text.strip()
    if _digits(text):
        return None, parse_port(text, "host port")
    head, _, port = text.rpartition(":")
    unbracketed = re.sub(r"\[[^]]*\]", "", head)
    if _digits(head) or ":" in unbracketed or "/" in text:
        forward = parse_publish(text)
        return forward.host_ip, forward.host_port
    if not head:
        raise UserError(
            f"{text!r} is not a host port",
            hint="name the forward by its host port, e.g. `banger vm port remove dev 8080`",
        )
    return parse_host_ip(head, text), parse_port(port, "host port")
