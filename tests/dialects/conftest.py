from collections.abc import Iterator

import pytest

from tests.support import ServerProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One running server per test module and storage engine: the whole protocol conformance suite runs
    on the embedded default and on PostgreSQL."""
    database_url = None
    if request.param == "postgresql":
        from tests.postgres import fresh_database

        database_url = fresh_database()
    proc = ServerProcess(tmp_path_factory.mktemp("srv") / "data", database_url=database_url).start()
    try:
        yield proc
    finally:
        proc.stop()
