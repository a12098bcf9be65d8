"""Reaching into a VM from a client: the channel to use, and its workspace's record.

Shared by the CLI (`vm exec`, `vm cp`, `vm workspace`, `vm run`) and the
Python SDK (``banger.sdk``), so both pick the channel, copy a checkout in and
take a patch out the same way. Nothing here prints: progress goes to a
``say`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from banger.api.client import Client
    from banger.api.shapes import Workspace
    from banger.workspace.agent_channel import AgentChannel
    from banger.workspace.channel import SshChannel
    from banger.workspace.export import Exported
    from banger.workspace.prepare import Prepared, PrepareOptions


def channel_to(conn: Client, name: str) -> AgentChannel | SshChannel:
    """banger's agent channel when VM ``name``'s agent answers, its SSH otherwise."""
    from banger.api.shapes import GuestAccess
    from banger.workspace.agent_channel import AgentChannel
    from banger.workspace.channel import SshChannel

    access = conn.get(f"/vms/{name}/guest", GuestAccess.from_json)
    if access.channel or access.ssh is None:
        return AgentChannel(str(conn.settings.socket), access.vm)
    return SshChannel(access.ssh)


def find_workspace(conn: Client, name: str) -> Workspace | None:
    """VM ``name``'s workspace record, None when nothing was prepared in it."""
    from banger.api.shapes import Workspace
    from banger.errors import NotFound

    try:
        return conn.get(f"/vms/{name}/workspace", Workspace.from_json)
    except NotFound:
        conn.get(f"/vms/{name}", lambda d: d)  # a missing VM is the error to show
        return None


def prepare_into(
    conn: Client, name: str, opts: PrepareOptions, say: Callable[[str], None] = lambda _: None
) -> tuple[Workspace, Prepared]:
    """Copy the checkout into VM ``name`` and record it in the daemon."""
    from banger.api.shapes import Workspace
    from banger.workspace.prepare import prepare

    done = prepare(channel_to(conn, name), opts, say)
    ws = conn.send("PUT", f"/vms/{name}/workspace", done.record, Workspace.from_json)
    return ws, done


def export_from(conn: Client, name: str, base_commit: str | None = None) -> Exported:
    """Every change in VM ``name``'s workspace since its base commit, as one patch."""
    from banger.errors import NotFound
    from banger.workspace.export import export

    ws = find_workspace(conn, name)
    if ws is None:
        raise NotFound(
            f"VM {name} has no workspace to export",
            hint=f"copy a checkout in first: banger vm workspace prepare {name} PATH",
        )
    return export(channel_to(conn, name), ws, name, base_commit)
