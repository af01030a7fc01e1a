"""The broker sinks (RabbitMQ, NATS JetStream, MQTT) as the bus tests drive them.

For each: how to build one in a namespace of the test's own (an exchange, a stream and subject prefix, a topic
prefix), through a ``TcpProxy`` when the test breaks the link, how to read back what reached the broker with a
real client of it, and how to clean up afterwards. ``test_sink_contract.py`` runs the tests every sink must
pass over all three (a ``SinkUnderTest`` each); each sink's own module keeps what only that sink does, and uses
the readers here too.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar, Self

import aio_pika
import nats
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.bus.services import MOSQUITTO, NATS, RABBITMQ, first_occurrences, run
from tests.bus.tcp_proxy import TcpProxy
from tests.support import wait_until_async
from thingport.bus.base import Delivery, Sink
from thingport.bus.mqtt import MqttSink
from thingport.bus.nats import NatsSink
from thingport.bus.rabbitmq import RabbitMQSink

# -- RabbitMQ: an aio-pika consumer ---------------------------------------------------------------------------

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def via(proxy: TcpProxy) -> str:
    """The broker's URL through ``proxy``."""
    return f"amqp://guest:guest@127.0.0.1:{proxy.port}/"


class Consumer:
    """An exclusive queue bound with ``#`` to the test's exchange (declared as the sink declares it)."""

    def __init__(self, exchange: str) -> None:
        self.exchange_name = exchange
        self.received: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()

    async def __aenter__(self) -> Self:
        self.connection = await aio_pika.connect(RABBITMQ_URL)
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
    for m, d in zip(messages, batch, strict=True):
        assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert m.content_type == "application/json"
        assert m.type == d.kind


def delete_exchange(name: str) -> None:
    """Delete the exchange ``name`` (deleting a missing exchange is fine in AMQP 0-9-1)."""

    async def delete() -> None:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete(name)

    run(delete())


# -- NATS JetStream: an ephemeral pull consumer -----------------------------------------------------------------

NATS_URL = "nats://127.0.0.1:4222"


async def read_stream(stream: str, subjects: str, count: int, limit: float = 5.0) -> list:
    """Every message of the stream, in stream order (an ephemeral pull consumer), checking there are ``count``."""
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        assert info.state.messages == count
        sub = await js.pull_subscribe(subjects, stream=stream)
        got: list = []
        deadline = time.monotonic() + limit
        while len(got) < count and time.monotonic() < deadline:
            for msg in await sub.fetch(min(500, count - len(got)), timeout=limit):
                await msg.ack()
                got.append(msg)
        return got
    finally:
        await nc.close()


def assert_stored(messages: list, batch: list[Delivery], prefix: str) -> None:
    assert [m.subject for m in messages] == [d.route(".", prefix) for d in batch]
    assert [m.data for m in messages] == [d.body for d in batch]
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [str(d.message_id) for d in batch]


def delete_stream(name: str) -> None:
    """Delete the stream ``name``, if it was made."""

    async def delete() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    run(delete())


# -- MQTT: a paho subscriber ------------------------------------------------------------------------------------


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
            self.messages.append((message.topic, bytes(message.payload)))

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
        await wait_until_async(lambda: len(self.messages), f"{count} messages received", limit, 0.05,
                               accept=lambda received: received >= count)
        return self.received()


def expected(batch: list[Delivery], prefix: str) -> list[tuple[str, bytes]]:
    return [(d.route("/", prefix), d.body) for d in batch]


# -- the sinks as the contract tests see them -------------------------------------------------------------------


class Reader(ABC):
    """What reached the broker, read back by a real client of it (started before the sink publishes)."""

    @abstractmethod
    async def exactly(self, batch: list[Delivery], limit: float = 5.0) -> None:
        """Assert that ``batch`` arrived in order, each delivery once, with its route and metadata, and nothing
        else (within ``limit`` seconds)."""

    @abstractmethod
    async def at_least_once(self, batch: list[Delivery]) -> None:
        """Assert that every delivery of ``batch`` arrived, in order of first arrival (a batch retried after an
        outage may arrive again in part); a sink that promises more asserts more."""

    async def nothing_more(self) -> None:  # noqa: B027 (an optional hook: a sink that promises no more skips it)
        """After ``at_least_once``: assert that nothing else arrives, where the sink promises it."""


class SinkUnderTest(ABC):
    """One kind of sink, in a namespace of this test's own (made fresh for each test)."""

    name: ClassVar[str]
    #: (name, host, port) of the broker, for ``require_service`` and the ``TcpProxy``
    service: ClassVar[tuple[str, str, int]]

    @property
    def port(self) -> int:
        return self.service[2]

    @property
    @abstractmethod
    def options(self) -> dict[str, Any]:
        """The sink options that put it in this test's namespace."""

    @abstractmethod
    def make(self, options: dict[str, Any]) -> Sink:
        """The sink, built from ``options`` as they are."""

    @abstractmethod
    def endpoint(self, port: int, password: str | None = None) -> dict[str, Any]:
        """Options that point the sink at 127.0.0.1:``port`` (logging in with ``password``, when given)."""

    @abstractmethod
    def reading(self, flood: bool = False) -> AbstractAsyncContextManager[Reader]:
        """A reader of this namespace; ``flood``: thousands of messages are coming at once."""

    def sink(self, proxy: TcpProxy | None = None, timeout: float | None = None) -> Sink:
        """A sink in this test's namespace, through ``proxy`` when given, with ``timeout`` when given."""
        options = dict(self.options)
        if proxy is not None:
            options.update(self.endpoint(proxy.port))
        if timeout is not None:
            options["timeout"] = timeout
        return self.make(options)

    def cleanup(self) -> None:  # noqa: B027 (an optional hook: MQTT leaves nothing on the broker)
        """Remove what the test left on the broker."""


class RabbitMQUnderTest(SinkUnderTest):
    name = "rabbitmq"
    service = RABBITMQ

    def __init__(self) -> None:
        self.exchange = f"thingport-test-{uuid.uuid4().hex[:12]}"

    @property
    def options(self) -> dict[str, Any]:
        return {"exchange": self.exchange}

    def make(self, options: dict[str, Any]) -> Sink:
        return RabbitMQSink(options)

    def endpoint(self, port: int, password: str | None = None) -> dict[str, Any]:
        return {"url": f"amqp://guest:{password or 'guest'}@127.0.0.1:{port}/"}

    @asynccontextmanager
    async def reading(self, flood: bool = False) -> AsyncIterator[Reader]:
        async with Consumer(self.exchange) as consumer:
            yield _RabbitMQReader(consumer)

    def cleanup(self) -> None:
        delete_exchange(self.exchange)


class _RabbitMQReader(Reader):
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    async def exactly(self, batch: list[Delivery], limit: float = 5.0) -> None:
        assert_delivered(await self.consumer.take(len(batch), limit), batch)
        assert await self.consumer.quiet()

    async def at_least_once(self, batch: list[Delivery]) -> None:
        received: list[bytes] = []
        while len(first_occurrences(received)) < len(batch):
            received += [m.body for m in await self.consumer.take(1)]
        assert first_occurrences(received) == [d.body for d in batch]

    async def nothing_more(self) -> None:
        assert await self.consumer.quiet()


class NatsUnderTest(SinkUnderTest):
    name = "nats"
    service = NATS

    def __init__(self) -> None:
        token = uuid.uuid4().hex[:12]
        self.stream = f"TP_TEST_{token}"
        self.subject_prefix = f"tptest.{token}"

    @property
    def options(self) -> dict[str, Any]:
        return {"stream": self.stream, "subject_prefix": self.subject_prefix}

    def make(self, options: dict[str, Any]) -> Sink:
        return NatsSink(options)

    def endpoint(self, port: int, password: str | None = None) -> dict[str, Any]:
        login = f"user:{password}@" if password is not None else ""
        return {"url": f"nats://{login}127.0.0.1:{port}"}

    @asynccontextmanager
    async def reading(self, flood: bool = False) -> AsyncIterator[Reader]:
        yield _NatsReader(self.stream, self.subject_prefix)  # the stream keeps it all: read it afterwards

    def cleanup(self) -> None:
        delete_stream(self.stream)


class _NatsReader(Reader):
    def __init__(self, stream: str, prefix: str) -> None:
        self.stream = stream
        self.prefix = prefix

    async def exactly(self, batch: list[Delivery], limit: float = 5.0) -> None:
        assert_stored(await read_stream(self.stream, f"{self.prefix}.>", len(batch), limit), batch, self.prefix)

    async def at_least_once(self, batch: list[Delivery]) -> None:
        # exactly once in the stream: whatever of a batch got in before a failure is deduplicated on the retry
        await self.exactly(batch)


class MqttUnderTest(SinkUnderTest):
    name = "mqtt"
    service = MOSQUITTO

    def __init__(self) -> None:
        self.prefix = f"tptest/{uuid.uuid4().hex[:12]}"

    @property
    def options(self) -> dict[str, Any]:
        return {"topic_prefix": self.prefix}

    def make(self, options: dict[str, Any]) -> Sink:
        return MqttSink(options)

    def endpoint(self, port: int, password: str | None = None) -> dict[str, Any]:
        login = {"username": "user", "password": password} if password is not None else {}
        return {"port": port, **login}

    @asynccontextmanager
    async def reading(self, flood: bool = False) -> AsyncIterator[Reader]:
        with Subscriber(self.prefix, qos=0 if flood else 1) as subscriber:
            yield _MqttReader(subscriber, self.prefix)


class _MqttReader(Reader):
    def __init__(self, subscriber: Subscriber, prefix: str) -> None:
        self.subscriber = subscriber
        self.prefix = prefix

    async def exactly(self, batch: list[Delivery], limit: float = 5.0) -> None:
        assert await self.subscriber.take(len(batch), limit) == expected(batch, self.prefix)
        await asyncio.sleep(0.2)
        assert len(self.subscriber.received()) == len(batch)

    async def at_least_once(self, batch: list[Delivery]) -> None:
        want = expected(batch, self.prefix)
        await wait_until_async(lambda: len(first_occurrences(self.subscriber.received())),
                               f"{len(want)} distinct messages received", 3.0, 0.05,
                               accept=lambda distinct: distinct >= len(want))
        assert first_occurrences(self.subscriber.received()) == want


SINKS: list[type[SinkUnderTest]] = [RabbitMQUnderTest, NatsUnderTest, MqttUnderTest]
