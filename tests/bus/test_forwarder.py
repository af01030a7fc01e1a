"""The forwarder's retention, filters and batching, against a real SQLite log (and RabbitMQ)."""

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path

import aio_pika
from prometheus_client import CollectorRegistry

from tests.bus.services import RABBITMQ, require_service
from tests.bus.tcp_proxy import TcpProxy
from tests.support import wait_until_async
from thingport.bus.forwarder import BATCH, CommitSignal, Forwarder
from thingport.bus.reader import SubscriptionFilter
from thingport.core.model import StoredMessage, Subscription
from thingport.manage.service import Management
from thingport.runtime.bootstrap import build
from thingport.settings import load_settings

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"


def message(i: int, received_ms: int, kind: str = "custom", topic: str = "/pk01/dev-1/user/a") -> StoredMessage:
    return StoredMessage(i, 1, "pk01", "dev-1", "aliyun", topic, b"x" * 100, received_ms, kind, iot_id="pk01_dev-1")


def run(data_dir: Path, action):  # type: ignore[no-untyped-def]
    app = build(load_settings(data_dir=data_dir))
    stores = app.stores

    async def main():  # type: ignore[no-untyped-def]
        stores.log.start(asyncio.get_running_loop())
        return await action(stores, app.management())

    try:
        return asyncio.run(main())
    finally:
        app.close()


def test_retention_never_deletes_what_a_subscription_has_not_confirmed(data_dir: Path) -> None:
    old = int(time.time() * 1000) - 10 * 86_400_000

    async def act(stores, m: Management):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        for i in range(1, 11):
            await stores.log.append(message(i, old))
        sub = await m.create_subscription("slow", "pk01", "http", from_start=True)
        await stores.log.save_cursor(sub.id, 4)  # the sink confirmed 1-4 only
        forwarder = Forwarder(stores.log, stores.registry, CollectorRegistry(), CommitSignal(), retention_days=1)
        assert await forwarder.apply_retention() == 4
        left = [x.message_id for x in await stores.log.read_after(0, 100)]
        assert left == [5, 6, 7, 8, 9, 10]
        await m.set_subscription_enabled("slow", False)  # a paused subscription still holds its messages
        assert await forwarder.apply_retention() == 0
        await m.delete_subscription("slow")
        assert await forwarder.apply_retention() == 5  # the newest message always stays (seq never goes back)
        assert [x.message_id for x in await stores.log.read_after(0, 100)] == [10]

    run(data_dir, act)


def test_forced_retention_and_size_limit(data_dir: Path) -> None:
    recent = int(time.time() * 1000)

    async def act(stores, m: Management):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        for i in range(1, 2001):
            await stores.log.append(message(i, recent))
        sub = await m.create_subscription("held", "pk01", "http", from_start=True)
        assert sub.cursor == 0
        keep_all = Forwarder(stores.log, stores.registry, CollectorRegistry(), CommitSignal(), retention_max_mb=0.05)
        assert await keep_all.apply_retention() == 0  # over the size, but nothing is confirmed
        forced = Forwarder(stores.log, stores.registry, CollectorRegistry(), CommitSignal(), retention_max_mb=0.05,
                           retention_force=True)
        assert await forced.apply_retention() > 0
        assert await stores.log.size_bytes() <= 0.05 * 1024 * 1024 or len(await stores.log.read_after(0, 10)) == 1

    run(data_dir, act)


def test_subscription_filter() -> None:
    sub = Subscription(1, "s", ("pk01",), ("raw", "status"), "/pk01/+/user/keep/#", "http", {}, 0, True, 0)
    wanted = SubscriptionFilter(sub)
    assert wanted(message(1, 0, topic="/pk01/dev-1/user/keep/x"))
    assert not wanted(message(2, 0, topic="/pk01/dev-1/user/other"))
    assert not wanted(message(3, 0, kind="property_post", topic="/pk01/dev-1/user/keep/x"))
    assert not wanted(StoredMessage(4, 1, "other", "dev-1", "aliyun", "/pk01/dev-1/user/keep/x", b"", 0, "custom"))


def test_a_backlog_of_several_batches_survives_a_broker_cut_in_order(data_dir: Path) -> None:
    """Full batches take the read-ahead path; a cut mid-backlog must drop the read-ahead, offer the failed
    batch again, and still deliver every message in log order."""
    require_service(*RABBITMQ)
    exchange, queue = f"tp-fwd-{uuid.uuid4().hex[:8]}", f"tp-fwd-q-{uuid.uuid4().hex[:8]}"
    total = 5 * BATCH + 123

    async def act(stores, m: Management):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        for start in range(1, total + 1, 1000):
            await stores.log.append_many(tuple(message(i, 0) for i in range(start, min(start + 1000, total + 1))))
        connection = await aio_pika.connect(RABBIT_URL)
        try:
            channel = await connection.channel()
            ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            q = await channel.declare_queue(queue, durable=True)
            await q.bind(ex, "#")
            with TcpProxy("127.0.0.1", 5672) as proxy:
                url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
                await m.create_subscription("bulk", "pk01", "rabbitmq", ["raw"],
                                            options={"url": url, "exchange": exchange, "timeout": 2}, from_start=True)
                signal = CommitSignal()
                stores.log.on_commit(signal.notify)
                forwarder = Forwarder(stores.log, stores.registry, CollectorRegistry(), signal, supervise_every_s=0.05)
                await forwarder.start()
                try:
                    async def cursor() -> int:
                        return (await stores.registry.get_subscription("bulk")).cursor  # type: ignore[union-attr]

                    await wait_until_async(cursor, "the first batch forwarded", 30, 0.001,
                                           accept=lambda at: at >= BATCH)
                    proxy.cut()
                    assert await cursor() < total, "the cut came too late to test anything"
                    await asyncio.sleep(1.0)  # the broker unreachable for a while: the forwarder retries
                    proxy.restore()
                    await wait_until_async(cursor, "every message forwarded after the cut", 30, 0.05,
                                           accept=lambda at: at >= total)
                finally:
                    await forwarder.stop()
            ids = []
            while (got := await q.get(fail=False, no_ack=True)) is not None:
                ids.append(json.loads(got.body)["messageId"])
            assert set(ids) == set(range(1, total + 1))
            first_seen = list(dict.fromkeys(ids))  # a retried batch may repeat; the order may not change
            assert first_seen == sorted(first_seen)
        finally:
            with contextlib.suppress(Exception):
                channel = await connection.channel()
                await channel.queue_delete(queue)
                await channel.exchange_delete(exchange)
            await connection.close()

    run(data_dir, act)
