"""MQTT sink against the real Mosquitto on 127.0.0.1:1883, received by a real MQTT subscriber."""

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Self

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.bus.services import MOSQUITTO, deliveries, eventually, first_occurrences, require_service, run
from tests.bus.tcp_proxy import TcpProxy
from thingport.bus.base import Delivery, SinkConfigError, SinkError
from thingport.bus.mqtt import MqttSink


@pytest.fixture(autouse=True)
def mosquitto() -> None:
    require_service(*MOSQUITTO)


@pytest.fixture
def prefix() -> str:
    return f"tptest/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 1883) as p:
        yield p


class Subscriber:
    """A paho client on its own thread, subscribed (SUBACK awaited) to ``<prefix>/#``.

    QoS 1 by default; QoS 0 for floods: Mosquitto queues at most 1000 QoS 1 messages for a subscriber
    (max_queued_messages) and drops the rest, which is the broker's policy, not the sink's doing.
    """

    def __init__(self, prefix: str, qos: int = 1) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"tptest-sub-{uuid.uuid4().hex[:8]}")
        client.on_message = self._on_message
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}/#", qos=qos)
        client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client = client

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload))

    def __enter__(self) -> Self:
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self._subscribed.wait(5), "no SUBACK"
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    async def take(self, count: int, limit: float = 5.0) -> list[tuple[str, bytes]]:
        assert await eventually(lambda: len(self.messages) >= count, limit), f"{len(self.messages)} of {count}"
        return self.received()


def expected(batch: list[Delivery], prefix: str) -> list[tuple[str, bytes]]:
    return [(d.route("/", prefix), d.body) for d in batch]


def test_batches_arrive_in_order_with_topics(prefix: str) -> None:
    async def body() -> None:
        batches = [deliveries(1, "pkA"), deliveries(50, "pkA", start=2), deliveries(200, "pkB", start=52)]
        with Subscriber(prefix) as sub:
            sink = MqttSink({"topic_prefix": prefix})
            try:
                await sink.open()
                for batch in batches:
                    await sink.publish(batch)
                await sink.publish([])
            finally:
                await sink.close()
            everything = [d for batch in batches for d in batch]
            assert await sub.take(len(everything)) == expected(everything, prefix)
            await asyncio.sleep(0.2)
            assert len(sub.received()) == len(everything)

    run(body())


def test_defaults_options_and_a_window_smaller_than_the_batch(prefix: str) -> None:
    sink = MqttSink({})
    assert (sink.host, sink.port, sink.topic_prefix, sink.timeout) == ("127.0.0.1", 1883, "thingport", 10.0)
    assert sink.client_id.startswith("thingport-") and sink.client_id != MqttSink({}).client_id
    numeric = MqttSink({"username": 1000, "password": 12345, "client_id": 7})  # as `key=123` arrives from the CLI
    assert (numeric.username, numeric.password, numeric.client_id) == ("1000", "12345", "7")

    async def body() -> None:
        with Subscriber(prefix) as sub:
            client_id = f"tptest-{uuid.uuid4().hex[:8]}"
            sink = MqttSink({"topic_prefix": prefix, "client_id": client_id, "max_in_flight": 5, "timeout": 5})
            batch = deliveries(60, "pkW")
            try:
                await sink.publish(batch)  # opens by itself; 60 through a window of 5
            finally:
                await sink.close()
            assert await sub.take(60) == expected(batch, prefix)

    run(body())


def test_throughput_5000_in_batches_of_500(prefix: str) -> None:
    async def body() -> float:
        batch_size, total = 500, 5000
        messages = deliveries(total, "pkT")
        with Subscriber(prefix, qos=0) as sub:
            sink = MqttSink({"topic_prefix": prefix})
            try:
                await sink.open()
                started = time.perf_counter()
                for i in range(0, total, batch_size):
                    await sink.publish(messages[i : i + batch_size])
                elapsed = time.perf_counter() - started
            finally:
                await sink.close()
            assert await sub.take(total, limit=10) == expected(messages, prefix)
        return elapsed

    elapsed = run(body())
    print(f"\nmqtt: 5000 deliveries of ~200 B in batches of 500: {elapsed:.2f} s, {5000 / elapsed:,.0f}/s")


def test_outage_fails_the_batch_then_reconnects(prefix: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        a, b, c = deliveries(100, "pkO"), deliveries(100, "pkO", start=101), deliveries(100, "pkO", start=201)
        with Subscriber(prefix) as sub:
            sink = MqttSink({"port": proxy.port, "topic_prefix": prefix, "timeout": 2})
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
            want = expected(a + b + c, prefix)
            assert await eventually(lambda: len(first_occurrences(sub.received())) >= len(want))
            assert first_occurrences(sub.received()) == want

    run(body())


def test_hung_broker_times_out_then_recovers(prefix: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        a, b = deliveries(20, "pkH"), deliveries(20, "pkH", start=21)
        with Subscriber(prefix) as sub:
            sink = MqttSink({"port": proxy.port, "topic_prefix": prefix, "timeout": 1})
            try:
                await sink.publish(a)
                proxy.stall()
                for _ in range(2):  # the hung connection, then a reconnect that gets no CONNACK
                    started = time.monotonic()
                    with pytest.raises(SinkError, match="within 1 s"):
                        await sink.publish(b)
                    assert time.monotonic() - started < 1.5
                proxy.restore()
                await sink.publish(b)
            finally:
                await sink.close()
            want = expected(a + b, prefix)
            assert await eventually(lambda: len(first_occurrences(sub.received())) >= len(want))
            assert first_occurrences(sub.received()) == want
        assert await eventually(lambda: proxy.connections == 0)  # the abandoned connections were closed

    run(body())


def test_a_connection_lost_mid_batch_fails_it_at_once(prefix: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = MqttSink({"port": proxy.port, "topic_prefix": prefix, "timeout": 5})
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


def test_cancelled_publish_raises_cancelled_and_the_sink_recovers(prefix: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = MqttSink({"port": proxy.port, "topic_prefix": prefix, "timeout": 5})
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
        with TcpProxy("127.0.0.1", 1883) as proxy:
            proxy.cut()  # a port where nothing listens
            sink = MqttSink({"port": proxy.port, "timeout": 5})
            started = time.monotonic()
            with pytest.raises(SinkError):
                await sink.open()
            with pytest.raises(SinkError):
                await sink.publish(deliveries(1, "pkU"))
            assert time.monotonic() - started < 2
            await sink.close()
            await sink.close()

    run(body())


@pytest.mark.parametrize(
    "options, option",
    [
        ({"host": ""}, "host"),
        ({"host": "a b"}, "host"),
        ({"port": 0}, "port"),
        ({"port": "1883"}, "port"),
        ({"password": "x"}, "password"),
        ({"username": "u", "password": 1.5}, "password"),
        ({"username": ""}, "username"),
        ({"topic_prefix": "a/+/b"}, "topic_prefix"),
        ({"topic_prefix": "a//b"}, "topic_prefix"),
        ({"topic_prefix": "a/#"}, "topic_prefix"),
        ({"client_id": ""}, "client_id"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"timeout": float("nan")}, "timeout"),
        ({"qos": 2}, "qos"),
    ],
)
def test_bad_options_name_the_option(options: dict, option: str) -> None:
    with pytest.raises(SinkConfigError, match=f"'{option}'"):
        MqttSink(options)
