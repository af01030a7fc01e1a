"""Online/offline: a device is online from its auth or report until it has been silent for its product's
timeout. Transitions become ``status`` messages in the durable log, so they reach the sinks in order with
the device's other messages.

The tracker is in memory and checked on the hot path with one dict lookup; a sweeper turns silence into
offline. After a restart it resumes from the devices the registry saw recently.

With several instances (an ``Arbiter``, e.g. ``state/redis_presence.py``) each transition is said once: a
device new here is "online" only if this instance wins its claim, and a device silent here is "offline"
only if the registry (written by every instance) saw it silent too and this instance wins its release.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from thingport.core.model import Device
from thingport.core.ports import Arbiter
from thingport.tasks import cancel_and_wait

log = logging.getLogger(__name__)

PRESENCE_TOPIC = "$presence"
DIALECT = "thingport"


def status_payload(status: str, at_ms: int, reason: str) -> bytes:
    return msgspec.json.encode({"status": status, "time": at_ms, "reason": reason})


class _Seen(msgspec.Struct, gc=False):
    """A device online here. Untracked by Python's cyclic garbage collector (it cannot be part of a cycle):
    at 100,000 devices online, tracked entries made every full collection longer."""

    device: Device
    last_seen_ms: int
    timeout_ms: int
    refreshed_ms: int  # when this instance last refreshed the device's arbiter key


class PresenceTracker:
    def __init__(
        self,
        emit: Callable[[Device, str, int, str], Awaitable[None]],
        arbiter: Arbiter | None = None,
        recently_seen: Callable[[int, list[int]], Awaitable[list[tuple[int, int]]]] | None = None,
    ) -> None:
        """``emit(device, "online"|"offline", at_ms, reason)`` stores a status message; with an ``arbiter``,
        ``recently_seen(since_ms, ids)`` is the registry's (device id, last seen) of those devices seen since."""
        if arbiter is not None and recently_seen is None:
            raise ValueError("an arbiter needs the registry's recently_seen")
        self._emit = emit
        self._arbiter = arbiter
        self._recently_seen = recently_seen
        self._registry_failing = False
        self._seen: dict[int, _Seen] = {}  # by device id
        self._task: asyncio.Task[None] | None = None

    def touch(self, device_id: int, at_ms: int) -> bool:
        """Record activity of a device known to be online (the hot path: one dict lookup); False when it
        is not online, and ``seen`` must be called with its timeout."""
        entry = self._seen.get(device_id)
        if entry is None:
            return False
        entry.last_seen_ms = at_ms
        return True

    def seen(self, device: Device, at_ms: int, timeout_ms: int) -> bool:
        """Record activity; True when the device was offline until now (the caller emits "online")."""
        entry = self._seen.get(device.id)
        if entry is not None:
            entry.device, entry.last_seen_ms, entry.timeout_ms = device, at_ms, timeout_ms
            return False
        self._seen[device.id] = _Seen(device, at_ms, timeout_ms, at_ms)
        return True

    async def claim(self, device: Device, timeout_ms: int) -> bool:
        """After ``seen`` said True: whether this instance says "online" (always, without an arbiter). The
        claim lives about twice the timeout, and is refreshed while the device is online here."""
        return self._arbiter is None or await self._arbiter.claim(device, 2 * timeout_ms)

    async def unclaim(self, device: Device) -> None:
        """The "online" a won claim announced was not stored: the next activity claims and says it again."""
        self.forget(device.id)
        if self._arbiter is not None:
            await self._arbiter.release(device)

    def resume(self, device: Device, last_seen_ms: int, timeout_ms: int) -> None:
        """A device that was online before a restart: it goes offline when its silence runs out."""
        self._seen.setdefault(device.id, _Seen(device, last_seen_ms, timeout_ms, 0))  # its key: refreshed at once

    def forget(self, device_id: int) -> None:
        self._seen.pop(device_id, None)

    def online(self, device_id: int) -> bool:
        return device_id in self._seen

    async def sweep(self, now_ms: int) -> int:
        """Emit "offline" for every device silent past its timeout; returns how many this instance said."""
        if self._arbiter is not None:
            return await self._arbitrated_sweep(now_ms)
        expired = [(e.device, e.last_seen_ms) for e in self._seen.values() if now_ms - e.last_seen_ms >= e.timeout_ms]
        for device, last_seen in expired:
            self._seen.pop(device.id, None)
            await self._say_offline(device, last_seen, now_ms)
        return len(expired)

    async def _arbitrated_sweep(self, now_ms: int) -> int:
        assert self._arbiter is not None
        said = 0
        for entry in await self._silent_everywhere(now_ms):
            device, last_seen = entry.device, entry.last_seen_ms
            if self._seen.get(device.id) is not entry or now_ms - last_seen < entry.timeout_ms:
                continue  # active again (or forgotten) while the registry was read
            del self._seen[device.id]
            if await self._arbiter.release(device):
                await self._say_offline(device, last_seen, now_ms)
                said += 1
        due = [entry for entry in self._seen.values() if now_ms - entry.refreshed_ms >= entry.timeout_ms // 2]
        if due and await self._arbiter.refresh([(entry.device, 2 * entry.timeout_ms) for entry in due]):
            for entry in due:
                entry.refreshed_ms = now_ms
        return said

    async def _silent_everywhere(self, now_ms: int) -> list[_Seen]:
        """The entries silent here past their timeout that the registry saw silent too. The others were
        active on another instance: they stay online here until that activity's timeout runs out."""
        expired = [entry for entry in self._seen.values() if now_ms - entry.last_seen_ms >= entry.timeout_ms]
        if not expired:
            return []
        assert self._recently_seen is not None
        try:
            seen = dict(await self._recently_seen(
                now_ms - max(entry.timeout_ms for entry in expired), [entry.device.id for entry in expired]
            ))
        except Exception:  # the database is down: nobody goes offline until it answers
            if not self._registry_failing:
                log.exception("could not read when devices were last seen; offline is deferred")
            self._registry_failing = True
            return []
        self._registry_failing = False
        silent = []
        for entry in expired:
            elsewhere = seen.get(entry.device.id)
            if elsewhere is not None and now_ms - elsewhere < entry.timeout_ms:
                entry.last_seen_ms = max(entry.last_seen_ms, elsewhere)
            else:
                silent.append(entry)
        return silent

    async def _say_offline(self, device: Device, last_seen: int, now_ms: int) -> None:
        try:
            await self._emit(device, "offline", now_ms, f"silent since {last_seen}")
        except Exception:  # not stored: it stays offline here, and is retried on its next activity
            log.exception("could not store the offline status of %s/%s", device.product_key, device.device_name)

    async def start(self, clock_ms: Callable[[], int], every_s: float = 1.0) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                await self.sweep(clock_ms())

        self._task = asyncio.create_task(loop(), name="presence-sweeper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
