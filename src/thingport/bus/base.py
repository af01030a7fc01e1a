"""What every sink implements, and what it is given.

The forwarder hands a sink batches of deliveries in log order. ``publish`` returns only once the
destination has confirmed every delivery of the batch (publisher confirms, JetStream acks, MQTT PUBACKs,
a 2xx webhook reply); on any failure it raises SinkError and the forwarder offers the same batch again
later. The forwarder advances the sink's cursor only after ``publish`` returned: delivery is at least once,
in order per device, and a sink that is down makes messages wait, never vanish.
"""

import asyncio
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from thingport.bus.options import option_names
from thingport.urls import redact

DEFAULT_TIMEOUT = 10.0
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def shown_error(error: BaseException | str, limit: int = 500) -> str:
    """An error's text fit to show an operator: every URL in it without its password and query string
    (a webhook's may hold a token), at most ``limit`` characters."""

    def hide(match: re.Match[str]) -> str:
        url, _, query = redact(match.group(0)).partition("?")
        return f"{url}?***" if query else url

    return _URL.sub(hide, str(error))[:limit]


class SinkError(Exception):
    """The destination did not confirm the batch (down, refused, timed out); it will be offered again."""


class SinkConfigError(ValueError):
    """A subscription's sink options are unusable (the message says which option)."""


class Delivery(msgspec.Struct, frozen=True):
    """One envelope to deliver. ``body`` is the envelope as JSON (schema: docs/envelope.schema.json)."""

    seq: int  # position in the log: increases in commit order
    message_id: int
    product_key: str
    device_id: str  # the IoTDA-style device id: letters, digits, _ and - only, safe in any routing key
    kind: str  # raw | properties | event | status
    body: bytes
    dedup_id: str = ""  # a rule's output: "<messageId>:<rule>", so it is not taken for the message itself

    @property
    def dedup(self) -> str:
        """What a broker or consumer drops repeats by (JetStream's Nats-Msg-Id, AMQP's message_id): the
        messageId, or for a rule's output the messageId and the rule (one message, many rules' outputs)."""
        return self.dedup_id or str(self.message_id)

    def route(self, separator: str, prefix: str = "") -> str:
        """``prefix<sep>productKey<sep>deviceId<sep>kind``: an AMQP routing key, NATS subject, MQTT topic."""
        parts = [self.product_key, self.device_id, self.kind]
        if prefix:
            parts.insert(0, prefix)
        return separator.join(parts)


class Sink(ABC):
    """One destination of one subscription."""

    #: the sink's type name in subscriptions: rabbitmq, nats, mqtt, webhook, http
    kind: str = ""
    #: the dataclass declaring its options, secret ones marked (bus/options.py)
    options_type: ClassVar[type]

    def __init__(self, options: Mapping[str, Any]) -> None:
        """Keeps ``options``; one the options struct does not declare is refused."""
        self.options = dict(options)
        known = option_names(self.options_type)
        for name in self.options:
            if name not in known:
                raise option_error(self.kind, name, f"is unknown (known options: {', '.join(known)})")

    async def open(self) -> None:  # noqa: B027 - a hook: a sink without a connection has nothing to open
        """Connect. Raising SinkError here is fine: the forwarder retries with backoff."""

    @abstractmethod
    async def publish(self, batch: Sequence[Delivery]) -> None:
        """Deliver the batch, in order; return only when the destination confirmed all of it."""

    async def close(self) -> None:  # noqa: B027 - a hook, as open
        """Release connections; never raises."""

    async def check(self) -> None:
        """Connect with the subscription's credentials and let go: what creating one does unless told not
        to. Raises SinkError (the destination named, credentials hidden) when that fails."""
        try:
            await self.open()
        finally:
            await self.close()


# --- option checking shared by the sinks ---


def option_error(kind: str, option: str, message: str) -> SinkConfigError:
    return SinkConfigError(f"{kind} sink: option {option!r} {message}")


def text_option(value: Any) -> Any:
    """An integer given for a text option (``key=123`` on the CLI arrives as a number) as its text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def timeout_option(kind: str, options: Mapping[str, Any]) -> float:
    """The ``timeout`` option: positive seconds bounding every open and publish (default 10)."""
    value = options.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise option_error(kind, "timeout", f"must be a positive number of seconds, got {value!r}")
    return float(value)


class ConnectedSink(Sink):
    """A sink over one broker connection: ``open`` connects within ``timeout`` or raises SinkError, and a
    failed attempt leaves nothing half-open (the next call starts clean)."""

    timeout: float
    _lock: asyncio.Lock

    @abstractmethod
    async def _connect(self) -> None:
        """Connect (called under the lock, bounded by ``timeout``)."""

    @abstractmethod
    def _drop(self) -> None:
        """Forget the connection without waiting; never raises."""

    @abstractmethod
    def _error(self, what: str, exc: BaseException) -> SinkError:
        """A SinkError naming the destination (credentials hidden) and what failed."""

    async def open(self) -> None:
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._connect()
            except Exception as exc:
                self._drop()
                raise self._error("cannot open", exc) from exc
            except BaseException:
                self._drop()
                raise
