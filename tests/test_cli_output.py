"""What the CLI shows people: tables with readable UTC times, values with their model labels and units, and a
clear error for a property that does not exist (``--json`` keeps the documents for programs)."""

import json
from pathlib import Path

from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main
from thingport.cli_output import iso, render, table
from thingport.core.presentation import Presentation, presentations, show

TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "placeholder"},
    "properties": [
        {"identifier": "temperature", "name": "t", "accessMode": "r", "required": False,
         "dataType": {"type": "double", "specs": {"min": "-40", "max": "120", "unit": "°C"}}},
        {"identifier": "mode", "name": "m", "accessMode": "rw", "required": False,
         "dataType": {"type": "enum", "specs": {"0": "idle", "1": "eco", "2": "boost"}}},
        {"identifier": "relay", "name": "r", "accessMode": "rw", "required": False,
         "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
        {"identifier": "note", "name": "n", "accessMode": "r", "required": False,
         "dataType": {"type": "text", "specs": {"length": "32"}}},
    ],
    "events": [],
    "services": [],
}


def human(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def test_tables_align_columns_and_show_times_in_utc() -> None:
    assert iso(1_764_847_353_123) == "2025-12-04T11:22:33.123Z"
    assert table([{"name": "a", "enabled": True, "createdAt": 1_764_847_353_123},
                   {"name": "long-name", "enabled": False, "createdAt": None, "extra": {"k": [1]}}]).splitlines() == [
        "name       enabled  createdAt                 extra",
        "a          yes      2025-12-04T11:22:33.123Z  -",
        "long-name  no       -                         {\"k\":[1]}",
    ]
    assert render({"productKey": "pk", "createdAt": 1_764_847_353_123}).splitlines() == [
        "productKey  pk", "createdAt   2025-12-04T11:22:33.123Z"]
    assert render([]) == ""
    assert table([{"payload": "x" * 100}]).splitlines()[1] == "x" * 59 + "…"


def test_values_read_with_their_labels_and_units() -> None:
    shown = presentations(TSL)
    assert shown["mode"] == Presentation("", {"0": "idle", "1": "eco", "2": "boost"})
    assert show(1, shown["mode"]) == "1 (eco)"
    assert show(True, shown["relay"]) == "true (on)"
    assert show(21.5, shown["temperature"]) == "21.5 °C"
    assert show("hi", shown["note"]) == '"hi"'
    assert show(7, None) == "7"


def test_device_status_shows_labels_and_units_and_history_refuses_an_unknown_property(
        server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "tsl.json").write_text(json.dumps(TSL))
    product = cli(server.data_dir, "product", "create", "--name", "thermostats", "--tsl", str(tmp_path / "tsl.json"))
    pk = product["productKey"]
    device = cli(server.data_dir, "device", "create", "--product-key", pk, "--name", "hall-1")
    client = server.client()
    try:
        token = client.token(pk, "hall-1", device["deviceSecret"])
        post = {"id": "1", "version": "1.0", "method": "thing.event.property.post",
                "params": {"temperature": 21.5, "mode": 1, "relay": 0}}
        reply = client.publish(f"/sys/{pk}/hall-1/thing/event/property/post", json.dumps(post).encode(), token)
        assert reply.json["code"] == 0
    finally:
        client.close()
    lines = human(server.data_dir, "device", "status", "--product-key", pk, "--name", "hall-1").splitlines()
    assert lines[0].startswith(f"{pk}/hall-1: online (last seen 20") and lines[0].endswith("; times in UTC)")
    assert lines[1].split() == ["property", "value", "time"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert "1 (eco)" in rows["mode"] and "0 (off)" in rows["relay"] and "21.5 °C" in rows["temperature"]
    assert rows["mode"].rstrip().endswith("Z")

    typo = CliRunner().invoke(main, ["device", "history", "--product-key", pk, "--name", "hall-1", "--property",
                                     "temprature", "--data-dir", str(server.data_dir)])
    assert typo.exit_code == 1
    assert typo.output.startswith("error: unknown property 'temprature': the product's model defines mode, note,")
    never = cli(server.data_dir, "device", "history", "--product-key", pk, "--name", "hall-1", "--property", "note")
    assert never == []  # defined, never reported: an empty history, not an error

    listing = human(server.data_dir, "device", "list", "--product-key", pk).splitlines()
    assert listing[0].split()[:2] == ["productKey", "deviceName"] and "hall-1" in listing[1]
