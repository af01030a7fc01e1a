"""Online/offline: a device is online from its auth or report until it has been silent for its product's
timeout. Transitions become ``status`` messages in the durable log, so they reach the sinks in order with
the device's other messages.

The tracker is in memory and checked on the hot path with one dict lookup; a sweeper turns silence into
offline. After a restart it resumes from the devices the registry saw recently.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec

from thingport.core.model import Device

log = logging.getLogger(__name__)

PRESENCE_TOPIC = "$presence"
DIALECT = "thingport"


def status_payload(status: str, at_ms: int, reason: str) -> bytes:
    return msgspec.json.encode({"status": status, "time": at_ms, "reason": reason})


class PresenceTracker:
    def __init__(self, emit: Callable[[Device, str, int, str], Awaitable[None]]) -> None:
        """``emit(device, "online"|"offline", at_ms, reason)`` stores a status message."""
        self._emit = emit
        self._seen: dict[int, list] = {}  # device id -> [device, last_seen_ms, timeout_ms]
        self._task: asyncio.Task[None] | None = None

    def touch(self, device_id: int, at_ms: int) -> bool:
        """Record activity of a device known to be online (the hot path: one dict lookup); False when it
        is not online, and ``seen`` must be called with its timeout."""
        entry = self._seen.get(device_id)
        if entry is None:
            return False
        entry[1] = at_ms
        return True

    def seen(self, device: Device, at_ms: int, timeout_ms: int) -> bool:
        """Record activity; True when the device was offline until now (the caller emits "online")."""
        entry = self._seen.get(device.id)
        if entry is not None:
            entry[0], entry[1], entry[2] = device, at_ms, timeout_ms
            return False
        self._seen[device.id] = [device, at_ms, timeout_ms]
        return True

    def resume(self, device: Device, last_seen_ms: int, timeout_ms: int) -> None:
        """A device that was online before a restart: it goes offline when its silence runs out."""
        self._seen.setdefault(device.id, [device, last_seen_ms, timeout_ms])

    def forget(self, device_id: int) -> None:
        self._seen.pop(device_id, None)

    def online(self, device_id: int) -> bool:
        return device_id in self._seen

    async def sweep(self, now_ms: int) -> int:
        """Emit "offline" for every device silent past its timeout; returns how many."""
        expired = [(d, seen) for d, seen, timeout in self._seen.values() if now_ms - seen >= timeout]
        for device, last_seen in expired:
            self._seen.pop(device.id, None)
            try:
                await self._emit(device, "offline", now_ms, f"silent since {last_seen}")
            except Exception:  # not stored: it stays offline here, and is retried on its next activity
                log.exception("could not store the offline status of %s/%s", device.product_key, device.device_name)
        return len(expired)

    async def start(self, clock_ms: Callable[[], int], every_s: float = 1.0) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                await self.sweep(clock_ms())

        self._task = asyncio.create_task(loop(), name="presence-sweeper")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
