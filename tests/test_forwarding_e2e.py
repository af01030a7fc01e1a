"""Forwarding end to end: devices report over HTTPS to a running server, a real RabbitMQ receives.

Nothing acknowledged to a device may fail to reach the sink: not when the broker link is cut and
restored while devices report, not when the server is killed with SIGKILL mid-stream and restarted.
"""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from tests.bus.services import RABBITMQ, require_service
from tests.bus.tcp_proxy import TcpProxy
from tests.support import ServerProcess, cli, subscription, wait_until


@pytest.fixture
def queue_name() -> Iterator[tuple[str, str]]:
    """A fresh durable exchange and a durable queue bound to all of it; deleted afterwards."""
    require_service(*RABBITMQ)
    exchange, queue = f"tp-e2e-{uuid.uuid4().hex[:8]}", f"tp-e2e-q-{uuid.uuid4().hex[:8]}"

    async def declare() -> None:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        async with connection:
            channel = await connection.channel()
            ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            q = await channel.declare_queue(queue, durable=True)
            await q.bind(ex, "#")

    async def delete() -> None:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue)
            await channel.exchange_delete(exchange)

    asyncio.run(declare())
    yield exchange, queue
    asyncio.run(delete())


def drain(queue: str) -> list[dict]:
    async def take() -> list[dict]:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        async with connection:
            channel = await connection.channel()
            q = await channel.declare_queue(queue, durable=True)
            got = []
            while (message := await q.get(fail=False, no_ack=True)) is not None:
                got.append(json.loads(message.body))
            return got

    return asyncio.run(take())


class Fleet:
    """Devices reporting numbered readings from threads; records what was acknowledged, in order."""

    def __init__(self, server: ServerProcess, devices: list[dict]) -> None:
        self.server, self.devices = server, devices
        self.acked: dict[str, list[tuple[int, int]]] = {d["deviceName"]: [] for d in devices}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._report, args=(d,)) for d in devices]

    def start(self) -> "Fleet":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def _report(self, device: dict) -> None:
        client = self.server.client()
        pk, dn = device["productKey"], device["deviceName"]
        try:
            token = client.token(pk, dn, device["deviceSecret"])
        except Exception:
            return
        n = 0
        while not self._stop.is_set():
            try:
                doc = client.publish(f"/{pk}/{dn}/user/reading", json.dumps({"n": n}).encode(), token).json
            except Exception:  # the server went away mid-request: never acknowledged
                return
            if doc["code"] == 0:
                self.acked[dn].append((n, doc["info"]["messageId"]))
            n += 1
            time.sleep(0.015)
        client.close()


def wait_for_backlog_zero(data_dir: Path, name: str, timeout: float = 30.0) -> None:
    wait_until(lambda: subscription(data_dir, name), f"subscription {name} with no backlog", timeout, 0.3,
               accept=lambda shown: shown["backlog"] == 0)


def assert_all_delivered_in_order(acked: dict[str, list[tuple[int, int]]], envelopes: list[dict]) -> None:
    received: dict[str, list[int]] = {}
    for envelope in envelopes:
        received.setdefault(envelope["device"]["deviceName"], []).append(envelope["payload"]["n"])
    total = 0
    for device, readings in acked.items():
        got = received.get(device, [])
        missing = {n for n, _ in readings} - set(got)
        assert not missing, f"{device}: acknowledged readings never forwarded: {sorted(missing)[:10]}"
        first_seen = list(dict.fromkeys(got))  # duplicates are allowed (at least once), reordering is not
        assert first_seen == sorted(first_seen), f"{device}: forwarded out of order"
        total += len(readings)
    assert total > 50, "too few reports to prove anything"


def provision(data_dir: Path, exchange: str, url: str, devices: int = 3) -> list[dict]:
    product = cli(data_dir, "product", "create", "--name", "fleet")
    fleet = [cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", f"unit-{i:02d}")
             for i in range(devices)]
    cli(data_dir, "subscription", "create", "--name", "to-rabbit", "--product-key", product["productKey"],
        "--sink", "rabbitmq", "--kinds", "raw", "--option", f"url={url}", "--option", f"exchange={exchange}",
        "--option", "timeout=3")
    return fleet


def test_broker_outage_while_devices_report_loses_nothing(tmp_path: Path, queue_name: tuple[str, str]) -> None:
    exchange, queue = queue_name
    with TcpProxy("127.0.0.1", 5672) as proxy:
        data_dir = tmp_path / "data"
        devices = provision(data_dir, exchange, f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
        server = ServerProcess(data_dir).start()
        try:
            fleet = Fleet(server, devices).start()
            time.sleep(1.0)
            proxy.cut()  # the broker is gone while devices keep reporting
            # the forwarder notices (its 3 s timeout) and messages wait while the broker is unreachable
            wait_until(lambda: subscription(data_dir, "to-rabbit"), "the forwarder retrying with a backlog", 15, 0.1,
                       accept=lambda shown: shown["state"] != "running" and shown["backlog"] > 0)
            proxy.restore()
            time.sleep(1.0)
            fleet.stop()
            wait_for_backlog_zero(data_dir, "to-rabbit")
        finally:
            server.stop()
    assert_all_delivered_in_order(fleet.acked, drain(queue))


def test_sigkill_mid_stream_then_restart_delivers_every_acknowledged_message(
    tmp_path: Path, queue_name: tuple[str, str]
) -> None:
    exchange, queue = queue_name
    data_dir = tmp_path / "data"
    devices = provision(data_dir, exchange, "amqp://guest:guest@127.0.0.1:5672/")
    server = ServerProcess(data_dir).start()
    fleet = Fleet(server, devices).start()
    time.sleep(1.5)
    server.kill()
    fleet.stop()
    restarted = ServerProcess(data_dir).start()
    try:
        wait_for_backlog_zero(data_dir, "to-rabbit")
    finally:
        restarted.stop()
    assert_all_delivered_in_order(fleet.acked, drain(queue))
