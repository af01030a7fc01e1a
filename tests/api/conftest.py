from collections.abc import Iterator

import httpx
import pytest

from tests.support import ServerProcess, cli


@pytest.fixture(scope="module")
def api_server(server: ServerProcess) -> ServerProcess:
    return server


@pytest.fixture(scope="module")
def admin_key(server: ServerProcess) -> str:
    return cli(server.data_dir, "apikey", "create", "--name", "admin-test", "--role", "admin")["key"]


@pytest.fixture(scope="module")
def read_key(server: ServerProcess) -> str:
    return cli(server.data_dir, "apikey", "create", "--name", "reader", "--role", "read")["key"]


@pytest.fixture
def api(server: ServerProcess, admin_key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10,
                      headers={"Authorization": f"Bearer {admin_key}"}) as client:
        yield client


@pytest.fixture
def anonymous(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10) as client:
        yield client
