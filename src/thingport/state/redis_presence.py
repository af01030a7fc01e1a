"""Which instance says a device went online or offline, when several see it: the one that wins its key.

A device's key exists while the log says it is online. The instance that creates it (SET NX) emits
"online"; the one whose DEL removes it emits "offline". Instances refresh the keys of the devices they see,
so a key outlives its device's local silence on any one instance but not the silence everywhere.

While Redis is unreachable every instance decides for itself (as without Redis): an "online" or
"offline" may then be said twice. The refresh recreates the keys once Redis answers; a key that outlived
an "offline" said during the outage can hide the device's next "online" (until its next silence).
"""

from thingport.core.model import Device
from thingport.state.redis_limits import PREFIX
from thingport.state.redis_link import FAILURES, RedisLink

_CHUNK = 1000  # commands per pipeline: one round trip each, well within the link's short timeout


def _key(device: Device) -> str:
    """By product key too: a device's id is only a row number, the same in every new database."""
    return f"{PREFIX}presence:{{{device.product_key}}}:{device.id}"


class RedisPresence:
    def __init__(self, link: RedisLink) -> None:
        self._link = link

    async def claim(self, device: Device, ttl_ms: int) -> bool:
        """True when this instance emits the device's "online" (it created the key, or Redis is down)."""
        if not self._link.up:
            return True
        try:
            return bool(await self._link.client.set(_key(device), b"1", nx=True, px=ttl_ms))
        except FAILURES as exc:
            self._link.failed(exc)
            return True

    async def release(self, device: Device) -> bool:
        """True when this instance emits the device's "offline" (it deleted the key, or Redis is down)."""
        if not self._link.up:
            return True
        try:
            return await self._link.client.delete(_key(device)) == 1
        except FAILURES as exc:
            self._link.failed(exc)
            return True

    async def refresh(self, ttls: list[tuple[Device, int]]) -> bool:
        """(Re)set the keys of devices online here, with their TTLs in ms, in one round trip; False when
        Redis is down (the caller tries again later)."""
        if not self._link.up:
            return False
        try:
            for start in range(0, len(ttls), _CHUNK):
                pipe = self._link.client.pipeline(transaction=False)
                for device, ttl_ms in ttls[start : start + _CHUNK]:
                    pipe.set(_key(device), b"1", px=ttl_ms)
                await pipe.execute()
        except FAILURES as exc:
            self._link.failed(exc)
            return False
        return True
