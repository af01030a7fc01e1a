"""Management operations on products, devices and the message log: the one implementation of each
rule, shared by the CLI and the REST API."""

import asyncio
import enum
import hashlib
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from thingport.bus.reader import SubscriptionReader
from thingport.core import identity
from thingport.core.errors import Conflict, NotFound, ParamError, SinkUnreachable
from thingport.core.model import (
    API_ROLES,
    VALIDATION_MODES,
    ApiKey,
    Device,
    DeviceCounts,
    DeviceStatus,
    ForwardAction,
    HistoryBucket,
    ListedDevice,
    Product,
    Rule,
    StoredMessage,
    Subscription,
    is_online,
)
from thingport.core.ports import MessageLog, Registry
from thingport.core.rule_actions import ActionError, actions_from_docs
from thingport.core.thingmodel import ThingModel
from thingport.core.topics import MAX_CATEGORIES, TopicKind, check_category, compile_topic_filter
from thingport.manage import rules
from thingport.manage.alarms import AlarmService, AlarmStore
from thingport.manage.device_files import DeviceRow
from thingport.manage.thing_models import compile_model

if TYPE_CHECKING:
    from thingport.bus.base import Sink
    from thingport.bus.consumer import CommitSignal

T = TypeVar("T")


class Keep(enum.Enum):
    """A setting left as it is (where None has a meaning of its own: the server's default)."""

    KEEP = "keep"


KEEP = Keep.KEEP

DEFAULT_PRESENCE_TIMEOUT_S = 300
HISTORY_MAX_LIMIT = 10_000
HISTORY_MAX_BUCKETS = 2_000  # a chart is at most a few thousand pixels wide
HISTORY_EXPORT_PAGE = 5_000  # rows an export reads at a time
PAGE_MAX_LIMIT = 1000
SEARCH_SCAN_MAX = 20_000  # log messages one filtered search looks through (then it gives its next page)
MESSAGE_KINDS = (*(kind.value for kind in TopicKind), "status", "alarm")
API_KEY_PREFIX = "tpk_"
SUBSCRIPTION_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
RULE_NAME_RE = SUBSCRIPTION_NAME_RE
SUBSCRIPTION_MAX_PRODUCTS = 100  # a longer list is better served by a subscription of every product


def hash_api_key(key: str) -> bytes:
    """Keys are 256 random bits, so one SHA-256 makes a stolen table useless (no salt or KDF needed)."""
    return hashlib.sha256(key.encode()).digest()

NODE_TYPES = ("device", "gateway")
EXPORT_PAGE = 10_000  # devices read per query while exporting
LIST_PAGE = 1000  # devices per page while listing them all (`device list`)


@dataclass(slots=True)
class Refusal:
    """A row an import refused: its line in the file, its deviceName (when it could be read), and why.

    Codes: malformed, wrong_product, bad_name, bad_device_id, bad_secret, duplicate (twice in the file),
    exists (already stored), unknown_product (the product went away while importing)."""

    line: int
    device_name: str | None
    code: str
    reason: str


@dataclass(slots=True)
class ImportedDevice:
    device_name: str
    device_id: str
    secret: str
    generated: bool  # the import made the secret up: the operator learns it only from the import's output


@dataclass(repr=False)  # asyncio.run reprs its main task, result included: a million devices took seconds
class ImportReport:
    product_key: str
    rows: int = 0
    imported: int = 0
    refusals: list[Refusal] = field(default_factory=list)
    devices: list[ImportedDevice] = field(default_factory=list)  # the ones imported

    @property
    def generated(self) -> int:
        return sum(1 for d in self.devices if d.generated)

    def __repr__(self) -> str:
        return (f"ImportReport({self.product_key!r}, rows={self.rows}, imported={self.imported},"
                f" refused={len(self.refusals)})")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _checked(check: Callable[[str], T], value: str) -> T:
    try:
        return check(value)
    except ValueError as exc:
        raise ParamError(str(exc)) from None


class Management:
    def __init__(
        self, registry: Registry, log: MessageLog, presence_timeout_s: float = DEFAULT_PRESENCE_TIMEOUT_S,
        commits: "CommitSignal | None" = None, alarm_store: AlarmStore | None = None,
    ) -> None:
        self._registry = registry
        self._alarms = AlarmService(alarm_store, registry) if alarm_store is not None else None
        self._log = log
        self._presence_timeout_ms = int(presence_timeout_s * 1000)
        self._commits = commits  # lets pulls wait for new messages when the server runs this

    @property
    def alarms(self) -> AlarmService:
        """Alarm definitions and alarms (manage/alarms.py)."""
        if self._alarms is None:
            raise RuntimeError("this Management was made without an alarm store")
        return self._alarms

    async def create_product(
        self,
        name: str,
        product_key: str | None = None,
        node_type: str = "device",
        model: dict | None = None,
        validation: str = "per-property",
        model_format: str = "auto",
        topics: list[tuple[str, str]] | None = None,
        require_sign_type_1: bool | None = None,
    ) -> Product:
        """A product; its model, validation mode and topic categories are all checked before anything is
        created, so a bad one creates nothing. ``require_sign_type_1`` None: the server's setting."""
        _checked(identity.check_product_name, name)
        if node_type not in NODE_TYPES:
            raise ParamError(f"node type must be one of {', '.join(NODE_TYPES)}")
        _check_validation(validation)
        compiled = compile_model(model, model_format) if model is not None else None
        categories = _check_categories(topics or [])
        key = _checked(identity.check_product_key, product_key) if product_key else identity.generate_product_key()
        await self._registry.create_product(Product(key, name, node_type, _now_ms()))
        if validation != "per-property":
            await self._registry.set_product_validation(key, validation)
        if compiled is not None:
            await self._registry.set_thing_model(key, compiled.version, compiled.to_document(), _now_ms())
        if categories:
            await self._registry.set_product_topics(key, categories)
        if require_sign_type_1 is not None:
            await self._registry.set_product_sign_type_1(key, require_sign_type_1)
        return await self.product(key)

    async def import_thing_model(self, product_key: str, document: dict, model_format: str = "auto") -> Product:
        """Make ``document`` the product's model; running servers use it within a second."""
        await self.product(product_key)
        model = compile_model(document, model_format)
        await self._registry.set_thing_model(product_key, model.version, model.to_document(), _now_ms())
        return await self.product(product_key)

    async def _current_model(self, product_key: str) -> ThingModel:
        product = await self.product(product_key)
        if product.model_version is None:
            raise NotFound(f"product {product_key} has no thing model (it accepts any properties)")
        document = await self._registry.thing_model(product_key, product.model_version)
        assert document is not None
        return ThingModel.from_document(document)

    async def export_thing_model(self, product_key: str) -> dict:
        """The product's model as Alibaba TSL, its profile naming the product."""
        tsl = (await self._current_model(product_key)).to_tsl()
        if isinstance(tsl.get("profile"), dict):
            tsl["profile"]["productKey"] = product_key
        return tsl

    async def export_thing_model_or_none(self, product_key: str) -> dict | None:
        """The TSL view of the product's model; None when it has none (it accepts any properties)."""
        if (await self.product(product_key)).model_version is None:
            return None
        return await self.export_thing_model(product_key)

    async def model_document(self, product_key: str) -> dict:
        """The product's model as it was imported: ``{"format": "tsl"|"huawei", "model": {...}}``;
        ``{"format": "schemaless", "model": {}}`` for a product without one."""
        if (await self.product(product_key)).model_version is None:
            return {"format": "schemaless", "model": {}}
        return (await self._current_model(product_key)).to_document()

    async def update_product(
        self, product_key: str, *, validation: str | None = None, presence_timeout_s: float | None = None,
        report_rate: float | None = None, report_burst: float | None = None,
        require_sign_type_1: "bool | None | Keep" = KEEP,
    ) -> Product:
        """Change the settings given and leave the rest (``product set`` and the API's PATCH). A presence
        timeout, rate or burst of 0 goes back to the server's default, as does ``require_sign_type_1=None``."""
        if validation is not None:
            await self.set_validation(product_key, validation)
        if presence_timeout_s is not None:
            await self.set_presence_timeout(product_key, presence_timeout_s or None)
        if report_rate is not None or report_burst is not None:
            await self.set_device_report_rate(product_key, report_rate, report_burst)
        if not isinstance(require_sign_type_1, Keep):
            await self.set_sign_type_1(product_key, require_sign_type_1)
        return await self.product(product_key)

    async def set_validation(self, product_key: str, validation: str) -> Product:
        _check_validation(validation)
        await self._registry.set_product_validation(product_key, validation)
        return await self.product(product_key)

    async def delete_product(self, product_key: str, force: bool = False) -> tuple[Product, int, int]:
        """Delete a product; refused while it has devices or subscriptions unless ``force``, which deletes
        them too. The product as it was, and how many devices and subscriptions went with it."""
        product = await self.product(product_key)
        devices, subscriptions = await self._registry.delete_product(product_key, force)
        return product, devices, subscriptions

    async def product(self, product_key: str) -> Product:
        product = await self._registry.get_product(product_key)
        if product is None:
            raise NotFound(f"product {product_key} does not exist")
        return product

    async def products(self) -> list[Product]:
        return await self._registry.list_products()

    async def create_device(
        self,
        product_key: str,
        device_name: str | None = None,
        secret: str | None = None,
        device_id: str | None = None,
        gateway: tuple[str, str] | None = None,
    ) -> Device:
        """A device, addressable in both dialects: ``(productKey, deviceName)`` and IoTDA ``device_id``.

        Given only a device_id, the deviceName is its node id (the part after ``<productKey>_``); given
        only a deviceName, the device_id is ``<productKey>_<deviceName>``. ``gateway`` makes it a
        sub-device of that gateway device.
        """
        if device_name is None and device_id is None:
            raise ParamError("a device needs a deviceName or a device_id")
        if device_id is not None:
            _checked(identity.check_device_id, device_id)
        if device_name is None:
            assert device_id is not None
            device_name = identity.device_name_from_id(product_key, device_id)
            try:
                identity.check_device_name(device_name)
            except ValueError as exc:
                raise ParamError(f"{exc}: give the deviceName explicitly") from None
        _checked(identity.check_device_name, device_name)
        if device_id is None:
            device_id = identity.default_device_id(product_key, device_name)
        secret = _checked(identity.check_secret, secret) if secret is not None else identity.generate_device_secret()
        gateway_id = None
        if gateway is not None:
            parent = await self.device(*gateway)
            if (await self.product(parent.product_key)).node_type != "gateway":
                raise ParamError(f"{gateway[0]}/{gateway[1]} is not a gateway (its product's node type is not gateway)")
            gateway_id = parent.id
        await self.product(product_key)
        return await self._registry.create_device(product_key, device_name, secret, _now_ms(), device_id, gateway_id)

    async def import_devices(
        self, product_key: str, rows: Iterable[DeviceRow], skip_invalid: bool = False, dry_run: bool = False,
    ) -> ImportReport:
        """Create a product's devices from a device file's rows, all or nothing.

        Every row is checked as ``create_device`` checks one, and against the others (a deviceName or
        device_id twice) and the store (one that exists). Any refused row means nothing is imported,
        unless ``skip_invalid``: then the valid rows are. Either way the report lists every refused row
        and why. ``dry_run`` checks everything and imports nothing. Secrets not given are generated."""
        await self.product(product_key)
        # reading and checking a million rows takes seconds: not on the event loop, which serves devices too
        report, accepted, devices = await asyncio.to_thread(_check_rows, product_key, rows)
        check_only = dry_run or (bool(report.refusals) and not skip_invalid)
        refused, report.imported = await self._registry.import_devices(
            [(product_key, d.device_name, d.device_id, d.secret) for d in devices], _now_ms(),
            skip_refused=skip_invalid, check_only=check_only,
        )
        for index, (code, reason) in refused.items():
            report.refusals.append(Refusal(accepted[index].line, devices[index].device_name, code, reason))
        report.refusals.sort(key=lambda r: r.line)
        if report.imported:
            report.devices = [d for i, d in enumerate(devices) if i not in refused]
        return report

    async def export_devices(self, product_key: str) -> AsyncIterator[Device]:
        """Every device of the product in deviceName order, read a page at a time."""
        await self.product(product_key)
        after = ""
        while True:
            page = await self._registry.devices_by_name(product_key, after, EXPORT_PAGE)
            for device in page:
                yield device
            if len(page) < EXPORT_PAGE:
                return
            after = page[-1].device_name

    async def children(self, product_key: str, device_name: str) -> list[ListedDevice]:
        """A gateway's sub-devices, with their presence."""
        gateway = await self.device(product_key, device_name)
        return await self._registry.listed_children(gateway.id, _now_ms(), self._presence_timeout_ms)

    async def device(self, product_key: str, device_name: str) -> Device:
        device = await self._registry.device_by_name(product_key, device_name)
        if device is None:
            raise NotFound(f"device {product_key}/{device_name} does not exist")
        return device

    async def devices(
        self, product_key: str | None = None, name_prefix: str | None = None, enabled: bool | None = None,
        after_id: int = 0, limit: int = 1_000_000,
    ) -> list[Device]:
        if product_key is not None:
            await self.product(product_key)
        return await self._registry.list_devices(product_key, name_prefix, enabled, after_id, limit)

    async def device_page(
        self, product_key: str | None = None, name_prefix: str | None = None, enabled: bool | None = None,
        online: bool | None = None, after_id: int = 0, limit: int = 100,
    ) -> tuple[list[ListedDevice], int | None]:
        """A page of devices with their presence (as ``device_status`` says it), and the id the next page
        starts after (None: done). A page may be short and still have a next one: see the registry."""
        if product_key is not None:
            await self.product(product_key)
        return await self._registry.device_page(
            _now_ms(), self._presence_timeout_ms, product_key, name_prefix, enabled, online, after_id, limit)

    async def listed_devices(
        self, product_key: str | None = None, name_prefix: str | None = None, enabled: bool | None = None,
        online: bool | None = None,
    ) -> AsyncIterator[ListedDevice]:
        """Every device the filters match, a page at a time (``device list``)."""
        after: int | None = 0
        while after is not None:
            page, after = await self.device_page(product_key, name_prefix, enabled, online, after, LIST_PAGE)
            for listed in page:
                yield listed

    async def device_counts(self, product_key: str | None = None) -> dict[str, DeviceCounts]:
        """Per product: its devices, those online, those disabled."""
        if product_key is not None:
            await self.product(product_key)
        return await self._registry.device_counts(_now_ms(), self._presence_timeout_ms, product_key)

    async def revoke_tokens(self, product_key: str, device_name: str) -> Device:
        """Kill every token the device holds; it may authenticate again."""
        device = await self.device(product_key, device_name)
        await self._registry.revoke_tokens(device.id)
        return await self.device(product_key, device_name)

    async def set_topic_categories(self, product_key: str, categories: list[tuple[str, str]]) -> Product:
        """Replace the product's custom topic categories (suffix after /pk/dn/, pub|sub|all)."""
        checked = _check_categories(categories)
        await self.product(product_key)
        await self._registry.set_product_topics(product_key, checked)
        return await self.product(product_key)

    # --- subscriptions (forwarding to applications) ---

    async def create_subscription(
        self, name: str, products: str | list[str] | None, sink: str, kinds: list[str] | None = None,
        topic_filter: str | None = None, options: dict | None = None, from_start: bool = False,
        check: bool = True,
    ) -> Subscription:
        """A subscription of the messages of one product (a key), a list of products, or every product
        (None: those created later too); a push sink's options are checked before it is stored, and unless
        ``check`` is False the sink itself: connected to with its credentials (SinkUnreachable)."""
        from thingport.bus.envelope import ENVELOPE_KINDS
        from thingport.bus.factory import PULL, SINK_TYPES

        if not SUBSCRIPTION_NAME_RE.fullmatch(name):
            raise ParamError("subscription name must be 1-64 letters, digits, '_' and '-'")
        if sink not in SINK_TYPES:
            raise ParamError(f"sink must be one of {', '.join(SINK_TYPES)}")
        kinds = kinds or list(ENVELOPE_KINDS)
        bad = [k for k in kinds if k not in ENVELOPE_KINDS]
        if bad or len(set(kinds)) != len(kinds):
            raise ParamError(f"kinds must be distinct values of {', '.join(ENVELOPE_KINDS)}")
        if topic_filter is not None:
            _checked(compile_topic_filter, topic_filter)
        scope = _check_products(products)
        options = options or {}
        pushed = _push_sink(sink, options) if sink != PULL else None
        for product_key in scope:
            await self.product(product_key)
        if pushed is not None and check:
            await _check_sink(pushed, "subscription")
        return await self._registry.create_subscription(
            name, scope, tuple(kinds), topic_filter, sink, options, from_start, _now_ms()
        )

    async def subscription(self, name: str) -> Subscription:
        found = await self._registry.get_subscription(name)
        if found is None:
            raise NotFound(f"subscription {name} does not exist")
        return found

    async def subscriptions(self) -> list[tuple[Subscription, int]]:
        """Every subscription with its backlog (log messages it has yet to confirm)."""
        subscriptions = await self._registry.list_subscriptions()
        return list(zip(subscriptions, await self._log.backlogs([s.cursor for s in subscriptions]), strict=True))

    async def set_subscription_enabled(self, name: str, enabled: bool) -> Subscription:
        await self._registry.set_subscription_enabled(name, enabled)
        return await self.subscription(name)

    async def delete_subscription(self, name: str) -> None:
        await self._registry.delete_subscription(name)

    # --- rules (statements over the log, and what to do with what they emit) ---

    async def create_rule(self, name: str, statement: str, actions: list[dict[str, Any]], enabled: bool = True,
                          from_start: bool = False, check: bool = True) -> Rule:
        """A rule: the statement compiled (a syntax error names where), every action checked (a forward
        action's sink and options as a subscription's, and unless ``check`` is False connected to), and only
        then stored: a refused rule leaves nothing behind. It starts at the newest message (``from_start``:
        the oldest retained)."""
        from thingport.bus.factory import PULL

        if not RULE_NAME_RE.fullmatch(name):
            raise ParamError("rule name must be 1-64 letters, digits, '_' and '-'")
        rules.compiled(statement)
        try:
            parsed = actions_from_docs(actions)
        except ActionError as exc:
            raise ParamError(str(exc)) from None
        sinks = []
        for position, action in enumerate(parsed, start=1):
            if not isinstance(action, ForwardAction):  # an alarm action: checked as it was read
                continue
            if action.sink == PULL:
                raise ParamError(f"action {position}: a rule forwards to a push sink (rabbitmq, nats, mqtt, "
                                 f"webhook), not {PULL}: pull a subscription's messages instead")
            try:
                sinks.append(_push_sink(action.sink, action.options))
            except ParamError as exc:
                raise ParamError(f"action {position}: {exc}") from None
        if check:
            for sink in sinks:
                await _check_sink(sink, "rule")
        return await self._registry.create_rule(name, statement, parsed, enabled, from_start, _now_ms())

    async def rule(self, name: str) -> tuple[Rule, int]:
        """A rule with its backlog (log messages it has yet to evaluate or deliver)."""
        found = await self._registry.get_rule(name)
        if found is None:
            raise NotFound(f"rule {name} does not exist")
        return found, (await self._log.backlogs([found.cursor]))[0]

    async def list_rules(self) -> list[tuple[Rule, int]]:
        """Every rule with its backlog."""
        listed = await self._registry.list_rules()
        return list(zip(listed, await self._log.backlogs([r.cursor for r in listed]), strict=True))

    async def set_rule_enabled(self, name: str, enabled: bool) -> tuple[Rule, int]:
        await self._registry.set_rule_enabled(name, enabled)
        return await self.rule(name)

    async def delete_rule(self, name: str) -> None:
        await self._registry.delete_rule(name)

    async def pull(
        self, name: str, max_messages: int = 100, wait_s: float = 0.0, consumer: bool = False,
    ) -> tuple[list[StoredMessage], int]:
        """The next messages of an ``http`` subscription after its acknowledged cursor, and the cursor to
        acknowledge them with. Until acknowledged, the same messages are pulled again (redelivery).

        A ``consumer`` pull (a key that may acknowledge) records how far it handed messages out, durably,
        before they go: an acknowledgement can never pass that. A read key's pull is a peek and records nothing."""
        from thingport.bus.factory import PULL

        if not 1 <= max_messages <= PAGE_MAX_LIMIT:
            raise ParamError(f"max must be 1-{PAGE_MAX_LIMIT}")
        subscription = await self.subscription(name)
        if subscription.sink != PULL:
            raise ParamError(f"subscription {name} pushes to {subscription.sink}; only http subscriptions are pulled")
        reader = SubscriptionReader(self._log, subscription)
        deadline = time.monotonic() + min(max(wait_s, 0.0), 30.0)
        cursor = subscription.cursor
        while True:
            armed = self._commits.armed() if self._commits is not None else None  # a commit during the read wakes
            read = await reader.collect(cursor, max_messages)
            cursor = read.cursor
            remaining = deadline - time.monotonic()
            if read.messages or remaining <= 0 or self._commits is None:
                if consumer and cursor > subscription.delivered:
                    await self._log.save_delivered(subscription.id, cursor)
                return read.messages, cursor
            await self._commits.wait(remaining, armed)

    async def ack(self, name: str, cursor: int) -> Subscription:
        """Acknowledge everything of an http subscription up to ``cursor`` (from a pull, or an SSE event id).

        Only pull subscriptions are acknowledged (a push sink's cursor is its forwarder's alone), and never
        beyond what a consumer pull or stream handed out: what nobody received cannot be acknowledged away."""
        from thingport.bus.factory import PULL

        subscription = await self.subscription(name)
        if subscription.sink != PULL:
            raise ParamError(
                f"subscription {name} pushes to {subscription.sink}; only http subscriptions are acknowledged"
            )
        if cursor < 0:
            raise ParamError("cursor is not one a pull returned")
        if cursor > subscription.delivered:
            raise Conflict(
                f"cursor {cursor} is beyond what subscription {name} delivered ({subscription.delivered}):"
                " acknowledge only what a pull or the event stream gave you"
            )
        await self._log.save_cursor(subscription.id, cursor)
        return await self.subscription(name)

    async def stream(
        self, name: str, after_seq: int | None, consumer: bool = False, auto_ack: bool = False,
    ) -> AsyncGenerator[StoredMessage | None, None]:
        """Envelope-ready messages of a subscription after ``after_seq`` (default: its cursor), forever:
        what its Server-Sent Events stream sends. A ``consumer`` stream records (durably, before they go) how
        far it handed messages out, as a consumer pull does.

        Without ``auto_ack`` the cursor stays where it is until the client acknowledges an event id. With it
        (an http subscription, a consumer), the stream acknowledges as it goes: once every message of a read
        was handed on to be written to the connection, the cursor moves past them (and past what the filter
        skipped), so retention may delete them. What was written but not yet received when the connection
        drops is not sent again: at most once at that edge, the price of needing no acknowledgement."""
        from thingport.bus.factory import PULL

        subscription = await self.subscription(name)
        reader = SubscriptionReader(self._log, subscription)
        cursor = subscription.cursor if after_seq is None else after_seq
        delivered = subscription.delivered
        # only a stream that starts within what was delivered extends it: one resumed further on (a made-up
        # Last-Event-ID) skipped messages nobody was handed, and an ack may never cover those
        recording = consumer and subscription.sink == PULL and cursor <= delivered
        if auto_ack:
            if subscription.sink != PULL:
                raise ParamError(f"subscription {name} pushes to {subscription.sink}; only http subscriptions "
                                 "are acknowledged")
            if not recording:
                raise Conflict(f"Last-Event-ID {cursor} is beyond what subscription {name} delivered "
                               f"({delivered}): an automatically acknowledged stream may not skip messages")
        acked = subscription.cursor
        while True:
            armed = self._commits.armed() if self._commits is not None else None  # as in pull
            read = await reader.read(cursor)
            if recording and read.scanned and read.cursor > delivered:
                delivered = read.cursor
                await self._log.save_delivered(subscription.id, delivered)
            for message in read.messages:
                yield message
            cursor = read.cursor
            if auto_ack and cursor > acked:  # the caller came back for more: what it was given went out
                acked = cursor
                await self._log.save_cursor(subscription.id, acked)
            if not read.scanned:
                yield None  # idle: lets the caller send a heartbeat
                if self._commits is not None:
                    await self._commits.wait(15.0, armed)
                else:
                    await asyncio.sleep(1.0)

    async def set_presence_timeout(self, product_key: str, seconds: float | None) -> Product:
        if seconds is not None and not 1 <= seconds <= 7 * 86400:
            raise ParamError("presence timeout must be 1 s to 7 days")
        await self._registry.set_product_presence_timeout(product_key, seconds)
        return await self.product(product_key)

    async def set_sign_type_1(self, product_key: str, required: bool | None) -> Product:
        """Whether its devices' IoTDA auth must be sign_type 1 (time-checked): sign_type 0's password never
        expires, so a captured one authenticates forever. None: the server's setting."""
        await self._registry.set_product_sign_type_1(product_key, required)
        return await self.product(product_key)

    async def set_device_report_rate(self, product_key: str, rate: float | None, burst: float | None) -> Product:
        """Each device's report bucket for this product: ``rate`` per second, ``burst`` at once. None keeps
        what is set; 0 goes back to the server's default."""
        current = await self.product(product_key)
        if rate is None:
            rate = current.device_report_rate
        if burst is None:
            burst = current.device_report_burst
        rate, burst = rate or None, burst or None
        if rate is not None and not 0.001 <= rate <= 1_000_000:
            raise ParamError("device report rate must be 0.001 to 1000000 per second")
        if burst is not None and not 1 <= burst <= 1_000_000:
            raise ParamError("device report burst must be 1 to 1000000")
        await self._registry.set_product_device_rate(product_key, rate, burst)
        return await self.product(product_key)

    # --- API keys ---

    async def create_api_key(self, name: str, role: str = "admin") -> tuple[ApiKey, str]:
        """A new key and its record; the key is returned this once and stored only as a hash."""
        if not 1 <= len(name) <= 64 or not name.isprintable():
            raise ParamError("API key name must be 1-64 printable characters")
        if role not in API_ROLES:
            raise ParamError(f"role must be one of {', '.join(API_ROLES)}")
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        record = await self._registry.create_api_key(name, role, hash_api_key(key), key[:10], _now_ms())
        return record, key

    async def api_keys(self) -> list[ApiKey]:
        return await self._registry.list_api_keys()

    async def delete_api_key(self, key_id: int) -> None:
        await self._registry.delete_api_key(key_id)

    async def api_key_for(self, key: str) -> ApiKey | None:
        """The record of a presented key (None: unknown); the lookup is by hash."""
        if not key.startswith(API_KEY_PREFIX) or len(key) > 128:
            return None
        return await self._registry.api_key_by_hash(hash_api_key(key))

    async def messages(
        self, product_key: str | None = None, device_name: str | None = None, topic: str | None = None,
        from_ms: int | None = None, to_ms: int | None = None, before_seq: int | None = None, limit: int = 100,
    ) -> list[StoredMessage]:
        """Stored messages, newest first."""
        if not 1 <= limit <= PAGE_MAX_LIMIT:
            raise ParamError(f"limit must be 1-{PAGE_MAX_LIMIT}")
        if device_name is not None and product_key is None:
            raise ParamError("productKey is required with deviceName")
        device_id = (await self.device(product_key, device_name)).id if device_name is not None else None  # type: ignore[arg-type]
        return await self._log.query(product_key, device_id, topic, from_ms, to_ms, before_seq, limit)

    async def try_rule(self, statement: str, payload: bytes | None = None, last: int | None = None,
                       topic: str = "") -> list[rules.Trial]:
        """A rule statement tried on a sample ``payload`` (published on ``topic``) or on the newest ``last``
        stored messages its FROM filter matches; nothing is changed or forwarded."""
        if (payload is None) == (last is None):
            raise ParamError("give either a sample payload or a number of stored messages (last)")
        if payload is not None:
            return [rules.try_sample(statement, payload, topic, received_ms=_now_ms())]
        return await rules.try_stored(self._log, statement, last)  # type: ignore[arg-type]

    async def find_messages(
        self, product_key: str | None = None, device_name: str | None = None, topic_filter: str | None = None,
        kind: str | None = None, before_seq: int | None = None, limit: int = 100,
    ) -> tuple[list[StoredMessage], int | None]:
        """Stored messages newest first, by product, device, MQTT-style topic filter and kind; with the
        ``before_seq`` of the next page (None on the last). The topic filter and kind are applied over pages of
        the log, looking through at most ``SEARCH_SCAN_MAX`` messages a call."""
        if kind is not None and kind not in MESSAGE_KINDS:
            raise ParamError(f"kind must be one of {', '.join(MESSAGE_KINDS)}")
        matches = _checked(compile_topic_filter, topic_filter) if topic_filter else None
        if matches is None and kind is None:
            page = await self.messages(product_key, device_name, None, None, None, before_seq, limit)
            return page, (page[-1].seq if len(page) == limit else None)
        if not 1 <= limit <= PAGE_MAX_LIMIT:
            raise ParamError(f"limit must be 1-{PAGE_MAX_LIMIT}")
        found: list[StoredMessage] = []
        scanned = 0
        while scanned < SEARCH_SCAN_MAX:
            page = await self.messages(product_key, device_name, None, None, None, before_seq, PAGE_MAX_LIMIT)
            for message in page:
                before_seq = message.seq
                if (kind is None or message.kind == kind) and (matches is None or matches(message.topic)):
                    found.append(message)
                    if len(found) == limit:
                        return found, before_seq
            if len(page) < PAGE_MAX_LIMIT:
                return found, None
            scanned += len(page)
        return found, before_seq

    async def set_enabled(self, product_key: str, device_name: str, enabled: bool) -> Device:
        device = await self.device(product_key, device_name)
        await self._registry.set_device_enabled(device.id, enabled)
        return await self.device(product_key, device_name)

    async def reset_secret(self, product_key: str, device_name: str, secret: str | None = None) -> Device:
        device = await self.device(product_key, device_name)
        secret = _checked(identity.check_secret, secret) if secret is not None else identity.generate_device_secret()
        await self._registry.reset_device_secret(device.id, secret)
        return await self.device(product_key, device_name)

    async def delete_device(self, product_key: str, device_name: str) -> Device:
        device = await self.device(product_key, device_name)
        await self._registry.delete_device(device.id)
        return device

    async def online_by_product(self) -> list[tuple[str, int]]:
        """Devices online per product, as ``device_status`` decides it for one."""
        return await self._registry.online_by_product(_now_ms(), self._presence_timeout_ms)

    async def device_status(self, product_key: str, device_name: str) -> DeviceStatus:
        device = await self.device(product_key, device_name)
        last_seen, latest = await self._registry.device_status(device.id)
        product_timeout = (await self.product(product_key)).presence_timeout_s
        timeout_ms = int(product_timeout * 1000) if product_timeout else self._presence_timeout_ms
        return DeviceStatus(device, is_online(device.enabled, last_seen, _now_ms(), timeout_ms), last_seen, latest)

    async def device_history(
        self, product_key: str, device_name: str, identifier: str,
        from_ms: int | None = None, to_ms: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        """One property's values, newest first."""
        if not 1 <= limit <= HISTORY_MAX_LIMIT:
            raise ParamError(f"limit must be 1-{HISTORY_MAX_LIMIT}")
        if from_ms is not None and to_ms is not None and from_ms > to_ms:
            raise ParamError("from must not be after to")
        device = await self.device(product_key, device_name)
        rows = await self._registry.history(device.id, identifier, from_ms, to_ms, limit)
        if not rows:
            await self._check_property_known(device, identifier)
        return [{"time": at, "value": value, "messageId": message_id, "messageIdText": str(message_id)}
                for at, value, message_id in rows]

    async def device_history_buckets(
        self, product_key: str, device_name: str, identifier: str, from_ms: int | None, to_ms: int | None,
        buckets: int,
    ) -> tuple[int, list[HistoryBucket]]:
        """[from, to] (to: now) cut into ``buckets`` equal slices: the slice width and the slices holding
        values, newest first. A chart of any window then costs the same few hundred points to send and draw."""
        if not 1 <= buckets <= HISTORY_MAX_BUCKETS:
            raise ParamError(f"buckets must be 1-{HISTORY_MAX_BUCKETS}")
        if from_ms is None:
            raise ParamError("buckets needs from: the start of the window to cut into buckets")
        to_ms = _now_ms() if to_ms is None else to_ms
        if from_ms > to_ms:
            raise ParamError("from must not be after to")
        width = -(-(to_ms - from_ms + 1) // buckets)  # ceiling: the last slice ends at or after to
        device = await self.device(product_key, device_name)
        rows = await self._registry.history_buckets(device.id, identifier, from_ms, to_ms, width)
        if not rows:
            await self._check_property_known(device, identifier)
        return width, rows

    async def device_history_export(
        self, product_key: str, device_name: str, identifier: str, from_ms: int | None, to_ms: int | None,
    ) -> AsyncIterator[list[tuple[int, Any, int]]]:
        """Every value of one property in [from, to], oldest first, in pages. The device and the property
        are checked before the first page, so a bad request fails before an export starts streaming."""
        if from_ms is not None and to_ms is not None and from_ms > to_ms:
            raise ParamError("from must not be after to")
        device = await self.device(product_key, device_name)
        await self._check_property_known(device, identifier)
        end = 2**63 - 1 if to_ms is None else to_ms
        start = (-(2**63), -(2**63)) if from_ms is None else (from_ms, -(2**63))

        async def pages() -> AsyncIterator[list[tuple[int, Any, int]]]:
            after = start
            while True:
                rows = await self._registry.history_after(device.id, identifier, after, end, HISTORY_EXPORT_PAGE)
                if rows:
                    yield rows
                if len(rows) < HISTORY_EXPORT_PAGE:
                    return
                after = (rows[-1][0], rows[-1][2])

        return pages()

    async def _check_property_known(self, device: Device, identifier: str) -> None:
        """ParamError for a property the product's model does not define (an empty history of a typo would
        read as "no data"); a product without a model accepts any property, so any may have none yet."""
        product = await self.product(device.product_key)
        if product.model_version is None:
            return
        names = (await self._current_model(device.product_key)).property_names
        if identifier not in names:
            known = ", ".join(sorted(names)[:20]) or "none"
            raise ParamError(f"unknown property {identifier!r}: the product's model defines {known}")

    async def newest_messages(self, limit: int, after_seq: int | None = None) -> list[StoredMessage]:
        if limit < 1:
            raise ParamError("limit must be at least 1")
        return await self._log.newest(limit, after_seq)


def _check_rows(
    product_key: str, rows: Iterable[DeviceRow],
) -> tuple[ImportReport, list[DeviceRow], list[ImportedDevice]]:
    """The report so far (every row counted, the ones refused on their own or as a twin of an earlier one),
    and the rows accepted with their devices, secrets generated where none was given."""
    report = ImportReport(product_key)
    accepted: list[tuple[DeviceRow, str, str]] = []  # row, deviceName, device_id
    names: dict[str, int] = {}
    ids: dict[str, int] = {}
    for row in rows:
        report.rows += 1
        refusal = _check_row(product_key, row)
        if isinstance(refusal, Refusal):
            report.refusals.append(refusal)
            continue
        name, device_id = refusal
        twin = names.get(name)
        if twin is None:
            twin = ids.get(device_id)
            what = f"device_id {device_id}"
        else:
            what = f"deviceName {name}"
        if twin is not None:
            report.refusals.append(Refusal(row.line, name, "duplicate", f"{what} is on line {twin} already"))
            continue
        names[name] = ids[device_id] = row.line
        accepted.append((row, name, device_id))
    generated = iter(identity.generate_device_secrets(sum(1 for r, _, _ in accepted if r.device_secret is None)))
    devices = [ImportedDevice(name, device_id, row.device_secret or next(generated), row.device_secret is None)
               for row, name, device_id in accepted]
    return report, [row for row, _, _ in accepted], devices


def _check_row(product_key: str, row: DeviceRow) -> Refusal | tuple[str, str]:
    """A device file row's (deviceName, device_id), by ``create_device``'s rules, or why it is refused."""
    name = row.device_name
    if row.error is not None:
        return Refusal(row.line, name, "malformed", row.error)
    if row.product_key is not None and row.product_key != product_key:
        return Refusal(row.line, name, "wrong_product",
                       f"productKey {row.product_key} is not the product imported into ({product_key})")
    if row.device_id is not None:
        try:
            identity.check_device_id(row.device_id)
        except ValueError as exc:
            return Refusal(row.line, name, "bad_device_id", str(exc))
    if name is None:
        assert row.device_id is not None
        name = identity.device_name_from_id(product_key, row.device_id)
    try:
        identity.check_device_name(name)
    except ValueError as exc:
        return Refusal(row.line, name, "bad_name", str(exc))
    if row.device_secret is not None:
        try:
            identity.check_secret(row.device_secret)
        except ValueError as exc:
            return Refusal(row.line, name, "bad_secret", str(exc))
    return name, row.device_id or identity.default_device_id(product_key, name)


def _check_categories(categories: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    if len(categories) > MAX_CATEGORIES:
        raise ParamError(f"at most {MAX_CATEGORIES} topic categories")
    try:
        checked = tuple(check_category(suffix, operation) for suffix, operation in categories)
    except ValueError as exc:
        raise ParamError(str(exc)) from None
    if len({suffix for suffix, _ in checked}) != len(checked):
        raise ParamError("a topic category is declared twice")
    return checked


def _check_products(products: str | list[str] | None) -> tuple[str, ...]:
    """A subscription's products as stored: the keys, or () for every product."""
    if products is None:
        return ()
    keys = [products] if isinstance(products, str) else list(products)
    if not keys:
        raise ParamError("give at least one product key, or choose every product")
    if len(keys) > SUBSCRIPTION_MAX_PRODUCTS:
        raise ParamError(f"at most {SUBSCRIPTION_MAX_PRODUCTS} products per subscription (or every product)")
    if len(set(keys)) != len(keys):
        raise ParamError("a product key is given twice")
    return tuple(keys)  # each must exist (NotFound), so none holds the list's comma


def _push_sink(sink: str, options: dict[str, Any]) -> "Sink":
    """The push sink ``sink`` with ``options``, made (not connected): ParamError when either is unusable."""
    from thingport.bus.base import SinkConfigError
    from thingport.bus.factory import SINK_TYPES, create_sink

    if sink not in SINK_TYPES:
        raise ParamError(f"sink must be one of {', '.join(SINK_TYPES)}")
    try:
        return create_sink(sink, options)
    except SinkConfigError as exc:
        raise ParamError(f"sink options: {exc}") from None
    except ImportError as exc:
        raise ParamError(f"the {sink} sink's client library is not installed: {exc}") from None


async def _check_sink(sink: "Sink", what: str) -> None:
    """Connect to ``sink`` with its credentials and let go; SinkUnreachable (nothing is created) when that fails."""
    from thingport.bus.base import SinkError, shown_error

    try:
        await sink.check()
    except SinkError as exc:
        raise SinkUnreachable(
            f"the {sink.kind} sink could not be used: {shown_error(exc)} (to create the {what} anyway, "
            "for a sink that is not up yet: --no-check, or check=false in the API)"
        ) from None


def _check_validation(validation: str) -> None:
    if validation not in VALIDATION_MODES:
        raise ParamError(f"validation must be one of {', '.join(VALIDATION_MODES)}")
