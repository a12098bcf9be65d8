"""``vm.workspace``: a host git checkout copied into the VM, and its changes back as a patch.

The same code as `banger vm workspace prepare|export` (``banger.workspace``):
the working tree as it is, uncommitted edits included, with the history a
diff needs; the export is one patch ``git apply`` takes on the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from banger.api.client import Client
    from banger.api.shapes import Workspace as WorkspaceRecord
    from banger.sdk.commands import Commands
    from banger.workspace.export import Exported


class Workspace:
    """The workspace of one VM."""

    def __init__(self, conn: Client, vm: str, commands: Commands) -> None:
        self._conn = conn
        self._vm = vm
        self._commands = commands

    def prepare(
        self,
        path: str | Path = ".",
        *,
        guest_path: str | None = None,
        branch: str | None = None,
        from_rev: str | None = None,
        mode: Literal["shallow", "full"] = "shallow",
        include_untracked: bool = False,
    ) -> WorkspaceRecord:
        """Copy the git checkout at ``path`` into the VM, replacing an earlier copy there.

        Commands run in it from then on (unless given a ``cwd``).

        Args:
            path: the checkout on this host.
            guest_path: where in the guest; default /root/<repository name>.
            branch: the branch to check out there; default the host's current.
            from_rev: copy this commit's tree instead of the working tree.
            mode: history to copy: the base commit only, or all its ancestors.
            include_untracked: copy untracked files too (never ignored ones).

        Returns:
            The daemon's record: ``guest_path``, ``base_commit``, ``branch``...
        """
        from banger.api.shapes import WorkspaceMode
        from banger.workspace.access import prepare_into
        from banger.workspace.prepare import PrepareOptions

        opts = PrepareOptions(
            path=Path(path).resolve(),
            guest_path=guest_path,
            branch=branch,
            from_rev=from_rev,
            mode=WorkspaceMode(mode),
            include_untracked=include_untracked,
        )
        ws, _ = prepare_into(self._conn, self._vm, opts)
        self._commands.set_default_cwd(ws.guest_path)
        return ws

    def export(self, base_commit: str | None = None) -> Exported:
        """Every change in the guest's copy since ``prepare``, committed there or not.

        Returns an object with ``patch`` (bytes for ``git apply``, empty
        when nothing changed), ``changes`` (each with ``status``, ``path``
        and ``old`` for a rename) and ``base_commit``.
        """
        from banger.workspace.access import export_from

        return export_from(self._conn, self._vm, base_commit)

    @property
    def info(self) -> WorkspaceRecord | None:
        """The workspace's record, None when nothing was prepared in this VM."""
        from banger.workspace.access import find_workspace

        return find_workspace(self._conn, self._vm)
