"""The daemon's HTTP surface, in process: shapes of answers and errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from banger.daemon.app import create_app
from banger.daemon.services import wire
from banger.store import Database, Store
from banger.vmm.accel import AccelChoice
from banger.vmm.base import VmmConfig
from tests.unit.fakes import FakeVmm, RecordingHelper


class NoVmm(FakeVmm):
    def launch(self, config: VmmConfig) -> int:
        raise AssertionError("not in these tests")


@pytest.fixture
def api(settings, tmp_path):
    store = Store(Database(settings.db_path))

    async def call(method: str, path: str, **kw) -> httpx.Response:
        services = wire(
            settings,
            store=store,
            vmm=NoVmm(),
            accel=AccelChoice("tcg", "test"),
            helper=RecordingHelper(),
            user_key=tmp_path / "id_ed25519",
            loop=asyncio.get_running_loop(),
        )
        app = create_app(services, asyncio.Event())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path, **kw)

    return lambda method, path, **kw: asyncio.run(call(method, path, **kw))


def test_status_names_socket_pid_and_version(api, settings):
    body = api("GET", "/status").json()
    assert body["socket"] == str(settings.socket)
    assert body["version"] and body["pid"] > 0


def test_not_found_is_code_message_hint(api):
    resp = api("GET", "/vms/ghost")
    assert resp.status_code == 404
    body = resp.json()
    assert body["code"] == "not_found"
    assert body["message"] == "no VM named 'ghost'"
    assert body["hint"]


def test_malformed_request_is_invalid(api):
    resp = api("POST", "/vms", json={"vcpus": 0})
    assert resp.status_code == 400
    assert resp.json()["code"] == "invalid"
    assert "vcpus" in resp.json()["message"]


def test_create_with_unknown_image_fails_before_any_operation(api):
    resp = api("POST", "/vms", json={"name": "dev", "image": "nope"})
    assert resp.status_code == 404
    assert api("GET", "/operations").json() == []


def test_openapi_lists_the_api(api):
    paths = api("GET", "/openapi.json").json()["paths"]
    assert {
        "/vms",
        "/vms/{name}",
        "/images/pull",
        "/kernels/pull",
        "/operations/{op_id}/events",
    } <= set(paths)


def test_create_on_a_host_without_the_vmm_fails_before_any_operation(api, monkeypatch):
    from banger.errors import HostError

    def missing() -> None:
        raise HostError("qemu-system-x86_64 is not installed", hint="install QEMU")

    monkeypatch.setattr(NoVmm, "check_host", staticmethod(missing))
    resp = api("POST", "/vms", json={"name": "dev"})
    assert resp.status_code == 500
    assert resp.json() == {
        "code": "host",
        "message": "qemu-system-x86_64 is not installed",
        "hint": "install QEMU",
    }
    assert api("GET", "/operations").json() == []


def test_every_route_declares_the_model_it_answers(api):
    """Typed wire: no route answers an undeclared dict; only the two streams are raw."""
    streams = {"/vms/{name}/logs", "/operations/{op_id}/events"}
    untyped = []
    for path, methods in api("GET", "/openapi.json").json()["paths"].items():
        for method, spec in methods.items():
            ok = next(v for k, v in spec["responses"].items() if k.startswith("2"))
            schema = ok.get("content", {}).get("application/json", {}).get("schema", {})
            named = "$ref" in schema or "$ref" in schema.get("items", {})
            if not named and path not in streams:
                untyped.append(f"{method.upper()} {path}")
    assert untyped == []


def test_catalogs_are_served_not_taken_for_names(api):
    images = api("GET", "/images/catalog").json()
    assert {"name", "description"} == set(images[0])
    assert any(e["name"] == "debian-bookworm" for e in images)
    assert api("GET", "/kernels/catalog").json()[0]["name"] == "debian-bookworm-cloud"


def test_a_workspace_is_recorded_and_read_back_with_its_hint_when_missing(api, settings):
    from banger.api.models import Image, Kernel
    from banger.net.leases import lease
    from tests.unit.test_store import GATEWAY, NET, draft

    store = Store(Database(settings.db_path))
    store.add_kernel(Kernel(name="k", version="1", dir="/k", vmlinuz="v", initrd="i",
                            source="s", created_at="t"))  # fmt: skip
    store.add_image(Image(name="debian-bookworm", kernel="k", rootfs="/r", size_bytes=1,
                          source="s", created_at="t"))  # fmt: skip
    lease(draft("dev"), store, NET, [GATEWAY])
    missing = api("GET", "/vms/dev/workspace")
    assert missing.status_code == 404
    assert "banger vm workspace prepare dev PATH" in missing.json()["hint"]
    body = {"host_path": "/src/app", "guest_path": "/root/app", "base_commit": "a" * 40,
            "tree": "b" * 40, "mode": "shallow", "branch": "main"}  # fmt: skip
    saved = api("PUT", "/vms/dev/workspace", json=body)
    assert saved.status_code == 200, saved.text
    got = api("GET", "/vms/dev/workspace").json()
    assert got["vm"] == "dev" and got["base_commit"] == "a" * 40 and got["prepared_at"]
    bad = api("PUT", "/vms/dev/workspace", json={**body, "mode": "sideways"})
    assert bad.status_code == 400


def test_images_say_when_their_agent_is_not_this_bangers(api, settings):
    """An image made by an earlier banger (another agent build, or none recorded) is
    outdated; one made with today's agent is not; a registered disk never had one."""
    from banger.api.models import Image, Kernel
    from banger.guest import agentbin

    store = Store(Database(settings.db_path))
    store.add_kernel(Kernel(name="k", version="1", dir="/k", vmlinuz="v", initrd="i",
                            source="s", created_at="t"))  # fmt: skip
    made = {"kernel": "k", "rootfs": "/r", "size_bytes": 1, "created_at": "2026-12-01T00:00:00"}
    store.add_image(Image(name="old", source="catalog:debian-bookworm", **made))
    store.add_image(
        Image(
            name="new",
            source="catalog:debian-bookworm",
            config={"agent": "sidecar", "agent_build": agentbin.source_key()},
            **made,
        )
    )
    store.add_image(Image(name="disk", source="file:/r", **made))
    listed = {i["name"]: i["agent_outdated"] for i in api("GET", "/images").json()}
    assert listed == {"old": True, "new": False, "disk": False}
    assert api("GET", "/images/old").json()["agent_outdated"] is True
