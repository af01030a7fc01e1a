"""`thingport simulate` against a real server: both dialects, registration, and its exit code."""

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ServerProcess, cli
from thingport.settings import load_settings
from thingport.stores import open_stores


def simulate(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "thingport", "simulate", "--endpoint", f"https://127.0.0.1:{server.port}",
         "--ca", str(server.cert), "--data-dir", str(server.data_dir), *args],
        capture_output=True, text=True, timeout=60, env=server.env,
    )


def figure(output: str, name: str) -> int:
    return int(re.search(rf"\| {name}\s+\| (\d+)", output).group(1))  # type: ignore[union-attr]


def stored_reports(data_dir: Path, dialect: str) -> int:
    stores = open_stores(load_settings(data_dir=data_dir))
    try:
        return sum(1 for m in asyncio.run(stores.log.newest(100_000)) if m.kind == "property_post" and m.dialect == dialect)
    finally:
        stores.close()


@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
def test_fleet_reports_are_all_acknowledged_and_stored(server: ServerProcess, dialect: str) -> None:
    before = stored_reports(server.data_dir, dialect)
    result = simulate(server, "--devices", "8", "--rate", "40", "--duration", "2", "--dialect", dialect,
                      "--prefix", f"{dialect}-")
    assert result.returncode == 0, result.stdout + result.stderr
    sent, acked = figure(result.stdout, "sent"), figure(result.stdout, "acknowledged")
    assert sent == acked and 50 <= acked <= 100, result.stdout
    assert "p99" in result.stderr  # the live progress line
    assert stored_reports(server.data_dir, dialect) - before == acked
    product = re.search(r"\| product\s+\| (\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    devices_before = len(cli(server.data_dir, "device", "list", "--product-key", product))
    again = simulate(server, "--devices", "8", "--rate", "40", "--duration", "0.5", "--dialect", dialect,
                     "--prefix", f"{dialect}-", "--product-key", product)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(cli(server.data_dir, "device", "list", "--product-key", product)) == devices_before == 8  # reused


def test_unacknowledged_reports_make_the_exit_code_non_zero(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", {"THINGPORT_DEVICE_REPORT_RATE": "1", "THINGPORT_DEVICE_REPORT_BURST": "1"}).start()
    try:
        result = simulate(server, "--devices", "2", "--rate", "20", "--duration", "1.5")
        assert result.returncode == 1, result.stdout + result.stderr
        assert figure(result.stdout, "not acknowledged") > 0
        assert "40000" in result.stdout  # errors by code
    finally:
        server.stop()
