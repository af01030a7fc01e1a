"""`thingport simulate` against a real server: both dialects, registration, and its exit code."""

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ServerProcess, cli, stores_of, wait_until
from thingport.settings import load_settings
from thingport.simulator import SEED_004_TSL

# seed 004's collector with events: one with parameters of every kind a chart or a panel shows, and the
# platform's own property-post event (never sent)
SEED_TSL_WITH_EVENTS = {**SEED_004_TSL, "events": [
    {"identifier": "overheat", "name": "Overheat", "type": "alert", "outputData": [
        {"identifier": "temperature", "dataType": {"type": "int", "specs": {"min": "-10", "max": "50"}}},
        {"identifier": "level", "dataType": {"type": "enum", "specs": {"1": "warning", "2": "critical"}}}]},
    {"identifier": "door", "name": "Door", "type": "info", "outputData": [
        {"identifier": "open", "dataType": {"type": "bool", "specs": {"0": "closed", "1": "open"}}},
        {"identifier": "at", "dataType": {"type": "date", "specs": {}}}]},
    {"identifier": "post", "method": "thing.event.property.post", "outputData": []},
]}
IOTDA_METER = {"services": [
    {"service_id": "meter", "properties": [
        {"property_name": "voltage", "data_type": "decimal", "min": "210", "max": "240", "step": "0.1"},
        {"property_name": "state", "data_type": "enum", "enum_list": ["idle", "charging", "fault"]},
        {"property_name": "relay", "data_type": "boolean"}]},
    {"service_id": "info", "properties": [
        {"property_name": "firmware", "data_type": "string", "max_length": 8},
        {"property_name": "seen", "data_type": "DateTime"}]},
]}


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


def product_with(server: ServerProcess, tmp_path: Path, name: str, model: dict) -> str:
    product = cli(server.data_dir, "product", "create", "--name", name)["productKey"]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(model))
    cli(server.data_dir, "product", "model", "import", "--product-key", product, str(path))
    return product


def stored_of(server: ServerProcess, product: str) -> list:
    """The product's property and event posts the server stored (not its devices' online status messages)."""
    with stores_of(load_settings(data_dir=server.data_dir)) as stores:
        messages = asyncio.run(stores.log.query(product_key=product, limit=1000))
    return [m for m in messages if m.kind in ("property_post", "event_post")]


def run_json(server: ServerProcess, *args: str) -> dict:
    result = simulate(server, "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_a_tsl_product_gets_its_own_properties_and_events_all_accepted(server: ServerProcess, tmp_path: Path) -> None:
    product = product_with(server, tmp_path, "collector", SEED_TSL_WITH_EVENTS)
    summary = run_json(server, "--product-key", product, "--devices", "4", "--rate", "40", "--duration", "2",
                       "--prefix", "own-")
    assert summary["refused"] == {"messages": 0, "properties": []} and summary["unchecked"] == 0
    assert summary["accepted"] == summary["sent"] >= 50 and summary["errors"]["messages"] == 0
    stored = stored_of(server, product)
    assert len(stored) == summary["sent"]
    assert {json.loads(m.reply)["code"] for m in stored} == {200}  # type: ignore[arg-type]
    events = [json.loads(m.payload) for m in stored if m.kind == "event_post"]
    assert len(events) == summary["events"] > 0  # one in ten messages of each device, from the fifth
    assert {e["method"] for e in events} <= {"thing.event.overheat.post", "thing.event.door.post"}
    for post in (json.loads(m.payload)["params"] for m in stored if m.kind == "property_post"):
        assert set(post) == {"temperature", "humidity"}
        assert -10 <= post["temperature"] <= 50 and 1 <= post["humidity"] <= 100


def test_an_iotda_product_gets_its_own_services_all_accepted(server: ServerProcess, tmp_path: Path) -> None:
    product = product_with(server, tmp_path, "meter", IOTDA_METER)
    summary = run_json(server, "--product-key", product, "--dialect", "huawei", "--devices", "3", "--rate", "30",
                       "--duration", "1.5", "--prefix", "meter-")
    assert summary["accepted"] == summary["sent"] > 20 and summary["refused"]["messages"] == 0
    assert summary["events"] == 0  # the IoTDA dialect has no event post
    stored = stored_of(server, product)
    assert len(stored) == summary["sent"]
    for report in (json.loads(m.payload) for m in stored):
        services = {s["service_id"]: s["properties"] for s in report["services"]}
        assert 210 <= services["meter"]["voltage"] <= 240 and services["meter"]["relay"] in (True, False)
        assert services["meter"]["state"] in ("idle", "charging", "fault")


def test_the_json_summary_adds_up(server: ServerProcess) -> None:
    summary = run_json(server, "--devices", "2", "--rate", "20", "--duration", "1", "--prefix", "json-")
    assert set(summary) == {"productKey", "dialect", "devices", "sent", "events", "accepted", "refused", "unchecked",
                            "errors", "rate", "requestedRate", "duration", "latencyMs"}
    assert summary["dialect"] == "aliyun" and summary["devices"] == 2 and summary["requestedRate"] == 20
    assert summary["sent"] == (summary["accepted"] + summary["refused"]["messages"] + summary["unchecked"]
                               + summary["errors"]["messages"])
    assert summary["errors"] == {"messages": 0, "codes": []}
    assert 1 <= summary["duration"] < 10 and summary["rate"] > 0 and set(summary["latencyMs"]) == {"p50", "p99"}


def test_alibaba_refusals_are_counted_from_the_stored_replies(server: ServerProcess, tmp_path: Path) -> None:
    product = product_with(server, tmp_path, "narrowali", {"properties": [
        {"identifier": "i", "dataType": {"type": "int", "specs": {"min": "0", "max": "1"}}}]})
    wide = tmp_path / "wide-tsl.json"  # i is always out of the product's range
    wide.write_text(json.dumps({"properties": [
        {"identifier": "i", "dataType": {"type": "int", "specs": {"min": "50", "max": "100"}}}]}))
    summary = run_json(server, "--product-key", product, "--model", str(wide), "--devices", "1", "--rate", "5",
                       "--duration", "1", "--prefix", "narrow-ali-")
    assert summary["refused"]["messages"] == summary["sent"] > 0 and summary["accepted"] == 0
    [row] = summary["refused"]["properties"]
    assert row["identifier"] == "i" and row["code"] == 6306 and row["count"] == summary["sent"]
    assert "above max 1" in row["reason"]


def test_through_the_api_the_own_model_is_played_and_refusals_read_back(server: ServerProcess, tmp_path: Path) -> None:
    key = cli(server.data_dir, "apikey", "create", "--name", "simulator", "--role", "admin")["key"]
    api = ("--api", f"http://127.0.0.1:{server.api_port}", "--api-key", key)
    product = product_with(server, tmp_path, "viaapi", SEED_TSL_WITH_EVENTS)
    own = run_json(server, *api, "--product-key", product, "--devices", "1", "--rate", "20", "--duration", "2",
                   "--prefix", "api-")  # ~40 messages: an event in ten, from the fifth
    assert own["accepted"] == own["sent"] > 0 and own["events"] > 0 and own["refused"]["messages"] == 0
    hot = tmp_path / "hot.json"  # temperature 60..90: above the product's max 50 every time
    hot.write_text(json.dumps({"properties": [
        {"identifier": "temperature", "dataType": {"type": "int", "specs": {"min": "60", "max": "90"}}}]}))
    forced = run_json(server, *api, "--product-key", product, "--model", str(hot), "--devices", "1", "--rate", "20",
                      "--duration", "1", "--prefix", "api-")
    assert forced["refused"]["messages"] == forced["sent"] > 0 and forced["unchecked"] == 0
    assert [(r["identifier"], r["code"]) for r in forced["refused"]["properties"]] == [("temperature", 6306)]


def test_a_model_changed_under_the_fleet_is_counted_honestly(server: ServerProcess, tmp_path: Path) -> None:
    product = product_with(server, tmp_path, "changing", SEED_004_TSL)
    proc = subprocess.Popen(
        [sys.executable, "-m", "thingport", "simulate", "--endpoint", f"https://127.0.0.1:{server.port}",
         "--ca", str(server.cert), "--data-dir", str(server.data_dir), "--json", "--product-key", product,
         "--devices", "2", "--rate", "20", "--duration", "6", "--prefix", "changing-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env,
    )
    try:
        wait_until(lambda: len(stored_of(server, product)) >= 10, "the fleet reporting", timeout=20)
        cold = tmp_path / "cold.json"  # temperature may now be at most -20: every report refuses it
        cold.write_text(json.dumps({"properties": [
            SEED_004_TSL["properties"][1],
            {"identifier": "temperature", "dataType": {"type": "int", "specs": {"min": "-40", "max": "-20"}}}]}))
        cli(server.data_dir, "product", "model", "import", "--product-key", product, str(cold))
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    summary = json.loads(out)
    refused = sum(json.loads(m.reply)["code"] != 200 for m in stored_of(server, product))  # type: ignore[arg-type]
    assert 0 < summary["refused"]["messages"] == refused < summary["sent"]
    assert summary["accepted"] == summary["sent"] - refused
    assert [(r["identifier"], r["code"]) for r in summary["refused"]["properties"]] == [("temperature", 6306)]
