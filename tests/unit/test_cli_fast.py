"""The click-free fast path says, byte for byte, what click says, or leaves the answer to click.

Each help the table holds is compared with click's own rendering at every
terminal width (COLUMNS) click distinguishes and beyond; each completion in
bash, zsh and fish with click's own answer, against the daemon's real API app
for VM, image and kernel names. The real ``banger`` program is run too, with
the table and without, to show which modules each answer imports.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from banger.cli import fast, fastgen
from banger.cli.root import cli
from banger.config import Settings
from tests.unit.test_completion import daemon, env_of  # noqa: F401 (a fixture)

BIN = Path(sys.executable).parent
ARGV0 = ["banger"]
# Click's own program, for comparison: the click tree run as `banger` runs it,
# never through the fast path.
CLICK_ONLY = "import sys\nsys.argv[0] = 'banger'\nfrom banger.cli.root import run\nrun()\n"


@pytest.fixture(scope="module")
def table() -> Mapping[str, Any]:
    """The table as `make venv` leaves it: written beside banger.cli.fast, then read back."""
    fastgen.write()
    if fast.TABLE_MODULE in sys.modules:
        importlib.reload(sys.modules[fast.TABLE_MODULE])
    found = fast._table()
    assert found is not None, "the table just written does not match the sources"
    return found


def click_help(args: list[str], columns: str | None) -> bytes:
    env = {"COLUMNS": columns} if columns is not None else {}
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("COLUMNS", "LINES"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        with contextlib.redirect_stdout(out):
            code = cli.main(args, prog_name="banger", standalone_mode=False)
    assert code == 0
    return out.getvalue().encode()


WIDTHS = [None, "1", "51", "52", "53", "60", "79", "80", "81", "99", "100", "101", "300", "x"]


def test_every_group_help_is_clicks_at_every_width(table):
    groups = [key.split() for key in table["HELP"]]
    assert ["vm"] in groups and [] in groups and ["image"] in groups
    for words in groups:
        for option in ("--help", "-h"):
            for columns in WIDTHS:
                env = {} if columns is None else {"COLUMNS": columns}
                fast_reply = fast.render([*ARGV0, *words, option], env, table)
                assert fast_reply == click_help([*words, option], columns), (words, columns)


def test_help_through_the_real_program_matches_click_and_imports_no_click(table, tmp_path):
    for args, columns in ((["--help"], "80"), (["vm", "--help"], "64"), (["image", "-h"], None)):
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env |= {"COLUMNS": columns} if columns else {}
        fresh = subprocess.run([str(BIN / "banger"), *args], env=env, capture_output=True)
        slow = subprocess.run(
            [sys.executable, "-c", CLICK_ONLY, *args], env=env, capture_output=True
        )
        assert (fresh.returncode, fresh.stdout, fresh.stderr) == (0, slow.stdout, b"")
    assert loaded(os.environ, "--help") == HELP_MODULES


@pytest.mark.parametrize(
    "args",
    [
        ["vm", "show", "--help"],  # a command's own help: click renders it
        ["vm", "ls", "--help"],  # an alias: click prints the alias in its usage line
        ["--help", "vm"],
        ["--debug", "--help"],
        ["vm", "--bogus"],
        ["bogus", "--help"],
        ["version"],
        [],
    ],
)
def test_what_the_table_does_not_hold_is_left_to_click(table, args):
    assert fast.render([*ARGV0, *args], {}, table) is None


def test_a_program_not_called_banger_or_a_stale_table_is_left_to_click(table, monkeypatch):
    assert fast.render(["/usr/bin/bangr", "--help"], {}, table) is None
    assert fast.render(["/usr/bin/banger", "--help"], {}, table) is not None
    vm = next(path for path in table["SOURCES"] if path.endswith("/cli/vm.py"))
    stat = os.stat(vm)
    os.utime(vm, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    try:
        assert fast._table() is None  # a module edited since the table was made
        assert fast.render([*ARGV0, "--help"], {}) is None
    finally:
        os.utime(vm, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fast._table() is not None


# (line, cursor word for bash/zsh): what a shell sends on a tab at the end of the line.
LINES = [
    "banger ",
    "banger v",
    "banger vm ",
    "banger vm st",
    "banger vm snapshot ",
    "banger vm ls ",
    "banger image ",
    "banger vm show ",
    "banger vm show d",
    "banger vm show dev ",
    "banger vm delete dev w",
    "banger vm rm ",
    "banger vm start ",
    "banger vm ssh dev ",
    "banger vm port add d",
    "banger image show ",
    "banger image promote dev ",
    "banger vm create --image ",
    "banger vm create --image d",
    "banger vm create --name x --image ",
    "banger vm create --name x ",
    "banger vm create --name ",
    "banger vm delete --quiet d",
    "banger kernel delete ",
    "banger vm cp ",
    "banger version ",
    "banger completion ",  # SHELL is a choice: click's
    "banger vm create --",
    "banger --debug vm show ",
    "banger vm show 'de",
    "banger nosuch ",
    "banger vm show -- ",
]


def shell_env(shell: str, line: str, settings: Settings) -> dict[str, str]:
    words = line.split()
    incomplete = "" if line.endswith(" ") else words[-1]
    cword = len(words) if line.endswith(" ") else len(words) - 1
    return env_of(
        settings,
        _BANGER_COMPLETE=f"{shell}_complete",
        COMP_WORDS=line,
        COMP_CWORD=incomplete if shell == "fish" else str(cword),
    )


def click_complete(env: Mapping[str, str]) -> bytes:
    result = CliRunner().invoke(cli, [], prog_name="banger", env=dict(env))
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


@pytest.mark.parametrize("shell", fast.SHELLS)
def test_every_completion_is_clicks_in_every_shell(table, daemon, shell, monkeypatch):  # noqa: F811
    answered = 0
    for line in LINES:
        env = shell_env(shell, line, daemon)
        with monkeypatch.context() as patch:
            for name in [k for k in os.environ if k.startswith(("BANGER_", "XDG_", "COMP_"))]:
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            # bangerd's names are asked for with the settings of this environment.
            mine = fast.render(ARGV0, env, table)
            theirs = click_complete(env)
        if mine is not None:
            answered += 1
            assert mine == theirs, (shell, line)
    # The common cases are the fast path's; options, quotes and the unknown are click's.
    assert answered == len(LINES) - 6


def test_the_fast_path_leaves_what_it_cannot_parse_to_click(table, settings):
    for line in LINES[-6:]:
        assert fast.render(ARGV0, shell_env("bash", line, settings), table) is None, line
    base = shell_env("bash", "banger vm ", settings)
    for change in (
        {"_BANGER_COMPLETE": "powershell_complete"},
        {"_BANGER_COMPLETE": "bash_source"},
        {"COMP_CWORD": "two"},
        {"COMP_WORDS": "banger vm\x0bshow "},
    ):
        assert fast.render(ARGV0, base | change, table) is None, change
    del base["COMP_CWORD"]
    assert fast.render(ARGV0, base, table) is None


def test_no_daemon_a_name_completes_to_an_empty_answer(table, settings):
    for shell in fast.SHELLS:
        assert fast.render(ARGV0, shell_env(shell, "banger vm ssh ", settings), table) == b"\n"
    assert not settings.runtime_dir.exists()


LOADED = (
    "import sys\n"
    "sys.argv[0] = 'banger'\n"
    "from banger.cli.main import main\n"
    "main()\n"
    "mods = sorted(m for m in sys.modules if m.startswith(('banger', 'click', 'json')))\n"
    "print(' '.join(mods), file=sys.stderr)\n"
)
HELP_MODULES = [
    "banger",
    "banger.cli",
    "banger.cli._fasttable",
    "banger.cli.fast",
    "banger.cli.main",
]


def loaded(env: Mapping[str, str], *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", LOADED, *args], env=dict(env), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.split()


def test_a_tab_imports_no_click(table, daemon, tmp_path):  # noqa: F811
    command = shell_env("bash", "banger vm s", daemon)
    assert loaded(command) == HELP_MODULES
    # No daemon (no runtime directory): nothing to ask, so no json and no socket.
    nobody = Settings(home=tmp_path / "other", runtime_dir=tmp_path / "other-run")
    alone = loaded(shell_env("bash", "banger vm show d", nobody))
    assert sorted(set(alone) - set(HELP_MODULES)) == [
        "banger.cli.names",
        "banger.configvalues",
        "banger.errors",
        "banger.rundir",
        "banger.sockpath",
    ]
    # A VM name: one GET on bangerd's socket, found without banger.config.
    name = loaded(shell_env("bash", "banger vm show d", daemon))
    assert sorted(set(name) - set(HELP_MODULES)) == [
        "banger.api",
        "banger.api.transport",
        "banger.cli.names",
        "banger.configvalues",
        "banger.errors",
        "banger.rundir",
        "banger.sockpath",
        "json",
        "json.decoder",
        "json.encoder",
        "json.scanner",
    ]
    # The daemon's own settings (bridge, subnet) are read and checked, without banger.config.
    bridged = shell_env("bash", "banger vm show d", daemon) | {
        "BANGER_BRIDGE": "bgother0",
        "BANGER_SUBNET": "10.99.0.0/24",
    }
    assert loaded(bridged) == name


def test_a_reader_gone_before_the_help_is_a_quiet_exit_1_as_with_click(table):
    def closed_reader(*argv: str) -> tuple[int, bytes]:
        read, write = os.pipe()
        os.close(read)
        try:
            done = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(write)
        return done.returncode, done.stderr

    fast_path = closed_reader(str(BIN / "banger"), "vm", "--help")
    assert fast_path == closed_reader(sys.executable, "-c", CLICK_ONLY, "vm", "--help") == (1, b"")


@pytest.mark.parametrize("source", [None, "FINGERPRINT = (", "raise OSError('no')"])
def test_a_missing_or_damaged_table_leaves_everything_to_click(source, tmp_path, monkeypatch):
    if source is not None:
        (tmp_path / "damaged_fasttable.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fast, "TABLE_MODULE", "damaged_fasttable")
    assert fast._table() is None
    assert fast.render([*ARGV0, "--help"], {}) is None
