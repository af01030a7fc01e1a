"""In-memory adapters of the core's ports, for fast unit tests of what sits on them (the ingest use case).

They keep the ports' promises that the code under test relies on and no more; the SQL adapters have their
own tests against real SQLite and PostgreSQL (tests/store/). Every call is counted, so a test can say how
often the use case reached the registry or the log.
"""

import dataclasses
from collections import Counter
from collections.abc import Sequence

import msgspec

from thingport.core.model import AuthSession, Device, Product, StoredMessage
from thingport.core.thingmodel import ThingModel
from thingport.core.tokens import supersede


class InMemoryRegistry:
    """``core.ports.RegistryReader``: products, their model documents and devices in dicts."""

    def __init__(self) -> None:
        self.products: dict[str, Product] = {}
        self.models: dict[tuple[str, str], dict] = {}
        self.devices: dict[int, Device] = {}
        self.seen: dict[int, int] = {}  # device id -> last seen (ms)
        self.calls: Counter[str] = Counter()

    def add_product(self, product: Product, model: dict | None = None) -> Product:
        """``model``: a TSL document (the product then validates against it)."""
        if model is not None:
            compiled = ThingModel.from_tsl(model)
            self.models[(product.product_key, compiled.version)] = compiled.to_document()
            product = dataclasses.replace(product, model_version=compiled.version)
        self.products[product.product_key] = product
        return product

    def add_device(self, device: Device) -> Device:
        self.devices[device.id] = device
        return device

    async def device_by_id(self, device_id: int) -> Device | None:
        self.calls["device_by_id"] += 1
        return self.devices.get(device_id)

    async def device_by_name(self, product_key: str, device_name: str) -> Device | None:
        self.calls["device_by_name"] += 1
        return next((d for d in self.devices.values() if (d.product_key, d.device_name) == (product_key, device_name)),
                    None)

    async def device_by_device_id(self, device_id: str) -> Device | None:
        self.calls["device_by_device_id"] += 1
        return next((d for d in self.devices.values() if d.device_id == device_id), None)

    async def get_product(self, product_key: str) -> Product | None:
        self.calls["get_product"] += 1
        return self.products.get(product_key)

    async def list_products(self) -> list[Product]:
        return list(self.products.values())

    async def devices_by_ids(self, device_ids: Sequence[int]) -> list[Device]:
        self.calls["devices_by_ids"] += 1
        return [self.devices[i] for i in device_ids if i in self.devices]

    async def recently_seen(self, since_ms: int, device_ids: Sequence[int] | None = None) -> list[tuple[int, int]]:
        return [(d, at) for d, at in self.seen.items() if at >= since_ms and (device_ids is None or d in device_ids)]

    async def thing_model(self, product_key: str, version: str) -> dict | None:
        return self.models.get((product_key, version))

    async def changes_since(self, cursor: int) -> tuple[int, list[int], list[str]]:
        return cursor, [], []


class InMemoryLog:
    """``core.ports.MessageLog``: a list in commit order. ``appends`` counts the calls that append (one per
    transaction: ``append`` or ``append_many``). Like the SQL log, a session writes the device's row of the
    ``registry`` it is given (last seen; a superseding session's token times)."""

    def __init__(self, registry: InMemoryRegistry | None = None) -> None:
        self._registry = registry
        self.messages: list[StoredMessage] = []
        self.sessions: list[AuthSession] = []
        self.appends = 0
        self.cursors: dict[int, int] = {}

    async def append(self, message: StoredMessage) -> None:
        await self.append_many((message,))

    async def append_many(self, messages: tuple[StoredMessage, ...]) -> None:
        self.appends += 1
        for message in messages:
            self.messages.append(msgspec.structs.replace(message, seq=len(self.messages) + 1))

    async def record_session(self, session: AuthSession) -> None:
        self.sessions.append(session)
        device = self._registry.devices.get(session.device_id) if self._registry else None
        if self._registry is None or device is None:
            return
        self._registry.seen[device.id] = max(self._registry.seen.get(device.id, 0), session.at_ms)
        if session.supersedes:
            newest, older = supersede(device.token_ms, device.superseded_tokens, session.at_ms)
            replaced = msgspec.structs.replace(device, token_ms=newest, superseded_tokens=older)
            self._registry.devices[device.id] = replaced

    async def newest(self, limit: int, after_seq: int | None = None) -> list[StoredMessage]:
        return [m for m in self.messages if after_seq is None or m.seq > after_seq][-limit:][::-1]

    async def read_after(self, seq: int, limit: int) -> list[StoredMessage]:
        return [m for m in self.messages if m.seq > seq][:limit]

    async def last_seq(self) -> int:
        return len(self.messages)

    async def backlogs(self, cursors: list[int]) -> list[int]:
        return [sum(m.seq > cursor for m in self.messages) for cursor in cursors]

    async def save_cursor(self, subscription_id: int, seq: int) -> None:
        self.cursors[subscription_id] = seq

    async def save_delivered(self, subscription_id: int, seq: int) -> None:
        self.cursors[subscription_id] = seq

    async def delete_before(self, seq: int, received_before_ms: int | None, max_rows: int) -> int:
        return 0

    async def size_bytes(self) -> int:
        return sum(len(m.payload) for m in self.messages)

    async def query(
        self, product_key: str | None = None, device_id: int | None = None, topic: str | None = None,
        from_ms: int | None = None, to_ms: int | None = None, before_seq: int | None = None, limit: int = 100,
    ) -> list[StoredMessage]:
        found = [m for m in reversed(self.messages)
                 if (product_key is None or m.product_key == product_key)
                 and (device_id is None or m.device_id == device_id) and (topic is None or m.topic == topic)
                 and (from_ms is None or m.received_ms >= from_ms) and (to_ms is None or m.received_ms <= to_ms)
                 and (before_seq is None or m.seq < before_seq)]
        return found[:limit]

