"""Where the state that instances must agree on lives: in this process (the embedded default), or in
Redis when ``redis_url`` is set (rate limits and presence, shared by every instance)."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from thingport.core.ports import Arbiter, Limits
from thingport.settings import Settings
from thingport.state.limits import LocalLimits

if TYPE_CHECKING:
    from thingport.state.redis_link import RedisLink


@dataclass
class SharedState:
    limits: Limits
    arbiter: Arbiter | None = None  # None: presence is this process's alone
    link: "RedisLink | None" = None

    def readiness(self) -> dict[str, str]:
        """The "redis" check, when there is one: "ok" or "degraded" (still serves; why is in the log)."""
        return {} if self.link is None else {"redis": self.link.readiness()}

    async def start(self) -> None:
        if self.link is not None:
            await self.link.start()

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()


def open_shared_state(settings: Settings, clock: Callable[[], float] = time.time) -> SharedState:
    local = LocalLimits(settings, clock)
    if settings.redis_url is None:
        return SharedState(local)
    from thingport.state.redis_limits import RedisLimits  # redis.asyncio takes ~0.1 s to import: only when used
    from thingport.state.redis_link import RedisLink
    from thingport.state.redis_presence import RedisPresence

    link = RedisLink(settings.redis_url)
    return SharedState(RedisLimits(link, local), RedisPresence(link), link)
