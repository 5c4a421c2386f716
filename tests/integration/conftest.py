"""Real servers for the integration tests, on free loopback ports.

One Tansu broker and one SecantusDB server are shared by the whole session of each
pytest process (``make test`` runs two, with pytest-xdist; each test has its own
topic, group and database). Fault tests that kill a server start
their own with the ``own_kafka`` / ``own_mongo`` factories.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pipeline import STARTED, Pipeline
from tools.local_stack import SecantusServer, ServerProcess, TansuServer, free_port


@pytest.fixture(autouse=True)
def no_leftover_scripts() -> Iterator[None]:
    """A failed test must not leave producers or consumers running."""
    yield
    while STARTED:
        STARTED.pop().kill()


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def kafka_server(stack_dir: Path) -> Iterator[TansuServer]:
    server = TansuServer(free_port(), stack_dir).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def mongo_server(stack_dir: Path) -> Iterator[SecantusServer]:
    server = SecantusServer(free_port(), stack_dir / "mongo", stack_dir).start()
    yield server
    server.kill()


@pytest.fixture
def pipeline(kafka_server: TansuServer, mongo_server: SecantusServer, tmp_path: Path,
             request: pytest.FixtureRequest) -> Pipeline:
    return Pipeline.for_test(kafka_server.address, mongo_server.uri, tmp_path, request.node.name)


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Servers started by a test; all killed at its end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


@pytest.fixture
def own_kafka(own_servers: list[ServerProcess], tmp_path: Path):
    def start(**options: Any) -> TansuServer:
        server = TansuServer(free_port(), tmp_path / "servers", **options).start()
        own_servers.append(server)
        return server
    return start


@pytest.fixture
def own_mongo(own_servers: list[ServerProcess], tmp_path: Path):
    def start(**options: Any) -> SecantusServer:
        server = SecantusServer(free_port(), tmp_path / "servers" / "mongo", tmp_path / "servers", **options).start()
        own_servers.append(server)
        return server
    return start
