"""Alarm state survives the server being SIGKILLed: after a restart nothing is raised twice, a pending
duration runs on from when it started, and every change still reaches the subscription (at least once,
each change named by its eventId). On SQLite with one process, and on PostgreSQL with two workers (one of
which holds the evaluator's lease)."""

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import fresh_database
from tests.support import DeviceClient, ServerProcess, cli, wait_until
from thingport.bus.envelope import envelope_kind
from thingport.runtime.bootstrap import build


def report(client: DeviceClient, d: dict, token: str, temperature: float) -> None:
    topic = f"/sys/{d['productKey']}/{d['deviceName']}/thing/event/property/post"
    reply = client.publish(topic, json.dumps({"id": "1", "params": {"temperature": temperature}}).encode(), token)
    assert reply.json["code"] == 0, reply.json


def all_alarms(data_dir: Path) -> list[dict]:
    return cli(data_dir, "alarm", "list", "--state", "active", "--state", "acknowledged", "--state", "cleared")


def pulled_events(server: ServerProcess) -> list[dict]:
    app = build(server.settings(), create=False)
    try:
        messages, _ = asyncio.run(app.management().pull("ops", 1000))
    finally:
        app.close()
    return [json.loads(m.payload) for m in messages if envelope_kind(m) == "alarm"]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_alarm_state_survives_sigkill(tmp_path: Path, engine: str) -> None:
    data_dir = tmp_path / "data"
    url = fresh_database() if engine == "postgresql" else None
    args: tuple[str, ...] = ("--workers", "2") if url else ()
    server = ServerProcess(data_dir, database_url=url, args=args)
    product = cli(data_dir, "product", "create", "--name", "p")
    pk = product["productKey"]
    d = cli(data_dir, "device", "create", "--product-key", pk, "--name", "dev-1")
    cli(data_dir, "alarm", "define", "--product-key", pk, "--name", "hot", "--severity", "major",
        "--when", "temperature > 38", "--clear-when", "temperature < 36")
    cli(data_dir, "alarm", "define", "--product-key", pk, "--name", "long", "--severity", "critical",
        "--when", "temperature > 38", "--for", "4s")
    cli(data_dir, "subscription", "create", "--name", "ops", "--product-key", pk, "--sink", "http", "--kinds", "alarm")

    server.start()
    try:
        client = server.client()
        token = client.token(pk, d["deviceName"], d["deviceSecret"])
        report(client, d, token, 39)
        started = time.time()
        hot = wait_until(lambda: [a for a in all_alarms(data_dir) if a["name"] == "hot"], "hot raised")[0]
        cli(data_dir, "alarm", "ack", str(hot["id"]), "--by", "alice")
        assert not [a for a in all_alarms(data_dir) if a["name"] == "long"]  # 4 s have not passed
        server.kill()  # "long" is pending, the acknowledgement perhaps not yet in the log
        client.close()
        report_again = 39  # the same value after the restart: neither alarm is raised twice
        server.start()
        client = server.client()
        token = client.token(pk, d["deviceName"], d["deviceSecret"])
        report(client, d, token, report_again)
        long = wait_until(lambda: [a for a in all_alarms(data_dir) if a["name"] == "long"], "long raised",
                          timeout=20)[0]
        assert long["raisedAt"] / 1000 - started < 4 + 3  # from when it started, not from the restart
        server.kill()
        server.start()
        client = server.client()
        token = client.token(pk, d["deviceName"], d["deviceSecret"])
        report(client, d, token, 35)
        wait_until(lambda: {a["state"] for a in all_alarms(data_dir)} == {"cleared"}, "both cleared", timeout=20)
        client.close()
        alarms: list[dict[str, Any]] = all_alarms(data_dir)
        assert sorted(a["name"] for a in alarms) == ["hot", "long"]  # each raised once
        changes = {(a["id"], c["state"]) for a in cli(data_dir, "alarm", "history", "--product-key", pk,
                                                       "--device-name", "dev-1") for c in a["changes"]}
        assert len(changes) == 5  # hot: active, acknowledged, cleared; long: active, cleared
        events = wait_until(lambda: (e := pulled_events(server)) and {(x["alarmId"], x["state"]) for x in e}
                            == changes and e, "every change in the subscription", timeout=20)
        assert len({x["eventId"] for x in events}) == 5  # duplicates, if any, carry the same eventId
    finally:
        server.stop()
