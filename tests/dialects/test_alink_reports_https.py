"""Thing-model validated Alink reports end to end over HTTPS: seed 004's temperature/humidity collector."""

import json
import random
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import DeviceClient, ServerProcess, cli, wait_until
from thingport.cli import main

SEED_004_TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "placeholder"},
    "properties": [
        {"identifier": "temperature", "name": "Temperature", "accessMode": "r", "required": False,
         "dataType": {"type": "int", "specs": {"min": "-10", "max": "50", "step": "1"}}},
        {"identifier": "humidity", "name": "Humidity", "accessMode": "r", "required": False,
         "dataType": {"type": "int", "specs": {"min": "1", "max": "100", "step": "1"}}},
    ],
    "events": [
        {"identifier": "overheat", "name": "Overheat", "type": "alert",
         "outputData": [{"identifier": "level", "name": "Level",
                         "dataType": {"type": "int", "specs": {"min": "1", "max": "3"}}}]},
    ],
    "services": [],
}


def write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def collector(server: ServerProcess, tmp_path: Path) -> dict:
    """Seed 004: a product with the collector's TSL, one device, and a keep-alive client with a token."""
    tsl = write_json(tmp_path / "tsl.json", SEED_004_TSL)
    product = cli(
        server.data_dir, "product", "create", "--name", f"collector{random.randrange(10**9)}", "--tsl", str(tsl)
    )
    device = cli(server.data_dir, "device", "create", "--product-key", product["productKey"], "--name", "collector-01")
    client = server.client()
    # the tutorial's Node client: hmacsha1, numeric timestamp, random clientId, version "default"
    token = client.auth(device["productKey"], device["deviceName"], device["deviceSecret"], method="hmacsha1",
                        client_id="k3j5h2l1").json["info"]["token"]
    yield {**device, "client": client, "token": token, "product": product,
           "topic": f"/sys/{device['productKey']}/{device['deviceName']}/thing/event/property/post"}
    client.close()


def sibling(server: ServerProcess, c: dict, name: str) -> dict:
    """Another device of ``c``'s product, with its own client and token: it probes the running server for a
    product change without leaving anything on the device under test."""
    device = cli(server.data_dir, "device", "create", "--product-key", c["productKey"], "--name", name)
    client = server.client()
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    return {**device, "client": client, "token": token,
            "topic": f"/sys/{device['productKey']}/{device['deviceName']}/thing/event/property/post"}


def post(c: dict, doc: object, topic: str | None = None) -> dict:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    reply = c["client"].publish(topic or c["topic"], payload, c["token"]).json
    assert reply["code"] == 0, reply  # the device's HTTP reply stays the protocol's
    return reply


def status(server: ServerProcess, c: dict) -> dict:
    return cli(server.data_dir, "device", "status", "--product-key", c["productKey"], "--name", c["deviceName"])


def history(server: ServerProcess, c: dict, prop: str, *extra: str) -> list:
    return cli(server.data_dir, "device", "history", "--product-key", c["productKey"], "--name", c["deviceName"],
               "--property", prop, *extra)


def reply_of(server: ServerProcess, message_id: int) -> dict:
    result = CliRunner().invoke(
        main, ["messages", "tail", "--limit", "200", "--json", "--data-dir", str(server.data_dir)]
    )
    for line in result.output.splitlines():
        doc = json.loads(line)
        if doc["messageId"] == message_id:
            return doc
    raise AssertionError(f"message {message_id} not in the log")


def test_seed_004_collector_reports_become_running_status_and_history(server: ServerProcess, collector: dict) -> None:
    c = collector
    before = status(server, c)
    assert before["properties"] == {} and before["state"] == "online"  # the auth made it online
    sent = []
    for _ in range(3):
        params = {"humidity": random.randrange(60, 80), "temperature": random.randrange(10, 30)}
        doc = {"id": int(time.time() * 1000), "params": params, "method": "thing.event.property.post"}
        message_id = post(c, doc)["info"]["messageId"]
        sent.append((message_id, params))
        time.sleep(0.01)
    now = status(server, c)
    assert now["online"] is True and now["lastSeenAt"] >= before["lastSeenAt"]
    assert {k: v["value"] for k, v in now["properties"].items()} == sent[-1][1]
    temps = history(server, c, "temperature")
    assert [p["value"] for p in temps] == [params["temperature"] for _, params in reversed(sent)]  # newest first
    assert [p["messageId"] for p in temps] == [mid for mid, _ in reversed(sent)]
    stored = reply_of(server, sent[-1][0])
    assert stored["kind"] == "property_post"
    assert stored["reply"] == {"code": 200, "data": {}, "id": str(doc["id"]), "message": "success",
                               "method": "thing.event.property.post", "version": "1.0"}


def test_invalid_properties_are_refused_with_the_alink_code_and_valid_ones_kept(
    server: ServerProcess, collector: dict
) -> None:
    c = collector
    post(c, {"id": "1", "params": {"temperature": 20, "humidity": 50}})
    reply = post(c, {"id": "2", "version": "1.0", "params": {"temperature": 51, "humidity": 70, "pressure": 3}})
    latest = status(server, c)["properties"]
    assert latest["temperature"]["value"] == 20 and latest["humidity"]["value"] == 70
    assert "pressure" not in latest
    stored = reply_of(server, reply["info"]["messageId"])["reply"]
    assert stored["code"] == 6306 and "temperature" in stored["message"] and "50" in stored["message"]
    assert {(r["identifier"], r["code"]) for r in stored["data"]["refused"]} == {
        ("temperature", 6306),
        ("pressure", 6304),
    }


@pytest.mark.parametrize(
    ("temperature", "accepted"), [(-11, False), (-10, True), (50, True), (51, False), (2**31, False)]
)
def test_int_boundaries_over_https(server: ServerProcess, collector: dict, temperature: int, accepted: bool) -> None:
    reply = post(collector, {"id": "b", "params": {"temperature": temperature}})
    stored = reply_of(server, reply["info"]["messageId"])["reply"]
    assert (stored["code"] == 200) is accepted
    values = [p["value"] for p in history(server, collector, "temperature")]
    assert (temperature in values) is accepted


def test_whole_report_setting_refuses_every_property_of_an_invalid_report(
    server: ServerProcess, collector: dict
) -> None:
    c = collector
    cli(server.data_dir, "product", "set", "--product-key", c["productKey"], "--validation", "whole-report")
    probe = sibling(server, c, "probe-01")

    humidity = iter(range(1, 101))

    def whole_report_refused() -> bool:  # per-property stores the valid humidity: a new value each time
        sent = next(humidity)
        post(probe, {"id": "p", "params": {"temperature": 99, "humidity": sent}})
        return status(server, probe)["properties"].get("humidity", {}).get("value") != sent

    wait_until(whole_report_refused, "the running server takes whole-report from the change feed", 5.0, 0.05)
    probe["client"].close()
    reply = post(c, {"id": "3", "params": {"temperature": 99, "humidity": 40}})
    assert status(server, c)["properties"] == {}
    assert reply_of(server, reply["info"]["messageId"])["reply"]["code"] == 6306


def test_device_time_is_used_when_sane(server: ServerProcess, collector: dict) -> None:
    c = collector
    device_time = int(time.time() * 1000) - 3_600_000
    post(c, {"id": "4", "params": {"temperature": {"value": 11, "time": device_time}}})
    assert history(server, c, "temperature")[0]["time"] == device_time
    far_future = int(time.time() * 1000) + 25 * 3_600_000
    before = int(time.time() * 1000)
    post(c, {"id": "5", "params": {"humidity": {"value": 12, "time": far_future}}})
    assert before <= history(server, c, "humidity")[0]["time"] <= int(time.time() * 1000)


def test_history_range_and_limit(server: ServerProcess, collector: dict) -> None:
    c = collector
    base = int(time.time() * 1000) - 10_000
    for i in range(5):
        post(c, {"id": str(i), "params": {"humidity": {"value": 10 + i, "time": base + i * 1000}}})
    assert [p["value"] for p in history(server, c, "humidity", "--limit", "2")] == [14, 13]
    window = history(server, c, "humidity", "--from", str(base + 1000), "--to", str(base + 3000))
    assert [p["value"] for p in window] == [13, 12, 11]


def test_non_json_and_too_many_properties_store_no_properties(server: ServerProcess, collector: dict) -> None:
    c = collector
    reply = post(c, b"\x00\x01 not json")
    assert reply_of(server, reply["info"]["messageId"])["reply"]["code"] == 6207
    too_many = {"id": "6", "params": {f"p{i}": i for i in range(201)}}
    reply = post(c, too_many)
    assert reply_of(server, reply["info"]["messageId"])["reply"]["code"] == 6106
    assert status(server, c)["properties"] == {}


def test_event_post_checks_output_data(server: ServerProcess, collector: dict) -> None:
    c = collector
    topic = f"/sys/{c['productKey']}/{c['deviceName']}/thing/event/overheat/post"
    ok = post(c, {"id": "7", "params": {"level": 2}, "method": "thing.event.overheat.post"}, topic)
    assert reply_of(server, ok["info"]["messageId"])["reply"]["code"] == 200
    bad = post(c, {"id": "8", "params": {"level": 9}}, topic)
    stored = reply_of(server, bad["info"]["messageId"])["reply"]
    assert stored["code"] == 6306 and "level" in stored["message"]
    unknown = post(c, {"id": "9", "params": {}}, f"/sys/{c['productKey']}/{c['deviceName']}/thing/event/nosuch/post")
    assert reply_of(server, unknown["info"]["messageId"])["reply"]["code"] == 6300


def test_batch_post(server: ServerProcess, collector: dict) -> None:
    c = collector
    now = int(time.time() * 1000)
    doc = {
        "id": "10",
        "version": "1.0",
        "method": "thing.event.property.batch.post",
        "params": {
            "properties": {
                "temperature": [{"value": 21, "time": now - 2000}, {"value": 22, "time": now - 1000}],
                "humidity": [{"value": 101, "time": now - 1000}],
            }
        },
    }
    reply = post(c, doc, f"/sys/{c['productKey']}/{c['deviceName']}/thing/event/property/batch/post")
    assert [p["value"] for p in history(server, c, "temperature")] == [22, 21]
    assert status(server, c)["properties"]["temperature"]["value"] == 22
    assert "humidity" not in status(server, c)["properties"]
    assert reply_of(server, reply["info"]["messageId"])["reply"]["code"] == 6306


def test_model_replacement_takes_effect_while_serving(server: ServerProcess, collector: dict, tmp_path: Path) -> None:
    c = collector
    post(c, {"id": "11", "params": {"temperature": 80}})
    assert "temperature" not in status(server, c)["properties"]
    wider = json.loads(json.dumps(SEED_004_TSL))
    wider["properties"][0]["dataType"]["specs"]["max"] = "100"
    imported = cli(server.data_dir, "product", "tsl", "import", "--product-key", c["productKey"],
                   str(write_json(tmp_path / "wider.json", wider)))
    assert imported["modelVersion"] != c["product"]["modelVersion"]
    wait_until(lambda: post(c, {"id": "12", "params": {"temperature": 80}})
               and "temperature" in status(server, c)["properties"], "the new model in effect", 1.0, 0.05)
    assert status(server, c)["properties"]["temperature"]["value"] == 80


def test_schemaless_products_record_any_properties_as_given(server: ServerProcess) -> None:
    product = cli(server.data_dir, "product", "create", "--name", "free")
    device = cli(server.data_dir, "device", "create", "--product-key", product["productKey"], "--name", "free-01")
    client: DeviceClient = server.client()
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    params = {"anything": {"nested": [1, "two"]}, "flag": True, "reading": 1.5}
    topic = f"/sys/{device['productKey']}/{device['deviceName']}/thing/event/property/post"
    assert client.publish(topic, json.dumps({"id": "1", "params": params}).encode(), token).json["code"] == 0
    latest = cli(server.data_dir, "device", "status", "--product-key", device["productKey"], "--name", "free-01")
    assert {k: v["value"] for k, v in latest["properties"].items()} == params
    client.close()


def test_tsl_round_trips_through_import_and_export(server: ServerProcess, collector: dict) -> None:
    result = CliRunner().invoke(main, ["product", "tsl", "export", "--product-key", collector["productKey"],
                                       "--data-dir", str(server.data_dir)])
    exported = json.loads(result.output)
    assert exported["profile"]["productKey"] == collector["productKey"]
    assert exported["properties"] == SEED_004_TSL["properties"] and exported["events"] == SEED_004_TSL["events"]


def test_invalid_tsl_is_refused_and_creates_nothing(server: ServerProcess, tmp_path: Path) -> None:
    bad = write_json(tmp_path / "bad.json", {"properties": [{"identifier": "time", "dataType": {"type": "int"}}]})
    result = CliRunner().invoke(main, ["product", "create", "--name", "badmodel", "--tsl", str(bad),
                                       "--data-dir", str(server.data_dir)])
    assert result.exit_code == 1 and "invalid thing model" in result.output
    names = [p["name"] for p in cli(server.data_dir, "product", "list")]
    assert "badmodel" not in names


def test_running_status_survives_restart(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data").start()
    try:
        tsl = write_json(tmp_path / "tsl.json", SEED_004_TSL)
        product = cli(srv.data_dir, "product", "create", "--name", "c", "--tsl", str(tsl))
        device = cli(srv.data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-r")
        client = srv.client()
        token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
        topic = f"/sys/{device['productKey']}/{device['deviceName']}/thing/event/property/post"
        assert client.publish(topic, b'{"id":"1","params":{"temperature":33}}', token).json["code"] == 0
        client.close()
    finally:
        srv.kill()
    again = ServerProcess(tmp_path / "data").start()
    try:
        latest = cli(again.data_dir, "device", "status", "--product-key", device["productKey"], "--name", "dev-r")
        assert latest["properties"]["temperature"]["value"] == 33
        assert [p["value"] for p in cli(again.data_dir, "device", "history", "--product-key", device["productKey"],
                                         "--name", "dev-r", "--property", "temperature")] == [33]
    finally:
        again.stop()
