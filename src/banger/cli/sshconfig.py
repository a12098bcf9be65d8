"""``banger ssh-config``: `ssh NAME.vm` from any terminal, editor or tool that reads ssh_config.

`--install` adds one `Include` (and a comment saying who added it) at the
top of the user's ssh config, where OpenSSH applies it to every host; each
VM's `Host NAME.vm` block lives in a file of banger's own, beside the VM's
disks, so the line never changes as VMs come and go. `--uninstall` removes
exactly those bytes, leaving the file as it was before, and deletes it if
banger created it.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import click

from banger.cli import common
from banger.cli.helptext import epilog

_COMMENT = "# added by `banger ssh-config --install`; `banger ssh-config --uninstall` removes it\n"


def default_config() -> Path:
    # OpenSSH reads the passwd entry's home, not $HOME.
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh" / "config"


def include_block(pattern: str) -> str:
    return f"{_COMMENT}Include {pattern}\n"


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.banger-tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install(path: Path, pattern: str, state: Path) -> bool:
    """Add the block at the top of ``path``; False when it is there already."""
    block = include_block(pattern)
    existed = path.exists()
    text = path.read_text() if existed else ""
    if block in text:
        return False
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    mode = path.stat().st_mode & 0o7777 if existed else 0o600
    _write(path, block + text, mode)
    records = json.loads(state.read_text()) if state.exists() else {}
    records[str(path)] = {"created": not existed, "block": block}
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(records))
    return True


def uninstall(path: Path, state: Path) -> bool:
    """Remove what `install` added to ``path``; False when nothing was there."""
    records = json.loads(state.read_text()) if state.exists() else {}
    record = records.pop(str(path), None)
    if record is None or not path.exists():
        return False
    text = path.read_text()
    block = str(record["block"])
    if block not in text:
        return False
    rest = text.replace(block, "", 1)
    if record["created"] and not rest:
        path.unlink()
    else:
        _write(path, rest, path.stat().st_mode & 0o7777)
    state.write_text(json.dumps(records))
    return True


@click.command(
    "ssh-config",
    epilog=epilog(
        [
            "banger ssh-config --install  # then: ssh dev.vm",
            "banger ssh-config  # print the Host blocks only",
            "banger ssh-config --uninstall  # your config as before",
            "banger ssh-config --install --ssh-config cfg  # then: ssh -F cfg dev.vm",
        ]
    ),
)
@click.option("--install", "action", flag_value="install", help="Add the Include line.")
@click.option("--uninstall", "action", flag_value="uninstall", help="Remove it again.")
@click.option(
    "--print", "action", flag_value="print", default=True, help="Print the blocks (default)."
)
@click.option(
    "--ssh-config",
    "config",
    type=click.Path(path_type=Path),
    help="The ssh config file to change (default: ~/.ssh/config of your passwd entry).",
)
def ssh_config(action: str, config: Path | None) -> None:
    """Make `ssh NAME.vm` work with banger's key and each VM's pinned host key.

    Every VM gets a `Host NAME.vm` block (address, user root, banger's key,
    its host key pinned: no trust-on-first-use prompt). `--install` adds one
    Include line to your ssh config; nothing else in it is touched.
    """
    from banger.api.shapes import SshConfig

    path = config or default_config()
    state = common.settings().ssh_dir / "ssh-config-installed.json"
    if action == "uninstall":
        removed = uninstall(path, state)
        click.echo(
            f"removed banger's Include from {path}" if removed else f"nothing to remove in {path}"
        )
        return
    with common.client() as conn:
        written = conn.send("POST", "/ssh-config", None, SshConfig.from_json)
    if action == "print":
        click.echo(written.text or f"# no VMs yet; each VM's block is written to {written.path}")
        return
    added = install(path, written.path, state)
    click.echo(
        f"{'added' if added else 'already in'} {path}: Include {written.path}; try: ssh NAME.vm"
    )
