"""Forwarding through the embedded HTTP subscription (pull + ack, and Server-Sent Events), over real HTTP."""

import base64
import http.server
import json
import threading
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from tests.support import ServerProcess, cli, wait_until

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "envelope.schema.json").read_text())


def setup_device(server: ServerProcess, api: httpx.Client, name: str, **sub: object) -> tuple[dict, str]:
    pk = api.post("/api/products", json={"name": name}).json()["productKey"]
    device = api.post("/api/devices", json={"productKey": pk, "deviceName": f"{name}-dev"}).json()
    created = api.post("/api/subscriptions", json={"name": f"{name}-sub", "productKey": pk, "sink": "http", **sub})
    assert created.status_code == 201, created.text
    return device, f"{name}-sub"


def pull(api: httpx.Client, name: str, **params: object) -> dict:
    reply = api.post(f"/api/subscriptions/{name}/pull", params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_pull_redelivers_until_acknowledged_in_order_with_valid_envelopes(
    server: ServerProcess, api: httpx.Client
) -> None:
    device, sub = setup_device(server, api, "pullme")
    pk, dn = device["productKey"], device["deviceName"]
    client = server.client()
    token = client.token(pk, dn, device["deviceSecret"])
    ids = [
        client.publish(f"/{pk}/{dn}/user/data", b"reading-%d" % i, token).json["info"]["messageId"] for i in range(5)
    ]
    prop = client.publish(f"/sys/{pk}/{dn}/thing/event/property/post", b'{"id":"1","params":{"t":1}}', token)
    client.close()

    first = pull(api, sub, max=100)
    kinds = [e["kind"] for e in first["messages"]]
    assert kinds == ["status"] + ["raw"] * 5 + ["properties"]
    for envelope in first["messages"]:
        jsonschema.validate(envelope, SCHEMA)
    raw = first["messages"][1:6]
    assert [e["messageId"] for e in raw] == ids
    assert raw[0]["payloadEncoding"] == "base64" and raw[0]["device"] == {"productKey": pk, "deviceName": dn,
                                                                         "deviceId": device["deviceId"]}
    assert first["messages"][6]["payload"] == {"id": "1", "params": {"t": 1}}
    assert first["messages"][6]["validation"]["code"] == 200
    assert first["messages"][6]["messageId"] == prop.json["info"]["messageId"]
    assert first["messages"][0]["payload"]["status"] == "online"

    again = pull(api, sub, max=100)  # not acknowledged: delivered again
    assert [e["seq"] for e in again["messages"]] == [e["seq"] for e in first["messages"]]
    backlog = api.get(f"/api/subscriptions/{sub}").json()["backlog"]
    assert backlog >= 7
    acked = api.post(f"/api/subscriptions/{sub}/ack", json={"cursor": first["cursor"]}).json()
    assert acked["cursor"] == int(first["cursor"])
    assert pull(api, sub)["messages"] == []
    start = time.monotonic()
    assert pull(api, sub, wait=0.5)["messages"] == []  # long poll waits, then answers empty
    assert time.monotonic() - start >= 0.45


def test_kinds_and_topic_filters(server: ServerProcess, api: httpx.Client) -> None:
    device, sub = setup_device(server, api, "filtered", kinds=["raw"], topicFilter="/+/+/user/keep/#")
    pk, dn = device["productKey"], device["deviceName"]
    client = server.client()
    token = client.token(pk, dn, device["deviceSecret"])
    client.publish(f"/{pk}/{dn}/user/drop", b"no", token)
    kept = client.publish(f"/{pk}/{dn}/user/keep/a", b"yes", token).json["info"]["messageId"]
    client.publish(f"/sys/{pk}/{dn}/thing/event/property/post", b'{"params":{}}', token)
    client.close()
    assert [e["messageId"] for e in pull(api, sub)["messages"]] == [kept]


def test_server_sent_events_resume_from_last_event_id(server: ServerProcess, api: httpx.Client, admin_key: str) -> None:
    device, sub = setup_device(server, api, "streamed", kinds=["raw"])
    pk, dn = device["productKey"], device["deviceName"]
    client = server.client()
    token = client.token(pk, dn, device["deviceSecret"])
    ids = [client.publish(f"/{pk}/{dn}/user/s", b'{"n":%d}' % i, token).json["info"]["messageId"] for i in range(4)]

    def read_events(headers: dict, count: int) -> list[tuple[str, dict]]:
        events, event_id = [], None
        with httpx.stream("GET", f"http://127.0.0.1:{server.api_port}/api/subscriptions/{sub}/events",
                          headers={"Authorization": f"Bearer {admin_key}", **headers}, timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    events.append((event_id, json.loads(line[6:])))
                    if len(events) == count:
                        break
        return events

    first = read_events({}, 2)
    assert [e["messageId"] for _, e in first] == ids[:2]
    resumed = read_events({"Last-Event-ID": first[-1][0]}, 2)
    live = client.publish(f"/{pk}/{dn}/user/s", b'{"n":9}', token).json["info"]["messageId"]
    client.close()
    assert [e["messageId"] for _, e in resumed] == ids[2:]
    tail = read_events({"Last-Event-ID": resumed[-1][0]}, 1)
    assert tail[0][1]["messageId"] == live


def test_presence_transitions_are_status_events(server: ServerProcess, api: httpx.Client) -> None:
    device, sub = setup_device(server, api, "presence", kinds=["status"])
    pk, dn = device["productKey"], device["deviceName"]
    cli(server.data_dir, "product", "set", "--product-key", pk, "--presence-timeout", "1")
    # no wait: the server loads the product (with its timeout) when the device first authenticates, below
    client = server.client()
    token = client.token(pk, dn, device["deviceSecret"])
    client.publish(f"/{pk}/{dn}/user/x", b"x", token)
    client.close()
    deadline = time.monotonic() + 5
    statuses: list[str] = []
    while time.monotonic() < deadline and statuses != ["online", "offline"]:
        statuses = [e["payload"]["status"] for e in pull(api, sub, wait=1)["messages"]]
    assert statuses == ["online", "offline"]
    status = cli(server.data_dir, "device", "status", "--product-key", pk, "--name", dn)
    assert status["lastSeenAt"] is not None and status["state"] == "offline"  # the product's 1 s timeout


def test_subscription_management(server: ServerProcess, api: httpx.Client) -> None:
    pk = api.post("/api/products", json={"name": "subs"}).json()["productKey"]
    bad = api.post("/api/subscriptions", json={"name": "hook", "productKey": pk, "sink": "webhook", "options": {}})
    assert bad.status_code == 400 and "url" in bad.json()["error"]["message"]
    assert api.post("/api/subscriptions", json={"name": "x", "productKey": "nope", "sink": "http"}).status_code == 404
    made = cli(server.data_dir, "subscription", "create", "--name", "cli-sub", "--product-key", pk, "--sink", "http",
               "--kinds", "raw,event")
    assert made["kinds"] == ["raw", "event"] and made["backlog"] == 0
    listed = {s["name"]: s for s in cli(server.data_dir, "subscription", "list")}
    assert listed["cli-sub"]["sink"] == "http"
    dup = api.post("/api/subscriptions", json={"name": "cli-sub", "productKey": pk, "sink": "http"})
    assert dup.status_code == 409
    assert cli(server.data_dir, "subscription", "disable", "--name", "cli-sub")["enabled"] is False
    assert api.delete("/api/subscriptions/cli-sub").status_code == 204
    assert api.get("/api/subscriptions/cli-sub").status_code == 404
    with pytest.raises(AssertionError):
        pull(api, "cli-sub")


def test_reports_from_either_dialect_reach_applications_alike(server: ServerProcess, api: httpx.Client) -> None:
    """Issue 4: one device reporting in both dialects; applications see the same envelope, the dialect named."""
    from thingport.device import AliyunDevice, HuaweiDevice

    device, sub = setup_device(server, api, "bothways", kinds=["raw", "properties"])
    pk, dn = device["productKey"], device["deviceName"]
    endpoint = f"https://127.0.0.1:{server.port}"
    with HuaweiDevice(endpoint, device["deviceId"], device["deviceSecret"], ca_file=server.cert) as hw:
        hw_report = hw.report_properties({"Environment": {"temperature": 21}}).message_id
        hw_up = hw.message_up(b"\x00raw").message_id
    with AliyunDevice(endpoint, pk, dn, device["deviceSecret"], ca_file=server.cert) as ali:
        ali_report = ali.post_properties({"temperature": 22})
        ali_up = ali.publish(ali.user_topic("data"), b"\x00raw")

    envelopes = {e["messageId"]: e for e in pull(api, sub, max=100)["messages"]}
    assert set(envelopes) == {hw_report, hw_up, ali_report, ali_up}
    for envelope in envelopes.values():
        jsonschema.validate(envelope, SCHEMA)
        assert envelope["device"] == {"productKey": pk, "deviceName": dn, "deviceId": device["deviceId"]}
    assert {envelopes[i]["dialect"] for i in (hw_report, hw_up)} == {"huawei"}
    assert {envelopes[i]["dialect"] for i in (ali_report, ali_up)} == {"aliyun"}
    assert envelopes[hw_report]["kind"] == envelopes[ali_report]["kind"] == "properties"
    assert envelopes[hw_up]["kind"] == envelopes[ali_up]["kind"] == "raw"
    assert envelopes[hw_up]["payload"] == envelopes[ali_up]["payload"]  # the same bytes, encoded alike
    assert set(envelopes[hw_report]) == set(envelopes[ali_report])  # the same fields
    status = cli(server.data_dir, "device", "status", "--product-key", pk, "--name", dn)
    assert status["properties"]["temperature"]["value"] == 22  # one latest value, written by either dialect


@pytest.fixture(scope="module")
def consumer_key(server: ServerProcess) -> str:
    return cli(server.data_dir, "apikey", "create", "--name", "consumer", "--role", "consumer")["key"]


def keyed(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10,
                        headers={"Authorization": f"Bearer {key}"})


def publish_some(server: ServerProcess, device: dict, count: int) -> None:
    pk, dn = device["productKey"], device["deviceName"]
    client = server.client()
    token = client.token(pk, dn, device["deviceSecret"])
    for i in range(count):
        client.publish(f"/{pk}/{dn}/user/data", b"m-%d" % i, token)
    client.close()


def test_acknowledging_needs_a_consumer_key_and_stops_at_what_was_delivered(
    server: ServerProcess, api: httpx.Client, read_key: str, consumer_key: str,
) -> None:
    device, sub = setup_device(server, api, "ackrules", kinds=["raw"])
    publish_some(server, device, 3)
    last = max(int(m["seq"]) for m in api.get("/api/messages", params={"productKey": device["productKey"]})
               .json()["items"])
    with keyed(server, read_key) as reader, keyed(server, consumer_key) as consumer:
        refused = reader.post(f"/api/subscriptions/{sub}/ack", json={"cursor": str(last)})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]

        # nothing was handed to a consumer yet: even an admin cannot acknowledge the messages away
        beyond = api.post(f"/api/subscriptions/{sub}/ack", json={"cursor": str(last)})
        assert beyond.status_code == 409 and "delivered" in beyond.json()["error"]["message"]

        peeked = pull(reader, sub)  # a read key may look, but its pull delivers nothing to acknowledge
        assert len(peeked["messages"]) == 3
        assert api.post(f"/api/subscriptions/{sub}/ack", json={"cursor": peeked["cursor"]}).status_code == 409

        first = consumer.post(f"/api/subscriptions/{sub}/pull", params={"max": 2}).json()
        assert len(first["messages"]) == 2
        too_far = consumer.post(f"/api/subscriptions/{sub}/ack", json={"cursor": str(last)})
        assert too_far.status_code == 409
        assert api.get(f"/api/subscriptions/{sub}").json()["cursor"] < int(first["cursor"])
        acked = consumer.post(f"/api/subscriptions/{sub}/ack", json={"cursor": first["cursor"]})
        assert acked.status_code == 200 and acked.json()["cursor"] == int(first["cursor"])
        assert [m["payload"] for m in pull(consumer, sub)["messages"]] == [base64.b64encode(b"m-2").decode()]

        # a consumer key reads and acknowledges, nothing more
        assert consumer.get("/api/products").status_code == 200
        assert consumer.post("/api/products", json={"name": "nope"}).status_code == 403
        assert consumer.delete(f"/api/subscriptions/{sub}").status_code == 403


def test_push_subscriptions_cannot_be_acknowledged(server: ServerProcess, api: httpx.Client) -> None:
    pk = api.post("/api/products", json={"name": "pushack"}).json()["productKey"]
    device = api.post("/api/devices", json={"productKey": pk, "deviceName": "pushack-dev"}).json()
    made = api.post("/api/subscriptions", params={"check": "false"},
                    json={"name": "pushack-hook", "productKey": pk, "sink": "webhook",
                          "options": {"url": "http://127.0.0.1:9/never", "secret": "s3cret"}})
    assert made.status_code == 201, made.text
    cli(server.data_dir, "subscription", "disable", "--name", "pushack-hook")
    publish_some(server, device, 3)
    last = api.get("/api/messages", params={"productKey": pk}).json()["items"][0]["seq"]
    refused = api.post("/api/subscriptions/pushack-hook/ack", json={"cursor": str(last)})
    assert refused.status_code == 400 and "only http subscriptions" in refused.json()["error"]["message"]
    assert api.get("/api/subscriptions/pushack-hook").json()["backlog"] >= 3


def test_an_event_stream_read_by_a_consumer_may_be_acknowledged(
    server: ServerProcess, api: httpx.Client, consumer_key: str,
) -> None:
    device, sub = setup_device(server, api, "sseack", kinds=["raw"])
    publish_some(server, device, 2)
    event_id = None
    with httpx.stream("GET", f"http://127.0.0.1:{server.api_port}/api/subscriptions/{sub}/events",
                      headers={"Authorization": f"Bearer {consumer_key}"}, timeout=10) as stream:
        seen = 0
        for line in stream.iter_lines():
            if line.startswith("id: "):
                event_id, seen = line[4:], seen + 1
                if seen == 2:
                    break
    with keyed(server, consumer_key) as consumer:
        acked = consumer.post(f"/api/subscriptions/{sub}/ack", json={"cursor": event_id})
        assert acked.status_code == 200, acked.text
        assert pull(consumer, sub)["messages"] == []

    # a stream resumed past what was delivered (a made-up Last-Event-ID) delivers nothing acknowledgeable
    publish_some(server, device, 3)
    newest = api.get("/api/messages", params={"productKey": device["productKey"], "limit": 3}).json()["items"]
    skipped_to = newest[1]["seq"]  # the stream starts after the second of the three new messages
    assert skipped_to > api.get(f"/api/subscriptions/{sub}").json()["delivered"]
    with httpx.stream("GET", f"http://127.0.0.1:{server.api_port}/api/subscriptions/{sub}/events",
                      headers={"Authorization": f"Bearer {consumer_key}", "Last-Event-ID": str(skipped_to)},
                      timeout=10) as stream:
        for line in stream.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
                break
    with keyed(server, consumer_key) as consumer:
        assert consumer.post(f"/api/subscriptions/{sub}/ack", json={"cursor": event_id}).status_code == 409


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver answering 204 to a signed POST, 401 to an unsigned one; remembers the bodies."""

    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        signed = self.headers.get("X-Thingport-Signature", "").startswith("sha256=")
        Receiver.bodies.append((self.headers.get("X-Thingport-Delivery", ""), body))
        self.send_response(204 if signed else 401)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_creating_a_webhook_subscription_checks_the_receiver(server: ServerProcess, api: httpx.Client) -> None:
    pk = api.post("/api/products", json={"name": "hookcheck"}).json()["productKey"]
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        good = api.post("/api/subscriptions", json={
            "name": "hook-ok", "productKey": pk, "sink": "webhook",
            "options": {"url": f"http://127.0.0.1:{receiver.server_address[1]}/in", "secret": "s"}})
        assert good.status_code == 201, good.text
        assert ("check", b'{"messages":[]}') in Receiver.bodies  # an empty batch, signed
    finally:
        receiver.shutdown()
    down = api.post("/api/subscriptions", json={
        "name": "hook-down", "productKey": pk, "sink": "webhook",
        "options": {"url": "http://ops:Passw0rd@127.0.0.1:9/in?api_token=T0ken", "secret": "s"}})
    assert down.status_code == 400 and down.json()["error"]["code"] == "sink_unreachable"
    assert "Passw0rd" not in down.text and "T0ken" not in down.text and "127.0.0.1:9" in down.text


def test_a_failing_webhook_shows_its_state_and_error_without_credentials(
    server: ServerProcess, api: httpx.Client
) -> None:
    pk = api.post("/api/products", json={"name": "hookfail"}).json()["productKey"]
    device = api.post("/api/devices", json={"productKey": pk, "deviceName": "hookfail-dev"}).json()
    made = api.post("/api/subscriptions", json={
        "name": "hook-fail", "productKey": pk, "sink": "webhook", "check": False,
        "options": {"url": "http://ops:Passw0rd@127.0.0.1:9/in?api_token=T0ken", "secret": "s"}})
    assert made.status_code == 201 and made.json()["state"] == "running"
    publish_some(server, device, 1)

    def shown_state() -> dict:
        shown = api.get("/api/subscriptions/hook-fail").json()
        assert shown["state"] in ("running", "retrying", "failing"), shown
        return shown

    shown = wait_until(shown_state, "the subscription to a dead webhook shown failing", 15, 0.2,
                       accept=lambda shown: shown["state"] == "failing")
    assert "request failed" in shown["lastError"] and "127.0.0.1:9" in shown["lastError"]
    assert "Passw0rd" not in shown["lastError"] and "T0ken" not in shown["lastError"]
    listed = {s["name"]: s for s in cli(server.data_dir, "subscription", "list")}["hook-fail"]
    assert listed["state"] == "failing" and listed["lastError"] == shown["lastError"]
    assert cli(server.data_dir, "subscription", "disable", "--name", "hook-fail")["state"] == "disabled"
