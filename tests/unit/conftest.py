"""Fixtures shared by the unit tests: banger-agent built once and run on the host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_driver import AgentClient, build_agent, go_missing, running_agent


@pytest.fixture(scope="session")
def agent_binary() -> Path:
    if go_missing():
        pytest.skip("go is not installed (apt-get install golang-go)")
    return build_agent()


@pytest.fixture
def agent_socket(agent_binary: Path, tmp_path: Path) -> Iterator[Path]:
    with running_agent(agent_binary, tmp_path) as sock:
        yield sock


@pytest.fixture
def agent(agent_socket: Path) -> Iterator[AgentClient]:
    """A client that has synced and said HELLO to a fresh agent."""
    client = AgentClient(agent_socket)
    client.start()
    yield client
    client.close()
