"""The publisher-only AMQP client under the RabbitMQ sink, against the real broker on 127.0.0.1:5672.

What the sink tests do not reach: URL parsing, frames cut anywhere by TCP, bodies over one frame, the
server's own event loop (uvloop), heartbeats, and the broker closing the channel or refusing the vhost.
"""

import asyncio
import time
from collections.abc import Iterator

import aio_pika
import pytest
import uvloop

from tests.bus.services import RABBITMQ, deliveries, require_service, run
from tests.bus.sinks import RABBITMQ_URL as URL
from tests.bus.sinks import Consumer, RabbitMQUnderTest, assert_delivered, via
from tests.bus.tcp_proxy import TcpProxy
from thingport.bus.amqp import Endpoint, basic_properties, properties_around_id, shortstr
from thingport.bus.base import Delivery, SinkError
from thingport.bus.rabbitmq import RabbitMQSink


@pytest.fixture
def exchange() -> Iterator[str]:
    require_service(*RABBITMQ)
    under_test = RabbitMQUnderTest()
    yield under_test.exchange
    under_test.cleanup()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    require_service(*RABBITMQ)
    with TcpProxy("127.0.0.1", 5672) as p:
        yield p


@pytest.mark.parametrize(
    "url, expected",
    [
        ("amqp://127.0.0.1", ("127.0.0.1", 5672, False, "guest", "guest", "/", 60)),
        ("amqp://u:p@h:1234/", ("h", 1234, False, "u", "p", "/", 60)),
        ("amqps://u%40x:p%2Fw@h/vh", ("h", 5671, True, "u@x", "p/w", "vh", 60)),
        ("amqp://h/%2F?heartbeat=5", ("h", 5672, False, "guest", "guest", "/", 5)),
        ("amqp://h/a%2Fb?heartbeat=0", ("h", 5672, False, "guest", "guest", "a/b", 0)),
    ],
)
def test_endpoint_from_url(url: str, expected: tuple) -> None:
    e = Endpoint.from_url(url)
    assert (e.host, e.port, e.tls, e.username, e.password, e.vhost, e.heartbeat) == expected


@pytest.mark.parametrize("url", ["http://h/", "amqp:///vh", "amqp://h/?heartbeat=-1", "amqp://h/?heartbeat=x"])
def test_endpoint_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        Endpoint.from_url(url)


def test_properties_around_the_id_are_the_whole_properties() -> None:
    fixed = {"content_type": "application/json", "delivery_mode": 2, "message_type": "event", "app_id": "thingport"}
    before, after = properties_around_id(**fixed)
    assert before + shortstr("912080266061676544") + after == basic_properties(
        message_id="912080266061676544", **fixed
    )
    with pytest.raises(ValueError):
        shortstr("x" * 256)


def test_frames_cut_anywhere_are_read(exchange: str, proxy: TcpProxy) -> None:
    """Handshake replies and confirms arrive 1-7 bytes at a time: every frame boundary case is met."""
    proxy.trickle(True)

    async def body() -> None:
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"url": via(proxy), "exchange": exchange, "mandatory": True, "timeout": 10})
            try:
                batches = [deliveries(60, "pkT"), deliveries(60, "pkT", start=61)]
                for batch in batches:
                    await sink.publish(batch)
            finally:
                await sink.close()
            everything = [d for batch in batches for d in batch]
            assert_delivered(await consumer.take(len(everything)), everything)

    run(body(), limit=30)


def test_bodies_larger_than_a_frame_arrive_whole(exchange: str) -> None:
    big = bytes(range(256)) * 2000  # 512 kB: several body frames at RabbitMQ's 128 kB frame_max
    batch = [Delivery(1, 11, "pkB", "dev-1", "raw", b'"' + big.hex().encode()[:700_000] + b'"'),
             Delivery(2, 12, "pkB", "dev-1", "raw", b"{}"),
             Delivery(3, 13, "pkB", "dev-2", "raw", b"")]

    async def body() -> None:
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"exchange": exchange})
            try:
                await sink.publish(batch)
            finally:
                await sink.close()
            assert_delivered(await consumer.take(3), batch)

    run(body())


def test_works_on_uvloop(exchange: str) -> None:
    """The server runs its loop on uvloop, whose transports are not asyncio's classes."""

    async def body() -> None:
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"exchange": exchange})
            try:
                batch = deliveries(300, "pkU")
                await sink.publish(batch)
            finally:
                await sink.close()
            assert_delivered(await consumer.take(300), batch)

    uvloop.run(asyncio.wait_for(body(), 15))


def test_heartbeats_keep_an_idle_connection_and_detect_a_silent_one(exchange: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = RabbitMQSink({"url": via(proxy) + "?heartbeat=1", "exchange": exchange, "timeout": 10})
        try:
            await sink.publish(deliveries(5, "pkH"))
            await asyncio.sleep(3.5)  # the broker drops a client silent for 2 heartbeats: ours must beat
            await sink.publish(deliveries(5, "pkH", start=6))
            assert proxy.accepted == 1, "the idle connection should have stayed up"
            proxy.stall()
            started = time.monotonic()
            with pytest.raises(SinkError, match="heartbeat"):
                await sink.publish(deliveries(5, "pkH", start=11))
            assert time.monotonic() - started < 4  # noticed by the missed heartbeats, not the 10 s timeout
        finally:
            proxy.restore()
            await sink.close()

    run(body(), limit=20)


def test_broker_closing_the_channel_fails_open_with_its_reason(exchange: str) -> None:
    async def body() -> None:
        connection = await aio_pika.connect(URL)
        async with connection:
            channel = await connection.channel()
            await channel.declare_exchange(exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        sink = RabbitMQSink({"exchange": exchange, "timeout": 5})
        with pytest.raises(SinkError, match="406 PRECONDITION_FAILED"):
            await sink.open()  # declared as a topic exchange: the broker refuses and closes the channel
        await sink.close()

    run(body())


def test_unknown_vhost_and_wrong_password_say_why() -> None:
    require_service(*RABBITMQ)

    async def body() -> None:
        for url, reason in [("amqp://guest:guest@127.0.0.1:5672/no-such-vhost", "530"),
                            ("amqp://guest:wrong@127.0.0.1:5672/", "403")]:
            sink = RabbitMQSink({"url": url, "timeout": 5})
            with pytest.raises(SinkError, match=reason):
                await sink.open()
            await sink.close()

    run(body())
