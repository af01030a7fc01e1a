"""RabbitMQ sink against the real broker on 127.0.0.1:5672, consumed by a real aio-pika consumer."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Self

import aio_pika
import pytest

from tests.bus.services import RABBITMQ, deliveries, eventually, first_occurrences, require_service, run
from tests.bus.tcp_proxy import TcpProxy
from thingport.bus.base import Delivery, SinkConfigError, SinkError
from thingport.bus.rabbitmq import RabbitMQSink

URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture(autouse=True)
def rabbitmq() -> None:
    require_service(*RABBITMQ)


@pytest.fixture
def exchange() -> Iterator[str]:
    """An exchange name of this test alone; the exchange is deleted afterwards."""
    name = f"thingport-test-{uuid.uuid4().hex[:12]}"
    yield name

    async def delete() -> None:
        connection = await aio_pika.connect(URL)
        try:
            channel = await connection.channel()
            await channel.exchange_delete(name)  # deleting a missing exchange is fine in AMQP 0-9-1
        finally:
            await connection.close()

    run(delete())


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 5672) as p:
        yield p


def via(proxy: TcpProxy) -> str:
    return f"amqp://guest:guest@127.0.0.1:{proxy.port}/"


class Consumer:
    """An exclusive queue bound with ``#`` to the test's exchange (declared as the sink declares it)."""

    def __init__(self, exchange: str) -> None:
        self.exchange_name = exchange
        self.received: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()

    async def __aenter__(self) -> Self:
        self.connection = await aio_pika.connect(URL)
        channel = await self.connection.channel()
        self.exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.exchange, "#")
        await queue.consume(self.received.put, no_ack=True)
        return self

    async def take(self, count: int, limit: float = 5.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
        async with asyncio.timeout(limit):
            return [await self.received.get() for _ in range(count)]

    async def quiet(self, wait: float = 0.3) -> bool:
        """True when nothing more arrives for ``wait`` seconds."""
        await asyncio.sleep(wait)
        return self.received.empty()

    async def __aexit__(self, *exc: object) -> None:
        await self.exchange.delete()
        await self.connection.close()


def assert_delivered(messages: list, batch: list[Delivery]) -> None:
    assert [m.routing_key for m in messages] == [d.route(".") for d in batch]
    assert [m.body for m in messages] == [d.body for d in batch]
    assert [m.message_id for m in messages] == [str(d.message_id) for d in batch]
    for m, d in zip(messages, batch):
        assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert m.content_type == "application/json"
        assert m.type == d.kind


def test_batches_arrive_in_order_with_routing_keys_and_properties(exchange: str) -> None:
    async def body() -> None:
        batches = [deliveries(1, "pkA"), deliveries(50, "pkA", start=2), deliveries(200, "pkB", start=52)]
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"exchange": exchange})
            try:
                await sink.open()
                for batch in batches:
                    await sink.publish(batch)
                await sink.publish([])  # nothing to do, nothing to fail
            finally:
                await sink.close()
            everything = [d for batch in batches for d in batch]
            assert_delivered(await consumer.take(len(everything)), everything)
            assert await consumer.quiet()

    run(body())


def test_publish_opens_by_itself_and_default_options() -> None:
    sink = RabbitMQSink({})
    assert (sink.url, sink.exchange_name, sink.timeout, sink.mandatory) == (URL, "thingport", 10.0, False)

    async def body(exchange: str) -> None:
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"exchange": exchange, "url": URL, "timeout": 5})
            try:
                batch = deliveries(10, "pkC")
                await sink.publish(batch)  # no open() first
            finally:
                await sink.close()
            assert_delivered(await consumer.take(10), batch)

    run(body(f"thingport-test-{uuid.uuid4().hex[:12]}"))


def test_throughput_5000_in_batches_of_500(exchange: str) -> None:
    async def body() -> float:
        batch_size, total = 500, 5000
        messages = deliveries(total, "pkT")
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"exchange": exchange})
            try:
                await sink.open()
                started = time.perf_counter()
                for i in range(0, total, batch_size):
                    await sink.publish(messages[i : i + batch_size])
                elapsed = time.perf_counter() - started
            finally:
                await sink.close()
            got = await consumer.take(total, limit=10)
            assert [m.body for m in got] == [d.body for d in messages]
        return elapsed

    elapsed = run(body())
    print(f"\nrabbitmq: 5000 deliveries of ~200 B in batches of 500: {elapsed:.2f} s, {5000 / elapsed:,.0f}/s")


def test_outage_fails_the_batch_then_reconnects(exchange: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        a, b, c = deliveries(100, "pkO"), deliveries(100, "pkO", start=101), deliveries(100, "pkO", start=201)
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"url": via(proxy), "exchange": exchange, "timeout": 2})
            try:
                await sink.publish(a)
                proxy.cut()
                for _ in range(2):  # the dead connection, then a refused reconnect
                    started = time.monotonic()
                    with pytest.raises(SinkError):
                        await sink.publish(b)
                    assert time.monotonic() - started < 3
                proxy.restore()
                await sink.publish(b)  # reconnected by itself
                await sink.publish(c)
            finally:
                await sink.close()
            expected = a + b + c
            received: list[bytes] = []
            while len(first_occurrences(received)) < len(expected):
                received += [m.body for m in await consumer.take(1)]
            assert first_occurrences(received) == [d.body for d in expected]
            assert await consumer.quiet()

    run(body())


def test_hung_broker_times_out_then_recovers(exchange: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        a, b = deliveries(20, "pkH"), deliveries(20, "pkH", start=21)
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"url": via(proxy), "exchange": exchange, "timeout": 1})
            try:
                await sink.publish(a)
                proxy.stall()
                for _ in range(2):  # the hung connection, then a reconnect that hangs in the handshake
                    started = time.monotonic()
                    with pytest.raises(SinkError, match="within 1 s"):
                        await sink.publish(b)
                    assert time.monotonic() - started < 1.5
                proxy.restore()
                await sink.publish(b)
            finally:
                await sink.close()
            received: list[bytes] = []
            while len(first_occurrences(received)) < 40:
                received += [m.body for m in await consumer.take(1)]
            assert first_occurrences(received) == [d.body for d in a + b]
        assert await eventually(lambda: proxy.connections == 0)  # the abandoned connections were closed, not leaked

    run(body())


def test_a_connection_lost_mid_batch_fails_it_at_once(exchange: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = RabbitMQSink({"url": via(proxy), "exchange": exchange, "timeout": 5})
        try:
            await sink.publish(deliveries(5, "pkL"))
            proxy.stall()  # the batch goes out, no confirm comes back...
            task = asyncio.create_task(sink.publish(deliveries(200, "pkL", start=6)))
            await asyncio.sleep(0.3)
            proxy.cut()  # ...and then the connection drops
            started = time.monotonic()
            with pytest.raises(SinkError):
                await task
            assert time.monotonic() - started < 1  # noticed at once, not at the 5 s timeout
            proxy.restore()
            await sink.publish(deliveries(200, "pkL", start=6))
        finally:
            await sink.close()

    run(body())


def test_cancelled_publish_raises_cancelled_and_the_sink_recovers(exchange: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = RabbitMQSink({"url": via(proxy), "exchange": exchange, "timeout": 5})
        try:
            await sink.publish(deliveries(5, "pkX"))
            proxy.stall()
            task = asyncio.create_task(sink.publish(deliveries(5, "pkX", start=6)))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task  # a forwarder shutting down is not told "SinkError"
            proxy.restore()
            await sink.publish(deliveries(5, "pkX", start=6))
        finally:
            await sink.close()

    run(body())


def test_unreachable_broker_fails_fast() -> None:
    async def body() -> None:
        with TcpProxy("127.0.0.1", 5672) as proxy:
            proxy.cut()  # a port where nothing listens
            sink = RabbitMQSink({"url": f"amqp://guest:secret-pw@127.0.0.1:{proxy.port}/", "timeout": 5})
            started = time.monotonic()
            with pytest.raises(SinkError) as failure:
                await sink.open()
            with pytest.raises(SinkError):
                await sink.publish(deliveries(1, "pkU"))
            assert time.monotonic() - started < 2
            assert "secret-pw" not in str(failure.value)
            await sink.close()
            await sink.close()

    run(body())


def test_mandatory_fails_a_batch_nobody_is_bound_for(exchange: str) -> None:
    async def body() -> None:
        sink = RabbitMQSink({"exchange": exchange, "mandatory": True, "timeout": 5})
        try:
            with pytest.raises(SinkError, match="unconfirmed"):
                await sink.publish(deliveries(5, "pkM"))
        finally:
            await sink.close()

    run(body())


def test_wrong_credentials_fail_open() -> None:
    async def body() -> None:
        sink = RabbitMQSink({"url": "amqp://guest:not-the-password@127.0.0.1:5672/", "timeout": 5})
        with pytest.raises(SinkError) as failure:
            await sink.open()
        assert "not-the-password" not in str(failure.value)
        await sink.close()

    run(body())


@pytest.mark.parametrize(
    "options, option",
    [
        ({"url": "http://127.0.0.1/"}, "url"),
        ({"url": 5672}, "url"),
        ({"url": "amqp://127.0.0.1:notaport/"}, "url"),
        ({"exchange": ""}, "exchange"),
        ({"exchange": "has space"}, "exchange"),
        ({"exchange": "amq.topic"}, "exchange"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"mandatory": "yes"}, "mandatory"),
        ({"exchnage": "typo"}, "exchnage"),
    ],
)
def test_bad_options_name_the_option(options: dict, option: str) -> None:
    with pytest.raises(SinkConfigError, match=f"'{option}'"):
        RabbitMQSink(options)
