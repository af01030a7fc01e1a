"""The devices the gateway has seen, in memory, kept current by the registry's change feed.

Token checks read only this cache: the hot path makes no database round trip. A device is loaded on
first use; a poller reloads (or drops) every device the change feed names, so a disable, delete or
secret reset made by any process reaches this one within one poll interval.
"""

import asyncio
import logging

from thingport.core.model import Device
from thingport.core.ports import DeviceDirectory

log = logging.getLogger(__name__)


class DeviceCache:
    def __init__(self, directory: DeviceDirectory, max_devices: int = 1_000_000) -> None:
        self._directory = directory
        self._by_id: dict[int, Device] = {}
        self._max = max_devices
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None

    def get(self, device_id: int) -> Device | None:
        """The cached device, without I/O (None: not cached, see ``load``)."""
        return self._by_id.get(device_id)

    async def load(self, device_id: int) -> Device | None:
        device = await self._directory.device_by_id(device_id)
        self._put(device_id, device)
        return device

    def remember(self, device: Device) -> None:
        """Cache a device read elsewhere (e.g. by authentication)."""
        self._put(device.id, device)

    def _put(self, device_id: int, device: Device | None) -> None:
        if device is None:
            self._by_id.pop(device_id, None)
            return
        if device_id not in self._by_id and len(self._by_id) >= self._max:
            del self._by_id[next(iter(self._by_id))]
        self._by_id[device_id] = device

    async def start(self, cursor: int, interval_s: float) -> None:
        """Follow the change feed from ``cursor`` (the feed's position when the cache was empty)."""
        self._cursor = cursor
        self._task = asyncio.create_task(self._follow(interval_s), name="device-cache-follow")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def refresh(self) -> None:
        """Apply every change recorded since the last refresh."""
        self._cursor, changed = await self._directory.changes_since(self._cursor)
        for device_id in changed:
            if device_id in self._by_id:
                self._put(device_id, await self._directory.device_by_id(device_id))

    async def _follow(self, interval_s: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a failed poll is retried; the cache keeps serving
                log.exception("registry change poll failed")
            await asyncio.sleep(interval_s)
