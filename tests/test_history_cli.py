"""``device history --csv``: every value of a property in a range, oldest first, as the API's CSV export."""

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main

TSL = {"properties": [{"identifier": "mode", "name": "Mode", "accessMode": "rw",
                       "dataType": {"type": "enum", "specs": {"0": "off", "1": "eco"}}}]}
T0 = 1_780_000_000_000


def history(data_dir: Path, pk: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["device", "history", "--product-key", pk, "--name", "csv-dev1", "--property",
                                       "mode", "--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


def test_history_csv_writes_every_value_in_the_range_oldest_first(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "tsl.json").write_text(json.dumps(TSL))
    pk = cli(server.data_dir, "product", "create", "--name", "csv", "--tsl", str(tmp_path / "tsl.json"))["productKey"]
    device = cli(server.data_dir, "device", "create", "--product-key", pk, "--name", "csv-dev1")
    client = server.client()
    try:
        token = client.token(pk, "csv-dev1", device["deviceSecret"])
        values = [{"value": i % 2, "time": T0 + i * 1000} for i in range(150)]  # more than --limit's default
        doc = {"id": "1", "version": "1.0", "params": {"properties": {"mode": values}},
               "method": "thing.event.property.batch.post"}
        reply = client.publish(f"/sys/{pk}/csv-dev1/thing/event/property/batch/post", json.dumps(doc).encode(), token)
        assert reply.json["code"] == 0, reply.json
    finally:
        client.close()

    code, out = history(server.data_dir, pk, "--csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(int(r["timeMs"]), int(r["value"]), r["label"]) for r in rows] == [
        (v["time"], v["value"], ["off", "eco"][v["value"]]) for v in values]
    code, out = history(server.data_dir, pk, "--csv", "--from", str(T0 + 10_000), "--to", "2026-05-28T20:26:52Z")
    assert [r["timeMs"] for r in csv.DictReader(io.StringIO(out))] == [str(T0 + i * 1000) for i in range(10, 13)]

    code, out = history(server.data_dir, pk, "--csv", "--limit", "5")
    assert code == 2 and "not --limit" in out
    code, out = history(server.data_dir, pk, "--csv", "--json")
    assert code == 2 and "exclude each other" in out
    code, out = history(server.data_dir, pk, "--csv", "--property", "nosuch")
    assert code == 1 and out.startswith("error: unknown property 'nosuch'")
