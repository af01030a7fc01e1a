"""What every sink implements, and what it is given.

The forwarder hands a sink batches of deliveries in log order. ``publish`` returns only once the
destination has confirmed every delivery of the batch (publisher confirms, JetStream acks, MQTT PUBACKs,
a 2xx webhook reply); on any failure it raises SinkError and the forwarder offers the same batch again
later. The forwarder advances the sink's cursor only after ``publish`` returned: delivery is at least once,
in order per device, and a sink that is down makes messages wait, never vanish.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec


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

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)

    async def open(self) -> None:
        """Connect. Raising SinkError here is fine: the forwarder retries with backoff."""

    @abstractmethod
    async def publish(self, batch: Sequence[Delivery]) -> None:
        """Deliver the batch, in order; return only when the destination confirmed all of it."""

    async def close(self) -> None:
        """Release connections; never raises."""
