from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess, cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One running server per test module, on the embedded default."""
    proc = ServerProcess(tmp_path_factory.mktemp("srv") / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


_counter = iter(range(1, 10**9))


@pytest.fixture
def device(server: ServerProcess) -> dict:
    """A fresh product and device on the module's server (pk, dn, secret)."""
    n = next(_counter)
    product = cli(server.data_dir, "product", "create", "--name", f"p{n}")
    return cli(server.data_dir, "device", "create", "--product-key", product["productKey"], "--name", f"dev-{n:04d}")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> dict:
    """The settings that choose a storage engine: a test that takes it runs on both."""
    if request.param == "sqlite":
        return {}
    from tests.postgres import fresh_database

    return {"database_url": fresh_database()}
