"""One Redis client for the state instances share, and whether it is usable right now.

Calls have short timeouts and no retries: a failed or slow call marks the link down at once, and the
callers then use this process's state without trying Redis (the instance keeps serving, degraded). A probe
pings every second, so an outage shows in readiness even without traffic, and brings the link back up when
Redis answers. Each change is logged once, not per request.
"""

import asyncio
import logging

from thingport.extras import missing_extra

try:
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # an optional backend
    raise missing_extra("redis", exc) from None

from thingport.runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# what a call to an unreachable, stalled or restarting Redis raises
FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def _describe(exc: BaseException) -> str:
    """The error without the URL (which may hold a password): redis-py names only host and port."""
    return (str(exc) or type(exc).__name__)[:200]


class RedisLink:
    def __init__(self, url: str, timeout_s: float = 0.2, probe_every_s: float = 1.0) -> None:
        self.client: Redis = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        self.up = True
        self._reason = ""
        self._timeout_s = timeout_s
        self._probe_every_s = probe_every_s
        self._task: asyncio.Task[None] | None = None

    def failed(self, exc: BaseException) -> None:
        """A call failed: use local state until the probe gets an answer."""
        if self.up:
            self.up = False
            self._reason = _describe(exc)
            log.warning(
                "Redis is unavailable (%s): rate limits and presence are per instance until it answers", self._reason
            )

    def readiness(self) -> str:
        """"ok", or "degraded": a degraded instance still serves (it is ready, not healthy). Why is in the
        log only: /readyz is unauthenticated, and the reason names Redis's host and port."""
        return "ok" if self.up else "degraded"

    async def probe(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s * 2):  # covers connecting and the handshake too
                await self.client.ping()
        except FAILURES as exc:
            self.failed(exc)
            return False
        if not self.up:
            self.up = True
            log.info("Redis answers again: rate limits and presence are shared again")
        return True

    async def start(self) -> None:
        """Probe once (a Redis that is down at start makes a degraded instance, not a failed start)."""
        await self.probe()

        async def loop() -> None:
            while True:
                await asyncio.sleep(self._probe_every_s)
                await self.probe()

        self._task = asyncio.create_task(loop(), name="redis-probe")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self.client.aclose()
