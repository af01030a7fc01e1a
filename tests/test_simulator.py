"""`thingport simulate` against a real server: both dialects, registration, and its exit code."""

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ServerProcess, cli, stores_of
from thingport.settings import load_settings


def simulate(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "thingport", "simulate", "--endpoint", f"https://127.0.0.1:{server.port}",
         "--ca", str(server.cert), "--data-dir", str(server.data_dir), *args],
        capture_output=True, text=True, timeout=60, env=server.env,
    )


def figure(output: str, name: str) -> int:
    return int(re.search(rf"\| {name}\s+\| (\d+)", output).group(1))  # type: ignore[union-attr]


def stored_reports(data_dir: Path, dialect: str) -> int:
    with stores_of(load_settings(data_dir=data_dir)) as stores:
        return sum(
            1 for m in asyncio.run(stores.log.newest(100_000)) if m.kind == "property_post" and m.dialect == dialect
        )


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
    server = ServerProcess(
        tmp_path / "data", {"THINGPORT_DEVICE_REPORT_RATE": "1", "THINGPORT_DEVICE_REPORT_BURST": "1"}
    ).start()
    try:
        result = simulate(server, "--devices", "2", "--rate", "20", "--duration", "1.5")
        assert result.returncode == 1, result.stdout + result.stderr
        assert figure(result.stdout, "not acknowledged") > 0
        assert "40000" in result.stdout  # errors by code
    finally:
        server.stop()


# Every TSL data type, with the specs a generator must respect (a 5-character text, structs, arrays)
EVERY_TSL_TYPE = {
    "properties": [
        {"identifier": "i", "dataType": {"type": "int", "specs": {"min": "-3", "max": "3"}}},
        {"identifier": "f", "dataType": {"type": "float", "specs": {"min": "0.5", "max": "0.75"}}},
        {"identifier": "d", "dataType": {"type": "double", "specs": {"min": "-1", "max": "1"}}},
        {"identifier": "b", "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
        {"identifier": "e", "dataType": {"type": "enum", "specs": {"2": "two", "7": "seven"}}},
        {"identifier": "t", "dataType": {"type": "text", "specs": {"length": "5"}}},
        {"identifier": "at", "dataType": {"type": "date", "specs": {}}},
        {"identifier": "s", "dataType": {"type": "struct", "specs": [
            {"identifier": "x", "name": "x", "dataType": {"type": "int", "specs": {"min": "1", "max": "2"}}},
            {"identifier": "label", "name": "label", "dataType": {"type": "text", "specs": {"length": "3"}}},
        ]}},
        {"identifier": "a", "dataType": {"type": "array", "specs": {"size": "2", "item": {"type": "double"}}}},
        {"identifier": "as", "dataType": {"type": "array", "specs": {"size": "4", "item": {"type": "struct", "specs": [
            {"identifier": "on", "name": "on", "dataType": {"type": "bool", "specs": {}}},
        ]}}}},
    ],
}
EVERY_HUAWEI_TYPE = {
    "services": [
        {"service_id": "A", "properties": [
            {"property_name": "i", "data_type": "int", "min": "-3", "max": "3"},
            {"property_name": "l", "data_type": "long", "min": "0", "max": "9000000000"},
            {"property_name": "d", "data_type": "decimal", "min": "0.5", "max": "0.75"},
            {"property_name": "s", "data_type": "string", "max_length": 4},
            {"property_name": "e", "data_type": "enum", "enum_list": ["on", "off"]},
            {"property_name": "b", "data_type": "boolean"},
        ]},
        {"service_id": "B", "properties": [
            {"property_name": "at", "data_type": "DateTime"},
            {"property_name": "j", "data_type": "jsonObject"},
            {"property_name": "sl", "data_type": "string list", "max_length": 3},
        ]},
    ],
}


def test_generated_values_pass_the_models_own_check() -> None:
    from thingport.core.thingmodel import ThingModel
    from thingport.simulator import values_for

    tsl, huawei = ThingModel.from_tsl(EVERY_TSL_TYPE), ThingModel.from_huawei(EVERY_HUAWEI_TYPE)
    for _ in range(50):
        params = values_for(EVERY_TSL_TYPE, "tsl", "aliyun")()
        accepted, refused = tsl.validate_properties(params)
        assert not refused and set(accepted) == {p["identifier"] for p in EVERY_TSL_TYPE["properties"]}
        by_service = values_for(EVERY_HUAWEI_TYPE, "huawei", "huawei")()
        assert set(by_service) == {"A", "B"}
        for service_id, properties in by_service.items():
            assert huawei.validate_service_properties(service_id, properties)[1] == []
        flat = values_for(EVERY_HUAWEI_TYPE, "huawei", "aliyun")()  # the Alibaba dialect: one namespace
        assert set(flat) == {"i", "l", "d", "s", "e", "at", "j", "sl"}  # not the boolean (sent as 0/1 there)
        assert huawei.validate_properties(flat)[1] == []


def test_an_iotda_model_played_in_the_alibaba_dialect_is_stored_without_refusals(
    server: ServerProcess, tmp_path: Path
) -> None:
    model = tmp_path / "model.json"
    model.write_text(json.dumps(EVERY_HUAWEI_TYPE))
    result = simulate(server, "--devices", "2", "--rate", "10", "--duration", "1", "--model", str(model),
                      "--prefix", "hw-on-ali-")
    assert result.returncode == 0, result.stdout + result.stderr
    product = re.search(r"\| product\s+\| (\S+)", result.stdout).group(1)  # type: ignore[union-attr]
    with stores_of(load_settings(data_dir=server.data_dir)) as stores:
        posts = [m for m in asyncio.run(stores.log.query(product_key=product, limit=1000)) if m.kind == "property_post"]
    assert len(posts) == figure(result.stdout, "acknowledged") > 0
    assert {json.loads(m.reply)["code"] for m in posts} == {200}  # the model refused nothing  # type: ignore[arg-type]


def test_an_iotda_report_the_model_partly_refuses_is_counted_apart(server: ServerProcess, tmp_path: Path) -> None:
    product = cli(server.data_dir, "product", "create", "--name", "strict")["productKey"]
    narrow = {"services": [{"service_id": "A", "properties": [
        {"property_name": "i", "data_type": "int", "min": "0", "max": "1"},
        {"property_name": "ok", "data_type": "int", "min": "0", "max": "9"}]}]}
    model = tmp_path / "narrow.json"
    model.write_text(json.dumps(narrow))
    cli(server.data_dir, "product", "model", "import", "--product-key", product, str(model))
    wide = tmp_path / "wide.json"  # i is always out of the product's range
    wide.write_text(json.dumps({"services": [{"service_id": "A", "properties": [
        {"property_name": "i", "data_type": "int", "min": "50", "max": "100"},
        {"property_name": "ok", "data_type": "int", "min": "0", "max": "9"}]}]}))
    result = simulate(server, "--devices", "1", "--rate", "5", "--duration", "1", "--dialect", "huawei",
                      "--product-key", product, "--model", str(wide), "--prefix", "narrow-")
    assert result.returncode == 0, result.stdout + result.stderr  # stored, so acknowledged
    assert figure(result.stdout, "with refused properties") == figure(result.stdout, "acknowledged") > 0


def test_a_missing_product_is_an_error_line_not_a_traceback(server: ServerProcess) -> None:
    result = simulate(server, "--devices", "1", "--duration", "0.5", "--product-key", "noSuchProduct1")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
