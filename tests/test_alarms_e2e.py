"""Alarms end to end: a real device reports over the real device endpoint to an in-process server whose
clock the test moves; the evaluator raises, the operator acknowledges (CLI), values clear them, silence
raises and a report clears it; every change reaches an http subscription as an ``alarm`` message, in order
with the device's data."""

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.dialects.test_alink_reports_https import SEED_004_TSL
from tests.support import DeviceClient, FakeClock, ThreadServer, cli, free_port, wait_until
from thingport.bus.envelope import envelope_kind
from thingport.cli import main as cli_main
from thingport.runtime.bootstrap import Overrides, build
from thingport.settings import load_settings
from thingport.store.sqlite_db import db_path


def last_seq(data_dir: Path) -> int:
    with sqlite3.connect(db_path(data_dir)) as conn:
        return conn.execute("SELECT max(seq) FROM messages").fetchone()[0]


def cli_error(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(cli_main, [*args, "--data-dir", str(data_dir)])
    assert result.exit_code == 1, result.output
    return result.output


def alarms(data_dir: Path, *args: str) -> list[dict]:
    return cli(data_dir, "alarm", "list", "--state", "active", "--state", "acknowledged", "--state", "cleared", *args)


def by_name(data_dir: Path, name: str) -> list[dict]:
    return [a for a in alarms(data_dir) if a["name"] == name]


def report(client: DeviceClient, d: dict, token: str, **values: Any) -> None:
    topic = f"/sys/{d['productKey']}/{d['deviceName']}/thing/event/property/post"
    reply = client.publish(topic, json.dumps({"id": "1", "params": values}).encode(), token).json
    assert reply["code"] == 0, reply


def pulled(data_dir: Path, name: str) -> list[Any]:
    app = build(load_settings(data_dir=data_dir), create=False)
    try:
        messages, _ = asyncio.run(app.management().pull(name, 1000))
    finally:
        app.close()
    return [(envelope_kind(m), json.loads(m.payload)) for m in messages]


@pytest.fixture
def fleet(tmp_path: Path) -> dict:
    data_dir = tmp_path / "data"
    tsl = tmp_path / "tsl.json"
    tsl.write_text(json.dumps(SEED_004_TSL))
    product = cli(data_dir, "product", "create", "--name", "collector", "--tsl", str(tsl))
    pk = product["productKey"]
    cli(data_dir, "product", "set", "--product-key", pk, "--presence-timeout", "60")
    device = cli(data_dir, "device", "create", "--product-key", pk, "--name", "collector-01")
    return {"data_dir": data_dir, "pk": pk, "device": device}


def test_definitions_are_checked_against_the_thing_model_and_refusals_store_nothing(fleet: dict) -> None:
    data_dir, pk = fleet["data_dir"], fleet["pk"]
    for when, clear, says in (
        ("pressure > 3", None, "property pressure is not in the product's thing model"),
        ('temperature == "hot"', None, "property temperature is of type int"),
        ("temperature > 38", "temperature < 40", "overlaps"),
        ("temperature > 38", "humidity < 36", "must be on temperature"),
        ("temperature >> 38", None, "'> 38' is not a number"),
        ("temperature is hot", None, "is not '<property> <op> <value>'"),
        ("temperature inside [40, 30]", None, "low end"),
    ):
        args = ["alarm", "define", "--product-key", pk, "--name", "bad", "--severity", "major", "--when", when]
        assert says in cli_error(data_dir, *args, *(["--clear-when", clear] if clear else []))
    assert "severity" in CliRunner().invoke(cli_main, ["alarm", "define", "--product-key", pk, "--name", "x",
                                                       "--severity", "awful", "--when", "temperature > 1",
                                                       "--data-dir", str(data_dir)]).output
    assert "silent" in cli_error(data_dir, "alarm", "define", "--product-key", pk, "--name", "s", "--severity",
                                 "minor", "--when", "silent", "--for", "1m")
    assert cli(data_dir, "alarm", "definitions", "--product-key", pk) == []
    made = cli(data_dir, "alarm", "define", "--product-key", pk, "--name", "overheat", "--severity", "major",
               "--when", "temperature > 38", "--for", "2m", "--clear-when", "temperature<36")
    assert (made["condition"], made["clearCondition"], made["durationSeconds"]) == ("temperature > 38",
                                                                                    "temperature < 36", 120)
    assert "already" in cli_error(data_dir, "alarm", "define", "--product-key", pk, "--name", "overheat",
                                  "--severity", "minor", "--when", "temperature > 1")
    assert [d["name"] for d in cli(data_dir, "alarm", "definitions")] == ["overheat"]


def test_alarms_raise_acknowledge_and_clear_from_reports_durations_and_silence(fleet: dict) -> None:
    data_dir, pk, d = fleet["data_dir"], fleet["pk"], fleet["device"]
    define = ["alarm", "define", "--product-key", pk]
    cli(data_dir, *define, "--name", "overheat", "--severity", "major", "--when", "temperature > 38", "--for", "2m",
        "--clear-when", "temperature < 36")
    cli(data_dir, *define, "--name", "warm", "--severity", "minor", "--when", "temperature > 30",
        "--clear-when", "temperature < 25")
    cli(data_dir, *define, "--name", "dry", "--severity", "warning", "--when", "humidity outside [20, 80]")
    cli(data_dir, *define, "--name", "offline", "--severity", "critical", "--when", "silent")
    cli(data_dir, "subscription", "create", "--name", "ops", "--product-key", pk, "--sink", "http",
        "--kinds", "properties,alarm")
    clock = FakeClock()
    settings = load_settings(data_dir=data_dir, host="127.0.0.1", port=free_port(), log_level="critical")
    with ThreadServer(build(settings, Overrides(clock=clock))) as srv:
        client = srv.client()
        token = client.token(pk, d["deviceName"], d["deviceSecret"])
        # hysteresis: 31 raises "warm"; 28 (between 25 and 30) and 31 again change nothing
        for t in (31, 28, 31, 28, 31):
            report(client, d, token, temperature=t)
        wait_until(lambda: by_name(data_dir, "warm"), "warm raised")
        # a duration: 39 must hold 2 minutes (another report at 39.5 keeps it pending, a tick raises it)
        report(client, d, token, temperature=39)
        clock.advance(60)
        report(client, d, token, temperature=40)
        clock.advance(59)
        report(client, d, token, humidity=50)  # the evaluator catches up past this, on its clock: not yet
        newest = last_seq(data_dir)
        wait_until(lambda: srv.app.evaluator.cursor >= newest, "the evaluator caught up")
        time.sleep(1.2)  # and ticked on its clock (119 s after the first 39)
        assert not by_name(data_dir, "overheat")
        clock.advance(2)
        overheat = wait_until(lambda: by_name(data_dir, "overheat"), "overheat raised after 2 minutes")[0]
        assert overheat["state"] == "active" and overheat["severity"] == "major"
        assert overheat["details"]["condition"] == "temperature > 38"
        assert cli(data_dir, "alarm", "list", "--severity", "major")[0]["id"] == overheat["id"]
        acked = cli(data_dir, "alarm", "ack", str(overheat["id"]), "--by", "alice")
        assert (acked["state"], acked["acknowledgedBy"]) == ("acknowledged", "alice")
        assert "acknowledged already, by alice" in cli_error(data_dir, "alarm", "ack", str(overheat["id"]))
        # 37 is between the clear (36) and raise (38) thresholds: it stays; 35 clears it (and "warm" too? no: 35 > 25)
        report(client, d, token, temperature=37)
        report(client, d, token, temperature=35)
        wait_until(lambda: by_name(data_dir, "overheat")[0]["state"] == "cleared", "overheat cleared")
        assert by_name(data_dir, "warm")[0]["state"] == "active"
        report(client, d, token, temperature=20, humidity=90)
        wait_until(lambda: by_name(data_dir, "warm")[0]["state"] == "cleared", "warm cleared")
        wait_until(lambda: by_name(data_dir, "dry"), "dry raised")
        # silence: longer than the product's presence timeout (60 s) raises "offline"; a report clears it
        clock.advance(61)
        wait_until(lambda: by_name(data_dir, "offline"), "offline raised", timeout=10)
        report(client, d, token, humidity=50)
        wait_until(lambda: by_name(data_dir, "offline")[0]["state"] == "cleared", "offline cleared")
        wait_until(lambda: by_name(data_dir, "dry")[0]["state"] == "cleared", "dry cleared")
        client.close()
        history = cli(data_dir, "alarm", "history", "--product-key", pk, "--device-name", d["deviceName"])
        changes = {a["name"]: [(c["state"], c["by"]) for c in a["changes"]] for a in history}
        assert changes["overheat"] == [("active", None), ("acknowledged", "alice"), ("cleared", None)]
        assert changes["warm"] == [("active", None), ("cleared", None)]  # no flapping
        assert len(history) == 4  # one alarm of each: none raised twice
        # every change reached the subscription as an alarm message, in order with the data, once
        seen = wait_until(lambda: (m := pulled(data_dir, "ops")) and sum(k == "alarm" for k, _ in m) == 9 and m,
                          "alarm messages pulled")
        clock.advance(61)  # silent again: a new alarm (the last one cleared)
        again = wait_until(lambda: [a for a in by_name(data_dir, "offline") if a["state"] == "active"], "again")
        assert len(by_name(data_dir, "offline")) == 2 and again[0]["details"]["presenceTimeoutSeconds"] == 60
    kinds = [k for k, _ in seen]
    events = [p for k, p in seen if k == "alarm"]
    assert len({e["eventId"] for e in events}) == 9
    firsts = {(e["alarm"]["name"], e["state"]): i for i, e in enumerate(events)}
    assert list(firsts) == [("warm", "active"), ("overheat", "active"), ("overheat", "acknowledged"),
                            ("overheat", "cleared"), ("warm", "cleared"), ("dry", "active"),
                            ("offline", "active"), ("offline", "cleared"), ("dry", "cleared")]
    # "warm" is raised after the report of 31 that raised it, and before the report of 39
    values = [p["params"].get("temperature") if k == "properties" else p["alarm"]["name"] for k, p in seen]
    assert values.index("warm") > values.index(31) and values.index("warm") < values.index(39)
    assert kinds.count("properties") == 12
