"""What every broker sink must do, against the real brokers: RabbitMQ, NATS JetStream and MQTT (Mosquitto).

Each test runs once per sink (``tests/bus/sinks.py`` says how to build each one, read back what reached its
broker, and clean up); outages go through a ``TcpProxy`` between the sink and its broker. What only one sink
does stays in its own module (test_rabbitmq.py, test_nats.py, test_mqtt.py).
"""

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.bus.services import deliveries, require_service, run
from tests.bus.sinks import SINKS, SinkUnderTest
from tests.bus.tcp_proxy import TcpProxy
from tests.support import wait_until_async
from thingport.bus.base import SinkError


@pytest.fixture(params=SINKS, ids=[kind.name for kind in SINKS])
def kind(request: pytest.FixtureRequest) -> Iterator[SinkUnderTest]:
    """One sink kind, its broker required (skipped if missing, failed under CI=true), cleaned up after."""
    under_test: SinkUnderTest = request.param()
    require_service(*under_test.service)
    yield under_test
    under_test.cleanup()


@pytest.fixture
def proxy(kind: SinkUnderTest) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", kind.port) as p:
        yield p


def test_batches_arrive_in_order_with_their_routes(kind: SinkUnderTest) -> None:
    async def body() -> None:
        batches = [deliveries(1, "pkA"), deliveries(50, "pkA", start=2), deliveries(200, "pkB", start=52)]
        async with kind.reading() as reader:
            sink = kind.sink()
            try:
                await sink.open()  # NATS: creates the stream
                for batch in batches:
                    await sink.publish(batch)
                await sink.publish([])  # nothing to do, nothing to fail
            finally:
                await sink.close()
            await reader.exactly([d for batch in batches for d in batch])

    run(body())


def test_throughput_5000_in_batches_of_500(kind: SinkUnderTest) -> None:
    async def body() -> float:
        batch_size, total = 500, 5000
        messages = deliveries(total, "pkT")
        async with kind.reading(flood=True) as reader:
            sink = kind.sink()
            try:
                await sink.open()
                started = time.perf_counter()
                for i in range(0, total, batch_size):
                    await sink.publish(messages[i : i + batch_size])
                elapsed = time.perf_counter() - started
            finally:
                await sink.close()
            await reader.exactly(messages, limit=10)
        return elapsed

    elapsed = run(body())
    print(f"\n{kind.name}: 5000 deliveries of ~200 B in batches of 500: {elapsed:.2f} s, {5000 / elapsed:,.0f}/s")


def test_outage_fails_the_batch_then_reconnects(kind: SinkUnderTest, proxy: TcpProxy) -> None:
    async def body() -> None:
        a, b, c = deliveries(100, "pkO"), deliveries(100, "pkO", start=101), deliveries(100, "pkO", start=201)
        async with kind.reading() as reader:
            sink = kind.sink(proxy, timeout=2)
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
            await reader.at_least_once(a + b + c)
            await reader.nothing_more()

    run(body())


def test_hung_broker_times_out_then_recovers(kind: SinkUnderTest, proxy: TcpProxy) -> None:
    async def body() -> None:
        a, b = deliveries(20, "pkH"), deliveries(20, "pkH", start=21)
        async with kind.reading() as reader:
            sink = kind.sink(proxy, timeout=1)
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
            await reader.at_least_once(a + b)
        await wait_until_async(lambda: proxy.connections, "the abandoned connections closed, not leaked", 3.0,
                               accept=lambda connections: connections == 0)

    run(body())


def test_a_connection_lost_mid_batch_fails_it_at_once(kind: SinkUnderTest, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = kind.sink(proxy, timeout=5)
        try:
            await sink.publish(deliveries(5, "pkL"))
            proxy.stall()  # the batch goes out, no confirm comes back...
            task = asyncio.create_task(sink.publish(deliveries(200, "pkL", start=6)))
            await wait_until_async(lambda: proxy.held, "the batch sent into the stalled proxy")
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


def test_cancelled_publish_raises_cancelled_and_the_sink_recovers(kind: SinkUnderTest, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = kind.sink(proxy, timeout=5)
        try:
            await sink.publish(deliveries(5, "pkX"))
            proxy.stall()
            task = asyncio.create_task(sink.publish(deliveries(5, "pkX", start=6)))
            await wait_until_async(lambda: proxy.held, "the batch sent into the stalled proxy")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task  # a forwarder shutting down is not told "SinkError"
            proxy.restore()
            await sink.publish(deliveries(5, "pkX", start=6))
        finally:
            await sink.close()

    run(body())


def test_unreachable_broker_fails_fast(kind: SinkUnderTest) -> None:
    async def body() -> None:
        with TcpProxy("127.0.0.1", kind.port) as proxy:
            proxy.cut()  # a port where nothing listens
            sink = kind.make({**kind.endpoint(proxy.port, password="secret-pw"), "timeout": 5})
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
