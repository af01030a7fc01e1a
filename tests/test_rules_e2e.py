"""Rules end to end: devices report over HTTPS to a running server, each rule selects and reshapes what it
matches and forwards it to a real sink of every type (webhook receiver, RabbitMQ, NATS JetStream, Mosquitto).

What a rule forwards is at least once and in order per device, a message it cannot evaluate is counted and
skipped without stalling it or any other rule, a sink that is down makes the rule wait (retrying, failing)
and it catches up when the sink is back, and nothing acknowledged is lost to SIGKILL.
"""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats

from tests import test_forwarding_e2e
from tests.bus.services import MOSQUITTO, NATS, RABBITMQ, require_service
from tests.bus.sinks import Subscriber, delete_stream
from tests.bus.test_webhook import SECRET, Receiver, _Server
from tests.support import ServerProcess, cli, free_port, wait_until
from tests.test_forwarding_e2e import Fleet, drain

queue_name = test_forwarding_e2e.queue_name  # the fixture: a fresh durable exchange and queue bound to it

STATEMENT = 'SELECT n, t * 2 AS doubled, deviceName() AS dn FROM "/{pk}/+/user/data" WHERE t > 10'


def rule_shown(data_dir: Path, name: str) -> dict:
    return cli(data_dir, "rule", "show", "--name", name)


def wait_for_rule(data_dir: Path, name: str, accept: Callable[[dict], object], what: str, timeout: float = 30) -> dict:
    return wait_until(lambda: rule_shown(data_dir, name), f"rule {name}: {what}", timeout, 0.2, accept=accept)


def provision(data_dir: Path, devices: int = 2) -> tuple[str, list[dict]]:
    product = cli(data_dir, "product", "create", "--name", "rules")
    pk = product["productKey"]
    return pk, [cli(data_dir, "device", "create", "--product-key", pk, "--name", f"unit-{i}") for i in range(devices)]


def report(server: ServerProcess, devices: list[dict], documents: Callable[[int], list[tuple[str, Any]]],
           count: int) -> None:
    """Each device sends ``documents(i)`` (suffix, payload) for i in range(count); every one must be taken."""
    for device in devices:
        client = server.client()
        pk, dn = device["productKey"], device["deviceName"]
        token = client.token(pk, dn, device["deviceSecret"])
        for i in range(count):
            for suffix, payload in documents(i):
                body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                reply = client.publish(f"/{pk}/{dn}/user/{suffix}", body, token).json
                assert reply["code"] == 0, reply
        client.close()


# --- the sinks, each read back by a real client of it -----------------------------------------------------------


class Webhook:
    def __init__(self, port: int = 0) -> None:
        self.receiver = Receiver()
        self.server = _Server(("127.0.0.1", port), self.receiver.handler())
        self.receiver.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def options(self) -> list[str]:
        return [f"url=http://127.0.0.1:{self.receiver.port}/hook", f"secret={SECRET}"]

    def envelopes(self) -> list[dict]:
        assert all(r.signature_ok for r in self.receiver.requests)
        return [m for r in self.receiver.requests for m in json.loads(r.body)["messages"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Nats:
    def __init__(self) -> None:
        token = uuid.uuid4().hex[:10]
        self.stream, self.prefix = f"TP_RULES_{token}", f"tprules.{token}"

    def options(self) -> list[str]:
        return [f"stream={self.stream}", f"subject_prefix={self.prefix}"]

    def envelopes(self) -> list[dict]:
        async def read() -> list[dict]:
            nc = await nats.connect("nats://127.0.0.1:4222")
            try:
                js = nc.jetstream()
                count = (await js.stream_info(self.stream)).state.messages
                sub = await js.pull_subscribe(f"{self.prefix}.>", stream=self.stream)
                got: list[dict] = []
                while len(got) < count:
                    for msg in await sub.fetch(min(500, count - len(got)), timeout=5):
                        await msg.ack()
                        doc = json.loads(msg.data)
                        assert msg.headers["Nats-Msg-Id"] == f"{doc['messageId']}:{doc['rule']}"
                        got.append(doc)
                return got
            finally:
                await nc.close()

        return asyncio.run(read())


def assert_reshaped(envelopes: list[dict], rule: str, devices: list[dict], count: int) -> None:
    """Every report with t > 10, reshaped, once at least and in order per device; nothing else."""
    per_device: dict[str, list[dict]] = {}
    for envelope in envelopes:
        assert envelope["rule"] == rule
        assert envelope["payloadEncoding"] == "json" and envelope["kind"] == "raw"
        assert envelope["topic"].endswith("/user/data")
        per_device.setdefault(envelope["device"]["deviceName"], []).append(envelope["payload"])
    for device in devices:
        dn = device["deviceName"]
        want = [{"n": i, "doubled": 2 * i, "dn": dn} for i in range(count) if i > 10]
        got = list({json.dumps(p): p for p in per_device.get(dn, [])}.values())  # duplicates allowed, order kept
        assert got == want, dn
    assert set(per_device) == {d["deviceName"] for d in devices}


def test_a_rule_per_sink_type_selects_and_reshapes_what_devices_report(
    tmp_path: Path, queue_name: tuple[str, str]
) -> None:
    for service in (RABBITMQ, NATS, MOSQUITTO):
        require_service(*service)
    data_dir = tmp_path / "data"
    pk, devices = provision(data_dir)
    statement = STATEMENT.format(pk=pk)
    exchange, queue = queue_name
    webhook, stream = Webhook(), Nats()
    mqtt_prefix = f"tprules/{uuid.uuid4().hex[:10]}"
    sinks = {
        "to-webhook": ("webhook", webhook.options()),
        "to-rabbitmq": ("rabbitmq", [f"exchange={exchange}"]),
        "to-nats": ("nats", stream.options()),
        "to-mqtt": ("mqtt", [f"topic_prefix={mqtt_prefix}"]),
    }
    for name, (sink, options) in sinks.items():
        created = cli(data_dir, "rule", "create", "--name", name, "--statement", statement, "--sink", sink,
                      *(arg for option in options for arg in ("--option", option)))
        assert created["actions"] == [{"kind": "forward", "sink": sink, "options": created["actions"][0]["options"]}]
        assert created["enabled"] and created["matched"] == 0 and created["backlog"] == 0
    count = 20
    server = ServerProcess(data_dir).start()
    try:
        with Subscriber(mqtt_prefix) as subscriber:
            report(server, devices, lambda i: [("data", {"n": i, "t": i}), ("other", {"n": i, "t": 99})], count)
            for name in sinks:
                shown = wait_for_rule(data_dir, name, lambda r: r["backlog"] == 0 and r["matched"] == 18,
                                      "all evaluated and delivered")
                assert shown["failed"] == 0 and shown["state"] == "running" and shown["lastError"] is None
            mqtt = [json.loads(body) for topic, body in subscriber.received()]
            assert all(topic.startswith(f"{mqtt_prefix}/{pk}/") and topic.endswith("/raw")
                       for topic, _ in subscriber.received())
    finally:
        server.stop()
        webhook.close()
    try:
        assert_reshaped(webhook.envelopes(), "to-webhook", devices, count)
        assert_reshaped(drain(queue), "to-rabbitmq", devices, count)
        assert_reshaped(stream.envelopes(), "to-nats", devices, count)
        assert_reshaped(mqtt, "to-mqtt", devices, count)
    finally:
        delete_stream(stream.stream)


def test_messages_a_rule_cannot_evaluate_are_counted_and_skipped_without_stalling_it_or_others(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pk, devices = provision(data_dir, devices=1)
    webhook = Webhook()
    try:
        strict = f'SELECT t * 2 AS doubled FROM "/{pk}/+/user/data"'
        every = f'SELECT * FROM "/{pk}/+/user/data"'
        for name, statement in (("strict", strict), ("every", every)):
            cli(data_dir, "rule", "create", "--name", name, "--statement", statement, "--sink", "webhook",
                *(arg for option in webhook.options() for arg in ("--option", option)))
        server = ServerProcess(data_dir).start()
        try:
            payloads: list[Any] = [{"t": 1}, {"u": 2}, {"t": "hot"}, b"\x00\x01binary", {"t": 3}]
            report(server, devices, lambda i: [("data", payloads[i])], len(payloads))
            strict_shown = wait_for_rule(data_dir, "strict", lambda r: r["backlog"] == 0 and r["failed"] == 3,
                                         "three failures counted")
            every_shown = wait_for_rule(data_dir, "every", lambda r: r["backlog"] == 0 and r["matched"] == 4,
                                        "four JSON objects forwarded")
        finally:
            server.stop()
        assert strict_shown["matched"] == 2 and strict_shown["state"] == "running"
        assert "the payload is not JSON" in strict_shown["lastError"]  # the newest of the three
        assert strict_shown["lastErrorAt"] > 0
        assert every_shown["failed"] == 1 and every_shown["lastError"].endswith("the payload is not JSON")
        forwarded = {(e["rule"], json.dumps(e["payload"])) for e in webhook.envelopes()}
        assert forwarded == {("strict", '{"doubled": 2}'), ("strict", '{"doubled": 6}'),
                             ("every", '{"t": 1}'), ("every", '{"u": 2}'), ("every", '{"t": "hot"}'),
                             ("every", '{"t": 3}')}
    finally:
        webhook.close()


def test_a_rule_whose_sink_is_down_waits_retrying_then_failing_and_catches_up(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pk, devices = provision(data_dir, devices=1)
    port = free_port()
    cli(data_dir, "rule", "create", "--name", "later", "--statement", f'SELECT n FROM "/{pk}/+/user/data"',
        "--sink", "webhook", "--option", f"url=http://127.0.0.1:{port}/hook", "--option", f"secret={SECRET}",
        "--option", "timeout=1", "--no-check")
    healthy = Webhook()
    cli(data_dir, "rule", "create", "--name", "healthy", "--statement", f'SELECT n FROM "/{pk}/+/user/data"',
        "--sink", "webhook", *(arg for option in healthy.options() for arg in ("--option", option)))
    server = ServerProcess(data_dir).start()
    webhook = None
    try:
        report(server, devices, lambda i: [("data", {"n": i})], 5)
        failing = wait_for_rule(data_dir, "later", lambda r: r["state"] == "failing", "failing", timeout=40)
        assert failing["backlog"] > 0 and failing["matched"] == 0
        assert failing["sinkError"].startswith("action 1 (forward to webhook): ")
        # the other rule is not held up by it
        wait_for_rule(data_dir, "healthy", lambda r: r["backlog"] == 0 and r["matched"] == 5, "delivered")
        assert [e["payload"]["n"] for e in healthy.envelopes()] == list(range(5))
        webhook = Webhook(port)
        wait_for_rule(data_dir, "later", lambda r: r["backlog"] == 0 and r["state"] == "running", "caught up",
                      timeout=40)
    finally:
        server.stop()
        healthy.close()
        if webhook is not None:
            webhook.close()
    assert [e["payload"]["n"] for e in webhook.envelopes()] == list(range(5))
    assert rule_shown(data_dir, "later")["sinkError"] is None


def test_sigkill_mid_load_then_restart_forwards_every_matching_acknowledged_report(
    tmp_path: Path, queue_name: tuple[str, str]
) -> None:
    require_service(*RABBITMQ)
    exchange, queue = queue_name
    data_dir = tmp_path / "data"
    pk, devices = provision(data_dir, devices=3)
    cli(data_dir, "rule", "create", "--name", "evens",
        "--statement", f'SELECT n, deviceName() AS dn FROM "/{pk}/+/user/reading" WHERE n % 2 = 0',
        "--sink", "rabbitmq", "--option", f"exchange={exchange}", "--option", "timeout=3")
    server = ServerProcess(data_dir).start()
    fleet = Fleet(server, devices).start()
    time.sleep(1.5)
    server.kill()
    fleet.stop()
    restarted = ServerProcess(data_dir).start()
    try:
        wait_for_rule(data_dir, "evens", lambda r: r["backlog"] == 0, "caught up after the restart")
    finally:
        restarted.stop()
    received: dict[str, list[int]] = {}
    for envelope in drain(queue):
        assert envelope["rule"] == "evens" and envelope["payload"]["dn"] == envelope["device"]["deviceName"]
        received.setdefault(envelope["payload"]["dn"], []).append(envelope["payload"]["n"])
    total = 0
    for dn, readings in fleet.acked.items():
        want = [n for n, _ in readings if n % 2 == 0]
        got = received.get(dn, [])
        assert not set(want) - set(got), f"{dn}: acknowledged readings never forwarded"
        first_seen = list(dict.fromkeys(got))
        assert first_seen == sorted(first_seen), f"{dn}: forwarded out of order"
        assert all(n % 2 == 0 for n in got)
        total += len(want)
    assert total > 25, "too few reports to prove anything"


def test_on_postgresql_with_two_workers_one_process_runs_each_rule(tmp_path: Path) -> None:
    from tests.postgres import fresh_database

    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, database_url=fresh_database(), args=("--workers", "2"))
    pk, devices = provision(data_dir, devices=2)
    webhook = Webhook()
    try:
        cli(data_dir, "rule", "create", "--name", "pg", "--statement",
            f'SELECT n, deviceName() AS dn FROM "/{pk}/+/user/data" WHERE n >= 0',
            "--sink", "webhook", *(arg for option in webhook.options() for arg in ("--option", option)))
        server.start()
        try:
            report(server, devices, lambda i: [("data", {"n": i})], 15)
            wait_for_rule(data_dir, "pg", lambda r: r["backlog"] == 0 and r["matched"] == 30, "all delivered")
        finally:
            server.stop()
        per_device: dict[str, list[int]] = {}
        for envelope in webhook.envelopes():
            per_device.setdefault(envelope["payload"]["dn"], []).append(envelope["payload"]["n"])
        # in order, and once each: a second process running the rule would have sent them twice
        assert per_device == {d["deviceName"]: list(range(15)) for d in devices}
    finally:
        webhook.close()


def test_a_rule_raises_and_another_clears_an_alarm_on_the_reporting_device(tmp_path: Path) -> None:
    """The alarm action: what a rule emits raises its alarm on the message's device (the output as details),
    once however often it matches while open; a second rule clears it."""
    data_dir = tmp_path / "data"
    pk, devices = provision(data_dir, devices=1)
    dn = devices[0]["deviceName"]
    hot = f'SELECT t, deviceName() AS dn FROM "/{pk}/+/user/data" WHERE t > 38'
    cool = f'SELECT t FROM "/{pk}/+/user/data" WHERE t < 36'
    cli(data_dir, "rule", "create", "--name", "hot", "--statement", hot,
        "--action", '{"kind": "alarm", "name": "overheat", "severity": "critical"}')
    shown = cli(data_dir, "rule", "create", "--name", "cool", "--statement", cool,
                "--action", '{"kind": "alarm", "name": "overheat", "clear": true}')
    assert shown["actions"] == [{"kind": "alarm", "name": "overheat", "severity": "major", "clear": True}]
    server = ServerProcess(data_dir).start()
    try:
        report(server, devices, lambda i: [("data", {"t": [40, 41, 37][i]})], 3)
        for name in ("hot", "cool"):
            wait_for_rule(data_dir, name, lambda r: r["backlog"] == 0, "caught up")
        raised = cli(data_dir, "alarm", "list", "--product-key", pk)
        assert [(a["name"], a["severity"], a["state"], a["deviceName"]) for a in raised] == [
            ("overheat", "critical", "active", dn)]  # two matches, one open alarm
        assert raised[0]["details"] == {"t": 40, "dn": dn, "rule": "hot"}
        report(server, devices, lambda i: [("data", {"t": 30})], 1)
        wait_for_rule(data_dir, "cool", lambda r: r["backlog"] == 0 and r["matched"] == 1, "the clear taken")
        cleared = wait_until(lambda: cli(data_dir, "alarm", "list", "--product-key", pk, "--state", "cleared"),
                             "the alarm cleared", 10, 0.2, accept=bool)
    finally:
        server.stop()
    assert [(a["name"], a["state"]) for a in cleared] == [("overheat", "cleared")]
    assert cli(data_dir, "alarm", "list", "--product-key", pk) == []
