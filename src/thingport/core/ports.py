"""The ports the application layers (ingest/, manage/, bus/forwarder) depend on; store/ and state/ provide
the adapters.

They are async so that an adapter may be a thread around a blocking driver (SQLite) or a native
asyncio driver (PostgreSQL) without the callers knowing.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from thingport.core.model import (
    ApiKey,
    AuthSession,
    Device,
    DeviceCounts,
    HistoryBucket,
    ListedDevice,
    Product,
    Rule,
    RuleAction,
    StoredMessage,
    Subscription,
)
from thingport.core.throttle import Rate


class RegistryReader(Protocol):
    """Read side of the registry, as the device side (ingest/) needs it."""

    async def device_by_id(self, device_id: int) -> Device | None: ...

    async def devices_by_ids(self, device_ids: Sequence[int]) -> list[Device]:
        """Those of ``device_ids`` that exist, in few round trips (presence resumed after a restart)."""
        ...

    async def device_by_name(self, product_key: str, device_name: str) -> Device | None: ...

    async def device_by_device_id(self, device_id: str) -> Device | None:
        """By IoTDA ``device_id``."""
        ...

    async def get_product(self, product_key: str) -> Product | None: ...

    async def list_products(self) -> list[Product]: ...

    async def recently_seen(self, since_ms: int, device_ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
        """(device id, last seen) of devices seen since ``since_ms`` (of ``device_ids`` only, when given)."""
        ...

    async def thing_model(self, product_key: str, version: str) -> dict[str, Any] | None:
        """A product's model document at ``version`` (``{"format", "model"}``)."""
        ...

    async def changes_since(self, cursor: int) -> tuple[int, list[int], list[str]]:
        """The new cursor, and the ids of devices and keys of products changed after ``cursor``."""
        ...


class SubscriptionStates(Protocol):
    """The subscriptions, as the forwarder needs them: which to feed, and where to show how delivery goes."""

    async def list_subscriptions(self) -> list[Subscription]: ...

    async def set_subscription_state(self, subscription_id: int, state: str, since_ms: int, error: str | None) -> None:
        """A push subscription's delivery state (running, retrying, failing), since when, and why."""
        ...


class RuleStates(Protocol):
    """The rules, as their runner needs them: which to evaluate, and where to show how their actions go."""

    async def list_rules(self) -> list[Rule]: ...

    async def set_rule_state(self, rule_id: int, state: str, since_ms: int, error: str | None) -> None:
        """A rule's delivery state (running, retrying, failing), since when, and why."""
        ...


class StatusReader(Protocol):
    """Running status and history: tables the log writes (with each message, in its transaction), read
    for the management side."""

    async def device_status(self, device_id: int) -> tuple[int | None, dict[str, tuple[Any, int]]]: ...

    async def online_by_product(self, now_ms: int, default_timeout_ms: int) -> list[tuple[str, int]]:
        """(product key, devices seen within its presence timeout) of every product."""
        ...

    async def history(
        self, device_id: int, identifier: str, from_ms: int | None, to_ms: int | None, limit: int
    ) -> list[tuple[int, Any, int]]: ...

    async def history_after(
        self, device_id: int, identifier: str, after: tuple[int, int], to_ms: int, limit: int
    ) -> list[tuple[int, Any, int]]:
        """(time, value, messageId) oldest first, after the (time, messageId) ``after``: an export's pages."""
        ...

    async def history_buckets(
        self, device_id: int, identifier: str, from_ms: int, to_ms: int, width_ms: int
    ) -> list[HistoryBucket]:
        """[from_ms, to_ms] cut into slices of ``width_ms`` from ``from_ms``, the slices with values, newest
        first: aggregated in the database, so a chart of a month reads a few hundred rows, not millions."""
        ...


class RegistryAdmin(RegistryReader, SubscriptionStates, RuleStates, Protocol):
    """Products, devices, thing models, subscriptions and API keys, for the management side. Every change
    to a product or device is also a change-feed entry."""

    async def create_product(self, product: Product) -> None: ...

    async def create_device(
        self, product_key: str, device_name: str, secret: str, created_ms: int, device_id: str,
        gateway_id: int | None = None,
    ) -> Device: ...

    async def children(self, gateway_id: int) -> list[Device]: ...

    async def devices_by_name(self, product_key: str, after_name: str, limit: int) -> list[Device]:
        """A product's devices in deviceName order after ``after_name``, at most ``limit``."""
        ...

    async def delete_product(self, product_key: str, force: bool) -> tuple[int, int]:
        """Delete a product (and with ``force`` its devices and subscriptions); (devices, subscriptions) deleted."""
        ...

    async def import_devices(
        self, rows: Sequence[tuple[str, str, str, str]], created_ms: int, skip_refused: bool,
        check_only: bool = False,
    ) -> tuple[dict[int, tuple[str, str]], int]:
        """(productKey, deviceName, device_id, secret) rows in one transaction; the rows the store refused
        (index -> (code, reason)) and how many were inserted (none when any was refused, unless skipping)."""
        ...

    async def list_devices(
        self, product_key: str | None, name_prefix: str | None = None, enabled: bool | None = None,
        after_id: int = 0, limit: int = 1_000_000,
    ) -> list[Device]: ...

    async def device_page(
        self, now_ms: int, default_timeout_ms: int, product_key: str | None, name_prefix: str | None = None,
        enabled: bool | None = None, online: bool | None = None, after_id: int = 0, limit: int = 100,
    ) -> tuple[list[ListedDevice], int | None]:
        """Devices in id order with their presence, filtered, a bounded read at a time; and the next cursor."""
        ...

    async def listed_children(self, gateway_id: int, now_ms: int, default_timeout_ms: int) -> list[ListedDevice]: ...

    async def device_counts(
        self, now_ms: int, default_timeout_ms: int, product_key: str | None = None,
    ) -> dict[str, DeviceCounts]:
        """Per product: devices, online, disabled."""
        ...

    async def revoke_tokens(self, device_id: int) -> None: ...

    async def set_product_topics(self, product_key: str, topics: tuple[tuple[str, str], ...]) -> None: ...

    async def create_api_key(self, name: str, role: str, key_hash: bytes, prefix: str, created_ms: int) -> ApiKey: ...

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def delete_api_key(self, key_id: int) -> None: ...

    async def set_product_presence_timeout(self, product_key: str, seconds: float | None) -> None: ...

    async def set_product_device_rate(self, product_key: str, rate: float | None, burst: float | None) -> None: ...

    async def set_product_sign_type_1(self, product_key: str, required: bool | None) -> None: ...

    async def create_subscription(
        self, name: str, products: tuple[str, ...], kinds: tuple[str, ...], topic_filter: str | None, sink: str,
        options: dict[str, Any], from_start: bool, created_ms: int,
    ) -> Subscription: ...

    async def get_subscription(self, name: str) -> Subscription | None: ...

    async def set_subscription_enabled(self, name: str, enabled: bool) -> None: ...

    async def delete_subscription(self, name: str) -> None: ...

    async def create_rule(self, name: str, statement: str, actions: tuple[RuleAction, ...], enabled: bool,
                          from_start: bool, created_ms: int) -> Rule: ...

    async def get_rule(self, name: str) -> Rule | None: ...

    async def set_rule_enabled(self, name: str, enabled: bool) -> None: ...

    async def delete_rule(self, name: str) -> None: ...

    async def set_device_enabled(self, device_id: int, enabled: bool) -> None: ...

    async def reset_device_secret(self, device_id: int, secret: str) -> None: ...

    async def delete_device(self, device_id: int) -> None: ...

    async def set_thing_model(
        self, product_key: str, version: str, document: dict[str, Any], created_ms: int,
    ) -> None: ...

    async def set_product_validation(self, product_key: str, validation: str) -> None: ...


class Registry(RegistryAdmin, StatusReader, Protocol):
    """Everything the registry adapter provides (one SQL database holds it all): what the management use
    cases take, as they administer and show running status alike."""


class MessageLog(Protocol):
    """The durable log. ``append`` returns only once the message is committed."""

    async def append(self, message: StoredMessage) -> None: ...

    async def append_many(self, messages: tuple[StoredMessage, ...]) -> None:
        """Several messages in one transaction: all are committed, or none."""
        ...

    async def record_session(self, session: AuthSession) -> None: ...

    async def newest(self, limit: int, after_seq: int | None = None) -> list[StoredMessage]: ...

    async def read_after(self, seq: int, limit: int) -> list[StoredMessage]:
        """Committed messages after ``seq``, in commit order."""
        ...

    async def last_seq(self) -> int: ...

    async def backlogs(self, cursors: list[int]) -> list[int]:
        """Log messages after each cursor (what a subscription at it has yet to confirm)."""
        ...

    async def save_cursor(self, subscription_id: int, seq: int) -> None: ...

    async def save_rule_progress(self, rule_id: int, seq: int, matched: int, failed: int, error: str | None,
                                 error_ms: int | None) -> None:
        """A rule is done up to ``seq``; its counts grow by that stretch's (in the same write)."""
        ...

    async def save_delivered(self, subscription_id: int, seq: int) -> None:
        """A pull subscription handed messages up to ``seq`` to a consumer (acknowledgements stop there)."""
        ...

    async def delete_before(self, seq: int, received_before_ms: int | None, max_rows: int) -> int:
        """Retention: delete up to ``max_rows`` of the oldest messages below ``seq``; returns how many."""
        ...

    async def size_bytes(self) -> int: ...

    async def query(
        self, product_key: str | None = None, device_id: int | None = None, topic: str | None = None,
        from_ms: int | None = None, to_ms: int | None = None, before_seq: int | None = None, limit: int = 100,
    ) -> list[StoredMessage]: ...


# --- what start-up, readiness and key rotation call on the stores (runtime/bootstrap.py, the CLI) ---


class ChangeFeed(Protocol):
    """Where the registry's change feed ends now: a cache that starts from it hears of every later change."""

    async def change_cursor(self) -> int: ...


class Pingable(Protocol):
    """Readiness: does the database answer?"""

    async def ping(self) -> None:
        """Raises when it does not."""
        ...


class KeyResealer(Protocol):
    """Key rotation: every stored credential sealed again with the newest master key."""

    async def reseal_all(self) -> int:
        """How many were sealed with an older key."""
        ...


class LogWriter(Protocol):
    """The log's writer, run by the process that serves: started on its event loop, closed at the end
    (what is queued is written first)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def close(self) -> None: ...

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the event loop after every committed batch (wakes forwarders and pulls)."""
        ...


class WriteProbe(Protocol):
    """Readiness of a store that refused writes: can it write again?"""

    async def probe_write(self, at_ms: int) -> None:
        """One real write with no meaning; raises what the database says if it fails."""
        ...


# --- shared state: rate limits and presence arbitration (in-process, or through Redis when clustered) ---


class Limits(Protocol):
    """Rate limits on reports and authentication attempts; Throttled or InstanceThrottled when spent."""

    async def check_report(self, device: Device, rate: Rate | None) -> None:
        """Spend one report of ``device`` (``rate``: its product's device rate, None for the server's)."""
        ...

    async def check_auth(self, device_key: str, source: str) -> None:
        """Spend one authentication attempt naming ``device_key`` from address ``source``."""
        ...

    async def check_device_auth(self, device_key: str, source: str) -> None:
        """Spend one attempt of ``device_key``'s bucket alone (its source's was spent under another name)."""
        ...


class Arbiter(Protocol):
    """Decides which instance says a device's transition; every answer is True while it cannot tell."""

    async def claim(self, device: Device, ttl_ms: int) -> bool: ...

    async def release(self, device: Device) -> bool: ...

    async def refresh(self, ttls: list[tuple[Device, int]]) -> bool: ...
