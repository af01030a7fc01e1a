"""RabbitMQ sink: AMQP 0-9-1 publishing with publisher confirms (bus/amqp.py).

Every delivery becomes one persistent message (delivery_mode 2, content_type application/json,
message_id = the envelope's message id, ``<message id>:<rule>`` for a rule's output, type = its kind)
published to a durable topic exchange with the routing key ``productKey.deviceId.kind``. Applications
bind their own queues, e.g. ``pk123.#`` or ``*.*.event``.

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

Pipelining: a batch goes out as one socket write of every message's frames (marshalled in bulk by
``bus/amqp.py``, a publisher-only AMQP client) and the sink then waits once for the broker's confirms of all
of them, counted by delivery tag. A nack, a returned message, a closed channel or connection, or the
timeout fails the batch with SinkError; the connection is then dropped and the next ``open``/``publish``
connects afresh. The whole batch may be published again by the forwarder, so a consumer can see duplicates
(at least once); ``message_id`` lets it drop them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from thingport.bus.amqp import AmqpPublisher, Endpoint, properties_around_id
from thingport.bus.base import (
    DEFAULT_TIMEOUT,
    ConnectedSink,
    Delivery,
    SinkConfigError,
    SinkError,
    option_error,
    text_option,
    timeout_option,
)
from thingport.bus.options import secret
from thingport.urls import redact

log = logging.getLogger(__name__)

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_EXCHANGE = "thingport"
_EXCHANGE_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,255}$")
_CLOSE_GRACE = 1.0  # seconds a dropped connection gets to close politely


def _fail(option: str, message: str) -> SinkConfigError:
    return option_error("rabbitmq", option, message)


@dataclass(frozen=True)
class RabbitMQOptions:
    url: str = secret(DEFAULT_URL)  # holds the password
    exchange: str = DEFAULT_EXCHANGE
    mandatory: bool = False
    timeout: float = DEFAULT_TIMEOUT


class RabbitMQSink(ConnectedSink):
    kind = "rabbitmq"
    options_type = RabbitMQOptions

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
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
        try:
            self.endpoint = Endpoint.from_url(url)
        except ValueError as exc:
            raise _fail("url", f"is not usable: {exc}") from None
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
        self._amqp: AmqpPublisher | None = None
        self._properties: dict[str, tuple[bytes, bytes]] = {}  # by kind: the properties around the message id
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    # -- connection ---------------------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Connect, open a confirm-mode channel, declare the exchange (caller bounds the time)."""
        if self._amqp is not None and self._amqp.is_open:
            return
        self._drop()
        amqp = self._amqp = AmqpPublisher(self.endpoint)
        try:
            await amqp.connect()
            await amqp.declare_exchange(self.exchange_name, "topic", durable=True)
        except BaseException:
            amqp.abort()  # a half-made connection is not worth a polite close
            raise

    def _drop(self) -> None:
        """Forget the current connection: a healthy one closes politely in the background (bounded by
        _CLOSE_GRACE), a failed one at once."""
        amqp, self._amqp = self._amqp, None
        if amqp is None:
            return
        if not amqp.is_open:
            amqp.abort()
            return
        task = asyncio.get_running_loop().create_task(amqp.close(_CLOSE_GRACE))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _error(self, what: str, exc: BaseException) -> SinkError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SinkError(f"rabbitmq {redact(self.url)} exchange {self.exchange_name!r}: {what}: {detail}")

    # -- publishing ---------------------------------------------------------------------------------------

    def _messages(self, batch: Sequence[Delivery]) -> list[tuple[str, bytes, bytes]]:
        """(routing key, properties, body) of each delivery: persistent JSON, message id, kind as type."""
        out = []
        around = self._properties
        for d in batch:
            parts = around.get(d.kind)
            if parts is None:
                parts = around[d.kind] = properties_around_id(
                    content_type="application/json", delivery_mode=2, message_type=d.kind, app_id="thingport"
                )
            message_id = d.dedup.encode()
            out.append((d.route("."), parts[0] + bytes((len(message_id),)) + message_id + parts[1], d.body))
        return out

    async def publish(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._connect()
                    assert self._amqp is not None
                    await self._amqp.publish(self.exchange_name, self._messages(batch), self.mandatory)
            except TimeoutError as exc:
                self._drop_now()
                raise self._error(f"no confirm for the batch of {len(batch)} within {self.timeout:g} s", exc) from exc
            except Exception as exc:
                self._drop_now()
                raise self._error(f"the batch of {len(batch)} (from seq {batch[0].seq}) is unconfirmed", exc) from exc
            except BaseException:
                self._drop_now()
                raise

    def _drop_now(self) -> None:
        """A failed or abandoned batch: the connection goes at once (its confirms no longer matter)."""
        if self._amqp is not None:
            self._amqp.abort()
        self._drop()

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
