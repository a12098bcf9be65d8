"""schemathesis against the daemon's own OpenAPI document: no 5xx, no hang, still serving.

The app is bangerd's (create_app over services wired as the daemon wires
them: a real SQLite store, real operations), with the VMM and the root
helper at their seams (the fakes of the unit tests), so a fuzzed create
makes real disks in a temporary home but boots nothing. Routes that would
reach the network for a fuzzed name (pulls) or end the daemon are left out.
Bounded: a few examples per route, no deadline (the first call builds
pydantic models).
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
import threading
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from banger.config import Settings, load_settings
from banger.daemon.app import create_app
from banger.daemon.services import wire
from banger.store import Database, Store
from banger.vmm.accel import AccelChoice
from tests.unit.fakes import FakeVmm, RecordingHelper

pytestmark = pytest.mark.reliability

# Pulls would resolve fuzzed registry names on the host's network; shutdown and
# reset end the daemon the fuzzer is talking to.
EXCLUDED = r"^/(images/pull|kernels/pull|daemon/|system/reset|reset)"


def _daemon() -> tuple[object, Settings]:
    """bangerd's app over its services, in a throwaway home (made when the module loads:
    schemathesis reads the schema while pytest collects)."""
    home = Path(tempfile.mkdtemp(prefix="banger-fuzz-"))
    atexit.register(shutil.rmtree, home, True)
    settings = load_settings(home=home)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    services = wire(
        settings,
        store=Store(Database(settings.db_path)),
        vmm=FakeVmm(),
        accel=AccelChoice("tcg", "test"),
        helper=RecordingHelper(),
        user_key=home / "id_ed25519",
        loop=loop,
    )
    return create_app(services, asyncio.Event()), settings


APP, SETTINGS = _daemon()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path_regex=EXCLUDED)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_route_answers_a_fuzzed_request_with_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(timeout=30)
    case.validate_response(response, checks=[not_a_server_error])


def test_the_daemon_still_serves_after_the_fuzzing() -> None:
    async def status() -> httpx.Response:
        transport = httpx.ASGITransport(app=APP)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/status")

    response = asyncio.run(status())
    assert response.status_code == 200
    assert response.json()["socket"] == str(SETTINGS.socket)
