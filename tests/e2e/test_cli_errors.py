"""Bad input through the real CLI and daemon: one line, a hint, nothing left behind."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import BIN, Banger

pytestmark = pytest.mark.e2e


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("error: "), result.stderr
    assert lines[-1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_unknown_image(banger: Banger):
    assert_clean_error(banger.run("vm", "create", "--image", "nope"), "no image named 'nope'")
    assert banger.json("vm", "list") == []


def test_unknown_vm(banger: Banger):
    assert_clean_error(banger.run("vm", "show", "ghost"), "no VM named 'ghost'")
    assert_clean_error(banger.run("vm", "delete", "ghost"), "no VM named 'ghost'")
    assert_clean_error(banger.run("vm", "ssh", "ghost", "--", "true"), "no VM named 'ghost'")


def test_invalid_name_and_size(banger: Banger):
    assert_clean_error(banger.run("vm", "create", "--name", "Bad_Name"), "not a valid VM name")
    assert_clean_error(
        banger.run("vm", "create", "--system-overlay-size", "lots"), "--system-overlay-size"
    )
    assert banger.json("vm", "list") == []


def test_name_collision(banger: Banger):
    banger.create("e2e-twin")
    assert_clean_error(banger.run("vm", "create", "--name", "e2e-twin"), "already exists")
    assert [vm["name"] for vm in banger.json("vm", "list")] == ["e2e-twin"]  # type: ignore[union-attr]


def test_unknown_catalog_entries_and_bad_references(banger: Banger):
    # Not in the catalog, so an OCI reference: unreachable here, unknown elsewhere.
    assert_clean_error(banger.run("image", "pull", "nope"))
    assert_clean_error(banger.run("kernel", "pull", "nope"))
    assert_clean_error(banger.run("kernel", "import", "k2", "/nonexistent"), "not an existing")
    assert_clean_error(banger.run("image", "pull", "Not A Ref"), "invalid image reference")
    assert_clean_error(banger.run("image", "delete", "ghost"), "no image named 'ghost'")
    assert_clean_error(banger.run("kernel", "delete", "ghost"), "no kernel named 'ghost'")


def test_openapi_over_the_socket(banger_env: Banger):
    banger_env.run("daemon", "start", check=True)
    status = banger_env.json("daemon", "status")
    assert {"socket", "pid", "version"} <= set(status)  # type: ignore[arg-type]
    out = subprocess.run(
        ["curl", "-sf", "--unix-socket", status["socket"], "http://localhost/openapi.json"],  # type: ignore[index]
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"/vms"' in out and '"/operations/{op_id}/events"' in out


def test_daemon_not_running_is_reported_not_started(banger_env: Banger, tmp_path):
    env = {**banger_env.env, "BANGER_RUNTIME_DIR": str(tmp_path / "elsewhere")}
    status = subprocess.run(
        [str(BIN / "banger"), "daemon", "status"], env=env, capture_output=True, text=True
    )
    assert status.returncode == 1
    assert "not running" in status.stdout
