"""The records the core reasons about: products, devices and stored messages."""

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

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


class Device(msgspec.Struct, frozen=True, gc=False):
    """A device as the device side (ingest/) sees it. ``secret`` is the plain secret, never shown in repr or logs.

    Untracked by Python's cyclic garbage collector (it holds only strings, numbers and tuples of them): the
    registry cache and presence keep one per device in use, and at 100,000 devices signed in, tracked devices
    made each full collection a ~0.15 s pause."""

    id: int
    product_key: str
    device_name: str
    enabled: bool
    token_epoch: int
    created_ms: int
    secret: str
    last_auth_ms: int | None = None
    device_id: str = ""  # the IoTDA device_id (identity.default_device_id unless given)
    gateway_id: int | None = None  # the parent gateway's internal id, for a sub-device
    gateway: tuple[str, str] | None = None  # the parent's (productKey, deviceName)
    token_ms: int | None = None  # when the newest IoTDA token was issued
    superseded_tokens: tuple[tuple[int, int], ...] = ()  # (issued, superseded) of older ones in their 30 s grace

    def __repr__(self) -> str:
        return f"Device({', '.join(f'{name}={value!r}' for name, value in self.__rich_repr__())})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """The fields shown (msgspec's own would show the secret to ``rich``)."""
        return [(name, getattr(self, name)) for name in self.__struct_fields__ if name != "secret"]


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


class StoredMessage(msgspec.Struct, frozen=True):
    """One accepted device message, as it is appended to the durable log. A msgspec Struct, not a frozen
    dataclass: one is built per report, and a frozen dataclass of 14 fields took ~3-6 us to build (one
    ``object.__setattr__`` per field), a Struct ~0.4 us (issue 20). ``msgspec.structs.replace`` copies one.

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


def is_online(enabled: bool, last_seen_ms: int | None, now_ms: int, timeout_ms: int) -> bool:
    """Whether a device counts as online: enabled, and seen (a report or an auth, on any instance: the
    registry's last seen) within its product's presence timeout. A disabled device is never online: its
    tokens stop working at once. ``store/sql_registry.py``'s ``ONLINE_SQL`` says the same in SQL."""
    return enabled and last_seen_ms is not None and now_ms - last_seen_ms < timeout_ms


@dataclass(frozen=True, slots=True)
class ListedDevice:
    """A device in a listing, with its presence (``is_online``) and when it was last seen."""

    device: Device
    online: bool
    last_seen_ms: int | None


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    """A product's devices: how many, how many online (``is_online``), how many disabled."""

    total: int = 0
    online: int = 0
    disabled: int = 0


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


@dataclass(frozen=True, slots=True)
class ForwardAction:
    """A rule's action that sends each document the rule emits to a push sink (the sinks subscriptions use,
    with the same options), in the subscriptions' envelope with the document as payload."""

    sink: str  # rabbitmq, nats, mqtt, webhook
    options: dict[str, Any] = field(repr=False)  # may hold credentials, as a subscription's

    kind = "forward"  # not a field: the tag in the stored (and API) form of an action


@dataclass(frozen=True, slots=True)
class AlarmAction:
    """A rule's action that raises alarm ``name`` (or clears it, ``clear``) on the device of every message the
    rule emits a document for; a raised alarm's details are that document (README "Alarms")."""

    name: str
    severity: str  # critical, major, minor, warning (a clear ignores it)
    clear: bool = False

    kind = "alarm"


# Every kind of action a rule may take: one record each here, its stored form in rule_actions.py and its
# runner in bus/rule_runner.py.
RuleAction = ForwardAction | AlarmAction


@dataclass(frozen=True, slots=True)
class Rule:
    """A SQL statement over device messages and what to do with every document it emits; evaluated after
    its own cursor in the log, as a subscription is forwarded."""

    id: int
    name: str
    statement: str
    actions: tuple[RuleAction, ...] = field(repr=False)
    enabled: bool
    cursor: int  # last log seq every action confirmed (or that the statement skipped)
    created_ms: int
    matched: int = 0  # messages the statement emitted a document for
    failed: int = 0  # messages it could not be evaluated on (a field missing, a type mismatch, not JSON)
    last_error: str | None = None  # why the newest failed one failed
    last_error_ms: int | None = None
    state: str = "running"  # running, retrying (an action's sink failed), failing (it keeps failing)
    state_since_ms: int | None = None
    sink_error: str | None = None  # why it is retrying or failing, credentials removed
