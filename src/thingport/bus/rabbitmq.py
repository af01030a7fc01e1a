"""RabbitMQ sink: AMQP 0-9-1 publishing with publisher confirms (aio-pika).

Every delivery becomes one persistent message (delivery_mode 2, content_type application/json,
message_id = the envelope's message id, type = its kind) published to a durable topic exchange with the
routing key ``productKey.deviceId.kind``. Applications bind their own queues, e.g. ``pk123.#`` or
``*.*.event``.

Options (all optional):

``url``
    AMQP URL, ``amqp://`` or ``amqps://``; default ``amqp://guest:guest@127.0.0.1:5672/``. The password
    never appears in error messages.
``exchange``
    Name of the exchange; default ``thingport``. It is declared on open as a durable topic exchange (an
    existing exchange of another type makes open fail). Names starting with ``amq.`` are reserved.
``mandatory``
    Default false: a message that no queue is bound for is dropped by the broker, as usual for a topic
    exchange. True: such a message comes back unconfirmed and the whole batch fails (and is retried), so
    nothing is published before some queue is bound.
``timeout``
    Seconds, default 10: the bound on one ``open`` or one ``publish`` (connecting and declaring included).

Pipelining: a batch is published as one run of ``basic.publish`` frames on a confirm-mode channel: each
message is queued for writing in batch order (aiormq's channel lock is FIFO; ``wait=False`` so no message
waits for the previous one's socket write), and only then does the sink wait for the broker's ack of every
one of them (the whole batch is in flight at once). A nack, a returned message, a closed channel or
connection, or the timeout fails the batch with SinkError; the connection is then dropped and the next
``open``/``publish`` connects afresh. The whole batch may be published again by the forwarder, so a
consumer can see duplicates (at least once); ``message_id`` lets it drop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aiormq import spec

from thingport.bus.base import (
    ConnectedSink,
    Delivery,
    SinkConfigError,
    SinkError,
    option_error,
    text_option,
    timeout_option,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_EXCHANGE = "thingport"
_OPTIONS = ("url", "exchange", "mandatory", "timeout")
_EXCHANGE_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,255}$")
_CLOSE_GRACE = 1.0  # seconds a dropped connection gets to close politely


def _fail(option: str, message: str) -> SinkConfigError:
    return option_error("rabbitmq", option, message)


def _check_known(options: Mapping[str, Any]) -> None:
    for name in options:
        if name not in _OPTIONS:
            raise _fail(name, f"is unknown (known options: {', '.join(_OPTIONS)})")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return "<unparsable url>"


class RabbitMQSink(ConnectedSink):
    kind = "rabbitmq"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        _check_known(self.options)
        url = self.options.get("url", DEFAULT_URL)
        if not isinstance(url, str):
            raise _fail("url", f"must be a string, got {url!r}")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise _fail("url", f"is not a valid URL: {exc}") from None
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise _fail("url", f"must be amqp://host[:port][/vhost] or amqps://..., got {redact(url)!r}")
        exchange = text_option(self.options.get("exchange", DEFAULT_EXCHANGE))
        if not isinstance(exchange, str) or not _EXCHANGE_NAME.match(exchange):
            raise _fail("exchange", f"must be 1-255 of letters, digits, '-', '_', '.', ':', got {exchange!r}")
        if exchange.startswith("amq."):
            raise _fail("exchange", f"must not start with 'amq.' (reserved by the broker), got {exchange!r}")
        mandatory = self.options.get("mandatory", False)
        if not isinstance(mandatory, bool):
            raise _fail("mandatory", f"must be true or false, got {mandatory!r}")
        self.url = url
        self.exchange_name = exchange
        self.mandatory = mandatory
        self.timeout = timeout_option("rabbitmq", self.options)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    # -- connection ---------------------------------------------------------------------------------------

    def _is_open(self) -> bool:
        return (
            self._exchange is not None
            and self._connection is not None
            and not self._connection.is_closed
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def _connect(self) -> None:
        """Connect, open a confirm-mode channel, declare the exchange (caller bounds the time)."""
        if self._is_open():
            return
        self._drop()
        connection = await aio_pika.connect(self.url, timeout=self.timeout, client_properties={"product": "thingport"})
        self._connection = connection
        # on_return_raises: with mandatory, an unroutable message fails its publish instead of being "confirmed"
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        self._exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True, timeout=self.timeout
        )

    def _drop(self) -> None:
        """Forget the current connection; it closes in the background, bounded by _CLOSE_GRACE."""
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        if connection is not None and not connection.is_closed:
            task = asyncio.get_running_loop().create_task(_close_quietly(connection))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _error(self, what: str, exc: BaseException) -> SinkError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SinkError(f"rabbitmq {redact(self.url)} exchange {self.exchange_name!r}: {what}: {detail}")

    # -- publishing ---------------------------------------------------------------------------------------

    async def _publish_one(self, channel: aiormq.abc.AbstractChannel, delivery: Delivery) -> None:
        confirm = await channel.basic_publish(
            delivery.body,
            exchange=self.exchange_name,
            routing_key=delivery.route("."),
            properties=spec.Basic.Properties(
                content_type="application/json",
                delivery_mode=2,  # persistent
                message_id=str(delivery.message_id),
                message_type=delivery.kind,
                app_id="thingport",
            ),
            mandatory=self.mandatory,
            wait=False,  # queue the frames and go on: only the confirm below is awaited
        )
        # aiormq raises on a nack (DeliveryError) and on a returned message (PublishError); anything but an
        # ack is a failure all the same
        if not isinstance(confirm, spec.Basic.Ack):
            raise SinkError(f"unexpected confirmation {confirm!r}")

    async def publish(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._connect()
                    assert self._channel is not None
                    channel = await self._channel.get_underlay_channel()
                    # The tasks start in batch order and each queues its frames under the channel's FIFO lock
                    # before awaiting its confirm: all frames go out back to back, then the confirms come in.
                    results = await asyncio.gather(
                        *(self._publish_one(channel, d) for d in batch), return_exceptions=True
                    )
            except TimeoutError as exc:
                self._drop()
                raise self._error(f"no confirm for the batch of {len(batch)} within {self.timeout:g} s", exc) from exc
            except Exception as exc:
                self._drop()
                raise self._error("publish failed", exc) from exc
            except BaseException:
                self._drop()
                raise
            failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
            if failed:
                self._drop()
                first, exc = failed[0]
                raise self._error(
                    f"{len(failed)} of {len(batch)} deliveries unconfirmed (first: seq {batch[first].seq})", exc
                ) from exc

    async def close(self) -> None:
        try:
            async with self._lock:
                self._drop()
                if self._closing:
                    await asyncio.wait(set(self._closing), timeout=_CLOSE_GRACE + 0.5)
        except BaseException as exc:  # close never raises; a cancellation still propagates
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.debug("rabbitmq sink close: %r", exc)


async def _close_quietly(connection: AbstractConnection) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(connection.close(), _CLOSE_GRACE)
