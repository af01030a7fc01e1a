"""The devices and product models the device side (ingest/) uses, in memory, kept current by the registry's change feed.

Token checks and validation read only this cache: the hot path makes no database round trip. A device
or product is loaded on first use; a poller reloads (or drops) everything the change feed names, so a
disable, delete, secret reset or new thing model made by any process reaches this one within one poll
interval. A product's model is compiled once per version and shared by all its devices.
"""

import asyncio
import logging
from collections.abc import Sequence

from thingport.core.model import Device
from thingport.core.ports import RegistryReader
from thingport.core.product_runtime import ProductRuntime
from thingport.core.thingmodel import ThingModel
from thingport.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_SCHEMALESS = ThingModel.schemaless()


class RegistryCache:
    def __init__(self, registry: RegistryReader, max_devices: int = 1_000_000) -> None:
        self._registry = registry
        self._by_id: dict[int, Device] = {}
        self._by_device_id: dict[str, int] = {}  # IoTDA device_id -> id
        self._runtimes: dict[str, ProductRuntime] = {}
        self._compiled: dict[tuple[str, str], ThingModel] = {}
        self._max = max_devices
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None

    # --- devices ---

    def get(self, device_id: int) -> Device | None:
        """The cached device, without I/O (None: not cached, see ``load``)."""
        return self._by_id.get(device_id)

    async def load(self, device_id: int) -> Device | None:
        device = await self._registry.device_by_id(device_id)
        self._put(device_id, device)
        return device

    async def load_many(self, device_ids: Sequence[int]) -> list[Device]:
        """``load`` of many devices in few round trips; those that do not exist are left out."""
        devices = await self._registry.devices_by_ids(device_ids)
        for device in devices:
            self._put(device.id, device)
        return devices

    def known_by_device_id(self, device_id: str) -> Device | None:
        """A device by its IoTDA ``device_id`` if it is in memory, without I/O."""
        internal = self._by_device_id.get(device_id)
        return None if internal is None else self._by_id.get(internal)

    async def by_device_id(self, device_id: str) -> Device | None:
        """A device by its IoTDA ``device_id``: from memory when seen before, else loaded."""
        internal = self._by_device_id.get(device_id)
        if internal is not None:
            device = self._by_id.get(internal)
            if device is not None:
                return device
        device = await self._registry.device_by_device_id(device_id)
        if device is not None:
            self._put(device.id, device)
        return device

    def remember(self, device: Device) -> None:
        """Cache a device read or changed elsewhere (e.g. by authentication)."""
        self._put(device.id, device)

    def _put(self, device_id: int, device: Device | None) -> None:
        old = self._by_id.pop(device_id, None)
        if old is not None:
            self._by_device_id.pop(old.device_id, None)
        if device is None:
            return
        if len(self._by_id) >= self._max:
            evicted = self._by_id.pop(next(iter(self._by_id)))
            self._by_device_id.pop(evicted.device_id, None)
        self._by_id[device_id] = device
        self._by_device_id[device.device_id] = device_id

    # --- products ---

    async def product(self, product_key: str) -> ProductRuntime | None:
        runtime = self._runtimes.get(product_key)
        if runtime is None:
            runtime = await self._load_product(product_key)
        return runtime

    async def _load_product(self, product_key: str) -> ProductRuntime | None:
        product = await self._registry.get_product(product_key)
        if product is None:
            self._runtimes.pop(product_key, None)
            return None
        model = _SCHEMALESS
        if product.model_version is not None:
            key = (product_key, product.model_version)
            compiled = self._compiled.get(key)
            if compiled is None:
                document = await self._registry.thing_model(product_key, product.model_version)
                compiled = ThingModel.from_document(document) if document else _SCHEMALESS
                self._compiled[key] = compiled
            model = compiled
        runtime = self._runtimes[product_key] = ProductRuntime(product, model, dict(product.topics))
        return runtime

    # --- following the change feed ---

    async def start(self, cursor: int, interval_s: float) -> None:
        """Follow the change feed from ``cursor`` (the feed's position when the cache was empty)."""
        self._cursor = cursor
        self._task = asyncio.create_task(self._follow(interval_s), name="registry-cache-follow")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def refresh(self) -> None:
        """Apply every change recorded since the last refresh."""
        self._cursor, devices, products = await self._registry.changes_since(self._cursor)
        for device_id in devices:
            if device_id in self._by_id:
                self._put(device_id, await self._registry.device_by_id(device_id))
        for product_key in products:
            if product_key in self._runtimes:
                gone = await self._load_product(product_key) is None
            else:
                gone = await self._registry.get_product(product_key) is None
            if gone:  # deleted with its devices (one change entry for them all): none may stay in memory
                for device in [d for d in self._by_id.values() if d.product_key == product_key]:
                    self._put(device.id, None)

    async def _follow(self, interval_s: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a failed poll is retried; the cache keeps serving
                log.exception("registry change poll failed")
            await asyncio.sleep(interval_s)
