"""The records the core reasons about: products, devices and stored messages."""

from dataclasses import dataclass, field
from typing import Any, NamedTuple

VALIDATION_MODES = ("per-property", "whole-report")


@dataclass(frozen=True, slots=True)
class Product:
    product_key: str
    name: str
    node_type: str
    created_ms: int
    model_version: str | None = None
    validation: str = "per-property"  # one invalid property refuses only itself, or the whole report
    topics: tuple[tuple[str, str], ...] = ()  # custom topic categories: (suffix after /pk/dn/, pub|sub|all)
    presence_timeout_s: float | None = None  # silence after which its devices are offline (None: server's)
    device_report_rate: float | None = None  # reports per second per device (None: the server's)
    device_report_burst: float | None = None
    require_sign_type_1: bool | None = None  # IoTDA auth must be time-checked (sign_type 1); None: the server's


@dataclass(frozen=True, slots=True)
class Device:
    """A device as the device side (ingest/) sees it. ``secret`` is the plain secret, never shown in repr or logs."""

    id: int
    product_key: str
    device_name: str
    enabled: bool
    token_epoch: int
    created_ms: int
    secret: str = field(repr=False)
    last_auth_ms: int | None = None
    device_id: str = ""  # the IoTDA device_id (identity.default_device_id unless given)
    gateway_id: int | None = None  # the parent gateway's internal id, for a sub-device
    gateway: tuple[str, str] | None = None  # the parent's (productKey, deviceName)
    token_ms: int | None = None  # when the newest IoTDA token was issued
    superseded_tokens: tuple[tuple[int, int], ...] = ()  # (issued, superseded) of older ones in their 30 s grace


class ValuesAt(NamedTuple):
    """The accepted property values a message gave for one time (the device's when sane, else the receive
    time): identifier -> value. A message carries one per distinct time, usually exactly one, so a report
    of 20 properties is one object to build, write and read back, not 20."""

    time_ms: int
    values: dict[str, Any]


class HistoryBucket(NamedTuple):
    """One time slice of a property's history, downsampled: how many values it holds, the numeric ones'
    min, max and mean (None when none is a number: bool, enum as text, struct), and its newest value with
    its time and message, the value a step line (bool, enum) draws."""

    start_ms: int
    size: int  # values in the slice (``count`` is a tuple method)
    min: float | None
    max: float | None
    avg: float | None
    first_ms: int
    last_ms: int
    last_message_id: int
    last_value: Any


def values_by_time(groups: dict[int, dict[str, Any]]) -> tuple[ValuesAt, ...]:
    """A message's ``properties`` from the dialect's grouping: time -> identifier -> value."""
    return tuple(ValuesAt(at, values) for at, values in groups.items())


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One accepted device message, as it is appended to the durable log.

    ``properties`` are the values it carried that the thing model accepted, one group per time: they update
    the device's latest values and history in the same transaction as the message itself.
    """

    message_id: int
    device_id: int
    product_key: str
    device_name: str
    dialect: str
    topic: str
    payload: bytes
    received_ms: int
    kind: str = "custom"
    reply: bytes | None = None  # the protocol's reply document (Alink), as JSON
    device_ms: int | None = None  # the time the device gave for its data, when it gave one
    iot_id: str = ""  # the device's IoTDA device_id
    seq: int = 0  # position in the log, in commit order (0 until committed)
    properties: tuple[ValuesAt, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthSession:
    """What is recorded when a device authenticates (the ``update session`` of the protocol).

    ``supersedes`` is set for IoTDA tokens: the newest token's issue time, which gives the tokens before it
    30 s more to live, on every instance.
    """

    device_id: int
    client_id: str
    source: str
    at_ms: int
    supersedes: bool = False


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """Running status: presence and the latest value of every reported property."""

    device: Device
    online: bool
    last_seen_ms: int | None
    latest: dict[str, tuple[Any, int]]  # identifier -> (value, time_ms)


API_ROLES = ("admin", "consumer", "read", "metrics")  # metrics: GET /metrics and nothing else


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A management API key as stored: its hash, never the key."""

    id: int
    name: str
    role: str
    prefix: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class Subscription:
    """Where products' messages go: a sink, which kinds, which topics, and how far it has confirmed."""

    id: int
    name: str
    products: tuple[str, ...]  # the product keys whose messages it takes; empty: every product
    kinds: tuple[str, ...]
    topic_filter: str | None
    sink: str
    options: dict[str, Any] = field(repr=False)  # may hold credentials (webhook secret, broker password)
    cursor: int
    enabled: bool
    created_ms: int
    delivered: int = 0  # pull subscriptions: the highest log seq handed to a consumer (acks stop there)
    state: str = "running"  # push subscriptions: running, retrying (the sink failed), failing (it keeps failing)
    state_since_ms: int | None = None  # when it entered that state (None: it has been so since created)
    last_error: str | None = None  # why it is retrying or failing, credentials removed
