"""The OpenSSH command line banger hands the terminal to."""

from __future__ import annotations

from banger.api.shapes import SshTarget
from banger.api.ssh import looks_like_a_shell_line, ssh_argv

TARGET = SshTarget(
    host="10.77.0.2",
    identity_file="/k/id_ed25519",
    known_hosts_file="/v/known_hosts",
    host_key_alias="banger-v1",
)


def test_options_end_before_the_host_and_no_user_config_applies():
    argv = ssh_argv(TARGET, ["--debug", "-x", "true"])
    host = argv.index("root@10.77.0.2")
    assert argv[host - 1] == "--"
    assert argv[argv.index("-F") + 1] == "/dev/null"
    assert argv.index("-F") < host
    # Everything after the host is the remote command, one quoted line.
    assert argv[host + 1 :] == ["--debug -x true"]


def test_each_argument_reaches_the_guest_as_typed():
    argv = ssh_argv(TARGET, ["printf", "%s|", "two words", "$HOME", "a;b"])
    assert argv[-1] == "printf '%s|' 'two words' '$HOME' 'a;b'"


def test_a_shell_line_in_one_argument_is_recognised():
    assert looks_like_a_shell_line(["which git; echo x"])
    assert looks_like_a_shell_line(["ls -la"])
    assert not looks_like_a_shell_line(["ls", "-la"])
    assert not looks_like_a_shell_line(["uptime"])
    assert not looks_like_a_shell_line([])
