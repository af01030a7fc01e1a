from collections.abc import Iterator
from typing import Any

import pytest

from tests.hostile.common import provision
from tests.support import ServerProcess

# The property tests send hundreds of hostile requests naming one device, all from 127.0.0.1; with the
# default auth budgets (per device 1/s burst 20, per source address 5/s burst 100) most of them would be
# answered 40000 before the code under test runs. The rate limits themselves are tested elsewhere
# (tests/dialects/test_aliyun_faults.py); unknown settings are ignored, so this list may run ahead of src.
HOSTILE_ENV = {
    "THINGPORT_DEVICE_AUTH_RATE": "100000",
    "THINGPORT_DEVICE_AUTH_BURST": "100000",
    "THINGPORT_SOURCE_AUTH_RATE": "100000",
    "THINGPORT_SOURCE_AUTH_BURST": "100000",
    "THINGPORT_DEVICE_REPORT_RATE": "100000",
    "THINGPORT_DEVICE_REPORT_BURST": "100000",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server per hostile module (rate limits out of the way, everything else the embedded default)."""
    proc = ServerProcess(tmp_path_factory.mktemp("hostile") / "data", HOSTILE_ENV).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def bed(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return provision(server, tmp_path_factory.mktemp("bed"))
