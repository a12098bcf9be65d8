"""Tab completion as a shell runs it, and what a tab or a --help imports.

Completion runs the real ``banger`` in a process of its own, with click's
protocol (``_BANGER_COMPLETE``, ``COMP_WORDS``, ``COMP_CWORD``), against the
daemon's real API app served on a test socket; only the VMM and the root
helper are fakes. What ``banger --help`` and a tab import is checked in fresh
processes too: the lazy command table is what makes them fast, and it must
say what the commands themselves say.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from fastapi import FastAPI

from banger.api.models import VmState
from banger.cli.lazy import LazyGroup
from banger.cli.main import cli
from banger.config import Settings
from banger.daemon.app import create_app
from banger.daemon.services import wire
from banger.net.leases import lease
from banger.store import Store
from banger.vmm.accel import AccelChoice
from tests.unit.fakes import RecordingHelper
from tests.unit.served import Closing, ServedApp
from tests.unit.test_api import NoVmm
from tests.unit.test_client import answer, scripted  # noqa: F401 (a fixture)
from tests.unit.test_store import GATEWAY, NET, draft

BIN = Path(sys.executable).parent


class RecordsOnly(NoVmm):
    name = "qemu"  # what the VMs in the store say they run under


class ApiDaemon(ServedApp):
    """bangerd's whole API app over a store; its VMs are records that never boot."""

    def __init__(self, settings: Settings, store: Store) -> None:
        super().__init__(settings)
        self.store = store

    async def build(self) -> tuple[FastAPI, Closing]:
        services = wire(
            self.settings,
            store=self.store,
            vmm=RecordsOnly(),
            accel=AccelChoice("tcg", "test"),
            helper=RecordingHelper(),
            user_key=self.settings.ssh_dir / "id_ed25519",
            loop=asyncio.get_running_loop(),
        )
        return create_app(services, asyncio.Event()), services.agents.close


@pytest.fixture
def daemon(settings: Settings, store: Store) -> Iterator[Settings]:
    for name in ("dev", "dev2", "web"):
        lease(draft(name).model_copy(update={"state": VmState.STOPPED}), store, NET, [GATEWAY])
    os.makedirs(settings.runtime_dir, mode=0o700, exist_ok=True)
    served = ApiDaemon(settings, store)
    served.serve()
    yield settings
    served.shutdown()
    served.raise_error()


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BANGER_", "XDG_", "COMP_"))},
        "BANGER_HOME": str(settings.home),
        "BANGER_RUNTIME_DIR": str(settings.runtime_dir),
        "BANGER_CONFIG": str(settings.home / "no-config.toml"),
        **extra,
    }


def tab(
    settings: Settings, line: str, shell: str = "bash", **extra: str
) -> subprocess.CompletedProcess[str]:
    """What ``banger`` prints for a tab at the end of ``line``, as ``shell`` asks for it."""
    words = line.split()
    incomplete = "" if line.endswith(" ") else words[-1]
    cword = len(words) if line.endswith(" ") else len(words) - 1
    env = env_of(
        settings,
        _BANGER_COMPLETE=f"{shell}_complete",
        COMP_WORDS=line,
        COMP_CWORD=incomplete if shell == "fish" else str(cword),
        **extra,
    )
    return subprocess.run(
        [str(BIN / "banger")], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def bash_values(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert (result.returncode, result.stderr) == (0, "")
    return [line.partition(",")[2] for line in result.stdout.splitlines()]


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("banger vm ssh ", ["dev", "dev2", "web"]),
        ("banger vm show d", ["dev", "dev2"]),
        ("banger vm delete dev w", ["web"]),  # every NAME of `delete NAMES...`
        ("banger vm start ", ["dev", "dev2", "web"]),  # a command imported on first use
        ("banger vm exec w", ["web"]),
        ("banger image show ", ["debian-bookworm"]),
        ("banger vm create --image d", ["debian-bookworm"]),
        ("banger kernel delete ", ["k"]),
    ],
)
def test_a_tab_completes_names_from_the_running_daemon(daemon, line, names):
    assert bash_values(tab(daemon, line)) == names


# Settings only bangerd uses, as a user running a non-default daemon has them.
DAEMON_SETTINGS = {"BANGER_BRIDGE": "bgother0", "BANGER_SUBNET": "10.99.0.0/24"}


def test_the_daemons_own_settings_in_the_environment_leave_a_tab_its_names(daemon):
    for extra in (DAEMON_SETTINGS, {"BANGER_DNS_PORT": "10099", "BANGER_WARM_START": "off"}):
        assert bash_values(tab(daemon, "banger vm show d", **extra)) == ["dev", "dev2"]


def test_a_tab_finds_the_daemon_a_config_file_places(daemon):
    config = daemon.home / "config.toml"
    config.write_text(f'runtime_dir = "{daemon.runtime_dir}"\nbridge = "bgother0"\n')
    # BANGER_RUNTIME_DIR empty is unset: only the file says where bangerd is.
    where = {"BANGER_CONFIG": str(config), "BANGER_RUNTIME_DIR": ""}
    assert bash_values(tab(daemon, "banger vm show d", **where)) == ["dev", "dev2"]


@pytest.mark.parametrize(
    "extra",
    [{"BANGER_SUBNET": "nonsense"}, {"BANGER_MODE": "cluster"}, {"BANGER_DNS_PORT": "53"}],
)
def test_settings_the_cli_would_refuse_complete_nothing_quietly(daemon, extra):
    # `banger vm show` itself would stop at them, so a tab offers nothing either.
    result = tab(daemon, "banger vm show d", **extra)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "", "")


def test_zsh_and_fish_get_the_names_in_their_own_formats(daemon):
    zsh = tab(daemon, "banger vm ssh d", "zsh")
    assert (zsh.returncode, zsh.stdout) == (0, "plain\ndev\n_\nplain\ndev2\n_\n")
    fish = tab(daemon, "banger vm ssh d", "fish")
    assert (fish.returncode, fish.stdout) == (0, "plain,dev\nplain,dev2\n")


def test_commands_complete_with_their_descriptions_without_a_daemon(settings):
    zsh = tab(settings, "banger vm st", "zsh")
    assert zsh.returncode == 0
    assert zsh.stdout.split("\n")[:6] == [
        "plain",
        "start",
        "Boot stopped VMs again, with their disks...",
        "plain",
        "stats",
        "Show VM NAME's CPU, memory, disk and...",
    ]
    assert bash_values(tab(settings, "banger i")) == ["image"]


@pytest.mark.parametrize("line", ["banger vm ssh ", "banger vm delete d", "banger image show "])
def test_no_daemon_completes_nothing_quietly(settings, line):
    result = tab(settings, line)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "", "")
    assert not settings.runtime_dir.exists()  # nothing was started or created for a tab


# Click's path (banger.cli.root), which answers whatever the fast path leaves to it
# (tests/unit/test_cli_fast.py has what the fast path imports).
LOADED = (
    "import sys\n"
    "sys.argv[0] = 'banger'  # click names the completion variable after the program\n"
    "from banger.cli.root import run\n"
    "try:\n"
    "    run()\n"
    "except SystemExit:\n"
    "    pass\n"
    "mods = sorted(m for m in sys.modules if m.startswith(('banger.cli.', 'banger.api.',"
    " 'click.shell_completion')))\n"
    "print(' '.join(mods), file=sys.stderr)\n"
)
LIGHT = [
    "banger.cli.completion",
    "banger.cli.helptext",
    "banger.cli.lazy",
    "banger.cli.names",
    "banger.cli.root",
]


def loaded_by(env: dict[str, str], *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", LOADED, *args], env=env, capture_output=True, text=True, check=True
    )
    return result.stderr.split()


def test_help_imports_no_command_module(settings):
    assert loaded_by(env_of(settings), "--help") == LIGHT


def test_a_tab_after_vm_show_imports_the_vm_group_and_no_api_client(daemon):
    env = env_of(
        daemon, _BANGER_COMPLETE="bash_complete", COMP_WORDS="banger vm show d", COMP_CWORD="3"
    )
    tab_only = ["banger.api.transport", "banger.cli.common", "banger.cli.vm"]
    assert loaded_by(env) == sorted([*LIGHT, *tab_only, "click.shell_completion"])


def lazy_groups() -> Iterator[tuple[str, LazyGroup]]:
    cli.load_all()
    stack: list[tuple[str, click.Command]] = [("banger", cli)]
    while stack:
        path, cmd = stack.pop()
        if isinstance(cmd, LazyGroup):
            yield path, cmd
        if isinstance(cmd, click.Group):
            stack.extend((f"{path} {n}", c) for n, c in cmd.commands.items())


def test_the_lazy_tables_say_what_their_commands_say():
    groups = list(lazy_groups())
    assert {path for path, _ in groups} == {"banger", "banger vm"}
    for path, group in groups:
        for name, entry in group.lazy.items():
            real = group.commands[name]
            stub = click.Command(name, help=entry.help)
            said = real.get_short_help_str(200)
            assert (entry.help, entry.hidden) == (said, real.hidden), (
                f"`{path} {name}`: set its entry in the lazy table to {said!r}"
            )
            assert stub.get_short_help_str(45) == real.get_short_help_str(45)


EVERYTHING_LOADED = (
    "import sys\n"
    "from banger.cli.main import cli\n"
    "cli.load_all()\n"
    "cli.main(sys.argv[1:], prog_name='banger')\n"
)


@pytest.mark.parametrize("args", [[], ["vm"]])
def test_help_from_the_table_reads_as_help_from_the_commands(settings, args):
    def run(*argv: str) -> str:
        env = env_of(settings, COLUMNS="80")
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout

    fresh = run(str(BIN / "banger"), *args, "--help")
    assert fresh == run(sys.executable, "-c", EVERYTHING_LOADED, *args, "--help")
    assert "Commands:" in fresh


def test_a_daemon_older_than_the_cli_still_completes_from_its_full_listing(
    settings,
    scripted,  # noqa: F811 (the fixture)
):
    asked: list[str] = []

    def older(conn, method: str, path: str) -> None:
        asked.append(path)
        if path == "/vms":
            answer(conn, 200, json.dumps([{"name": "dev", "state": "running"}]).encode())
        else:
            answer(conn, 404, b'{"detail": "Not Found"}')

    scripted(older)
    assert bash_values(tab(settings, "banger vm ssh ")) == ["dev"]
    assert asked == ["/names/vms", "/vms"]
