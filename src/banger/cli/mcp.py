"""``banger mcp``: the MCP server a coding-agent client starts (``banger.mcp_server``)."""

from __future__ import annotations

import click

from banger.cli.helptext import epilog


@click.command(
    epilog=epilog(
        [
            "banger mcp  # run by the client (stdio)",
            "claude mcp add banger -- banger mcp  # e.g. Claude Code",
        ],
        next_step="the client's model then has create_vm, run_command, read_file,"
        " write_file, list_vms, export_patch, fork_vm and delete_vm.",
    )
)
def mcp() -> None:
    """Serve banger to an AI coding agent over the Model Context Protocol (stdio).

    You do not run this yourself: a coding-agent client (an MCP client)
    starts it and talks to it on stdin and stdout. Its tools let the model
    create a VM with the project's checkout copied in, run commands there
    (exit code, stdout and stderr), read and write files, bring the changes
    back as a patch, fork and delete VMs; a resource lists the VMs. It uses
    the same daemon as the CLI, starting it when none answers. In a client's
    JSON configuration: "banger": {"command": "banger", "args": ["mcp"]}.
    """
    from banger.mcp_server import serve

    serve()
