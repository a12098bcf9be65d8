"""The guest agent's host side: boot decisions on image trees, injection, config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from banger.errors import HostError
from banger.guest import agent, proto


def make_tree(root: Path, files: dict[str, str] | None = None) -> Path:
    (root / "etc").mkdir(parents=True)
    for rel, content in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            path.symlink_to(content[2:])
        else:
            path.write_text(content)
            path.chmod(0o755)
    return root


def fake_bundle(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "bin" / "busybox").write_bytes(b"\x7fELF fake")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / agent.BUNDLE_MANIFEST).write_text('{"format": 1}\n')
    return root


SYSTEMD = {"lib/systemd/systemd": "#!", "sbin/init": "->/lib/systemd/systemd"}


def test_an_image_without_init_gets_the_agent_as_pid_1(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {"bin/sh": "#!"})
    plan = agent.boot_plan(tree)
    assert (plan.mode, plan.image_init, plan.has_sshd) == ("init", None, False)
    assert agent.agent_init(tree) == "/.banger/agent"
    assert agent.needs_agent_init(tree)


def test_an_init_without_ssh_server_gets_a_sidecar(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", SYSTEMD)
    plan = agent.boot_plan(tree)
    assert (plan.mode, plan.image_init) == ("sidecar", "/sbin/init")
    assert plan.init == agent.AGENT_PATH


SSHD = {
    **SYSTEMD,
    "usr/sbin/sshd": "#!",
    "etc/systemd/system/multi-user.target.wants/ssh.service": "->/lib/systemd/ssh",
}


def test_an_init_with_an_enabled_sshd_boots_through_the_channel_only(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", SSHD)
    plan = agent.boot_plan(tree)
    assert (plan.mode, plan.has_sshd, plan.channel) == ("channel", True, 1)
    assert agent.agent_init(tree) == agent.AGENT_PATH
    assert "BANGER_AGENT_MODE=channel\n" in agent.agent_conf(plan)


def test_without_banger_agent_an_sshd_image_boots_on_its_own(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", SSHD)
    plan = agent.inject_agent(tree, fake_bundle(tmp_path / "b"), agent.AgentConfig())
    assert (plan.mode, plan.init, plan.channel) == ("none", None, 0)
    record = json.loads((tree / ".banger" / "image.json").read_text())
    assert record["channel"] == 0


def test_a_bundle_with_banger_agent_records_the_channel_version(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", SSHD)
    bundle = fake_bundle(tmp_path / "b")
    (bundle / "bin" / "banger-agent").write_bytes(b"\x7fELF fake")
    plan = agent.inject_agent(tree, bundle, agent.AgentConfig())
    assert (plan.mode, plan.init, plan.channel) == ("channel", agent.AGENT_PATH, 1)
    record = json.loads((tree / ".banger" / "image.json").read_text())
    assert record["channel"] == 1
    assert (tree / ".banger" / "bin" / "banger-agent").is_file()


def test_an_installed_but_disabled_sshd_does_not_count(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {**SYSTEMD, "usr/sbin/sshd": "#!"})
    assert agent.boot_plan(tree).mode == "sidecar"


def test_sysvinit_and_openrc_ssh_links_count(tmp_path: Path) -> None:
    sysv = make_tree(
        tmp_path / "sysv",
        {"sbin/init": "#!", "usr/sbin/sshd": "#!", "etc/rc2.d/S01ssh": "->../init.d/ssh"},
    )
    openrc = make_tree(
        tmp_path / "openrc",
        {"sbin/init": "#!", "usr/sbin/sshd": "#!", "etc/runlevels/default/sshd": "->/x"},
    )
    assert agent.boot_plan(sysv).mode == "channel"
    assert agent.boot_plan(openrc).mode == "channel"


def test_busybox_init_needs_an_inittab_to_count(tmp_path: Path) -> None:
    files = {"bin/busybox": "BusyBox v1.36", "sbin/init": "->../bin/busybox"}
    bare = make_tree(tmp_path / "bare", files)
    with_tab = make_tree(tmp_path / "tab", {**files, "etc/inittab": "::sysinit:/bin/true\n"})
    assert agent.boot_plan(bare).mode == "init"
    assert agent.boot_plan(with_tab).mode == "sidecar"


def test_a_non_executable_or_dangling_init_is_no_init(tmp_path: Path) -> None:
    dangling = make_tree(tmp_path / "d", {"sbin/init": "->/lib/systemd/systemd"})
    plain = make_tree(tmp_path / "p", {"sbin/init": "#!"})
    (plain / "sbin" / "init").chmod(0o644)
    assert agent.image_init(dangling) is None
    assert agent.image_init(plain) is None


def test_symlinks_never_lead_out_of_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "host-init"
    outside.write_text("#!")
    outside.chmod(0o755)
    tree = make_tree(tmp_path / "t", {"sbin/init": f"->../../../../{outside}"})
    assert agent.resolve_in_tree(tree, "sbin/init") is None
    absolute = make_tree(tmp_path / "a", {"sbin/init": f"->{outside}"})
    assert agent.image_init(absolute) is None
    loop = make_tree(tmp_path / "l", {"sbin/init": "->/sbin/init"})
    assert agent.resolve_in_tree(loop, "sbin/init") is None


def test_ssh_detection_never_reads_host_directories(tmp_path: Path) -> None:
    host = tmp_path / "host-systemd"
    (host / "multi-user.target.wants").mkdir(parents=True)
    (host / "multi-user.target.wants" / "ssh.service").write_text("")
    (tmp_path / "host-inittab").write_text("::respawn:/usr/sbin/sshd -D\n")
    tree = make_tree(
        tmp_path / "t",
        {
            **SYSTEMD,
            "usr/sbin/sshd": "#!",
            "etc/systemd/system": f"->{host}",
            "etc/inittab": f"->{tmp_path / 'host-inittab'}",
        },
    )
    assert agent.boot_plan(tree).mode == "sidecar"


def test_resolve_follows_relative_and_absolute_links_inside(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {**SYSTEMD, "usr/bin/x": "#!", "bin": "->usr/bin"})
    assert agent.resolve_in_tree(tree, "/sbin/init") == tree / "lib/systemd/systemd"
    assert agent.resolve_in_tree(tree, "bin/x") == tree / "usr/bin/x"
    assert agent.resolve_in_tree(tree, "../../bin/x") == tree / "usr/bin/x"


def test_config_from_an_oci_image_config() -> None:
    blob = {
        "architecture": "amd64",
        "config": {
            "Entrypoint": ["/docker-entrypoint.sh"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Env": ["PATH=/usr/local/sbin:/usr/bin", "NGINX_VERSION=1.25"],
            "WorkingDir": "/srv",
            "User": "101",
        },
    }
    config = agent.AgentConfig.from_oci(blob)
    assert config.entrypoint == ("/docker-entrypoint.sh",)
    assert config.cmd == ("nginx", "-g", "daemon off;")
    assert config.env[1] == "NGINX_VERSION=1.25"
    assert (config.workdir, config.user) == ("/srv", "101")
    assert agent.AgentConfig.from_oci(blob["config"]) == config


def test_config_tolerates_missing_and_odd_fields() -> None:
    assert agent.AgentConfig.from_oci(None) == agent.AgentConfig()
    odd = agent.AgentConfig.from_oci({"config": {"Cmd": "bash", "Env": None, "WorkingDir": 3}})
    assert odd == agent.AgentConfig()


def test_inject_writes_everything_under_one_directory(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t", {"bin/sh": "#!", "etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
    before = sorted(p.relative_to(tree) for p in tree.rglob("*"))
    config = agent.AgentConfig(cmd=("bash",), env=("PATH=/bin",))
    plan = agent.inject_agent(tree, fake_bundle(tmp_path / "b"), config)
    assert plan.mode == "init"
    after = sorted(p.relative_to(tree) for p in tree.rglob("*"))
    assert [p for p in after if p.parts[0] != ".banger"] == before
    injected = tree / ".banger"
    assert (injected / "agent").read_bytes() == agent.agent_script()
    assert os.access(injected / "agent", os.X_OK)
    assert os.readlink(injected / "bin" / "sh") == "busybox"
    assert "BANGER_AGENT_MODE=init\n" in (injected / "agent.conf").read_text()
    record = json.loads((injected / "image.json").read_text())
    assert record["image"]["cmd"] == ["bash"]
    assert record["agent"] == {"mode": "init", "image_init": None, "has_sshd": False}


def test_inject_records_which_agent_build_the_image_carries(tmp_path: Path) -> None:
    """The bundle's manifest names the agent's source key; the image keeps it, so a
    later banger can tell the image's agent is not its own."""
    tree = make_tree(tmp_path / "t", {"bin/sh": "#!"})
    bundled = fake_bundle(tmp_path / "b")
    (bundled / agent.AGENT_BINARY_IN_BUNDLE).write_bytes(b"\x7fELF agent")
    (bundled / agent.BUNDLE_MANIFEST).write_text('{"format": 4, "agent": "0123abcd"}')
    plan = agent.inject_agent(tree, bundled, agent.AgentConfig())
    assert (plan.channel, plan.agent_build) == (proto.VERSION_MAX, "0123abcd")
    assert json.loads((tree / ".banger" / "image.json").read_text())["agent_build"] == "0123abcd"
    # Without banger-agent there is no build to speak of.
    bare = agent.inject_agent(make_tree(tmp_path / "u", {"bin/sh": "#!"}), fake_bundle(
        tmp_path / "c"), agent.AgentConfig())  # fmt: skip
    assert (bare.channel, bare.agent_build) == (0, "")


def test_inject_replaces_what_the_image_had_at_dot_banger(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("host file")
    tree = make_tree(tmp_path / "t", SYSTEMD)
    (tree / ".banger").symlink_to(victim)
    bundle = fake_bundle(tmp_path / "b")
    plan = agent.inject_agent(tree, bundle, agent.AgentConfig())
    assert not (tree / ".banger").is_symlink()
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]
    assert "BANGER_AGENT_MODE=sidecar" in (tree / ".banger" / "agent.conf").read_text()
    assert plan.image_init == "/sbin/init"
    # A second injection (a rebuilt image) starts from a clean directory.
    (tree / ".banger" / "stale").write_text("x")
    agent.inject_agent(tree, bundle, agent.AgentConfig())
    assert not (tree / ".banger" / "stale").exists()


def test_inject_refuses_something_that_is_not_a_bundle(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    (tmp_path / "nb").mkdir()
    with pytest.raises(HostError, match="not a guest agent bundle"):
        agent.inject_agent(tree, tmp_path / "nb", agent.AgentConfig())
    assert not (tree / ".banger").exists()


def test_agent_conf_quotes_the_init_path() -> None:
    plan = agent.BootPlan("sidecar", "/sbin/in it'x", False)
    conf = agent.agent_conf(plan)
    result = subprocess.run(
        ["sh", "-c", f'{conf}\nprintf %s "$BANGER_IMAGE_INIT"'], capture_output=True, text=True
    )
    assert result.stdout == "/sbin/in it'x"


def test_agent_script_parses_and_agrees_with_the_host_side() -> None:
    script = agent.agent_script().decode()
    assert script.startswith(f"#!/{agent.AGENT_DIR}/bin/sh\n")
    assert f"AGENT=/{agent.AGENT_DIR}\n" in script
    assert f'"$AGENT/{agent.AGENT_CONF}"' in script
    assert 'say "ready"' in script and agent.READY_LINE == "banger-agent: ready"
    assert f"AGENT_VSOCK_PORT={proto.AGENT_VSOCK_PORT}\n" in script
    assert f'"$AGENT/{agent.AGENT_BINARY_IN_BUNDLE}" --serial auto --vsock' in script
    assert "init | sidecar | channel)" in script
    assert "HOST_KEY=/etc/ssh/ssh_host_ed25519_key\n" in script
    assert agent.POWEROFF_COMMAND == "/.banger/agent poweroff"
    assert 'if [ "$1" = poweroff ]; then' in script
    for shell in ("sh", "busybox"):
        if shutil.which(shell):
            argv = [shell, "-n"] if shell == "sh" else [shell, "sh", "-n"]
            result = subprocess.run(argv, input=script.encode(), capture_output=True)
            assert result.returncode == 0, result.stderr
