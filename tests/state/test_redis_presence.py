"""Presence with two instances arbitrated through the real Redis: each transition is said once, whichever
instances the device talks to."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from tests.bus.services import run
from tests.bus.tcp_proxy import TcpProxy
from tests.state.redis_support import URL, require_redis, unique_id
from thingport.core.model import Device
from thingport.state.presence import PresenceTracker
from thingport.state.redis_link import RedisLink
from thingport.state.redis_presence import RedisPresence

TIMEOUT_MS = 5000


@pytest.fixture(autouse=True)
def redis_server() -> None:
    require_redis()


class Registry:
    """The registry's last-seen column, as the log writers of every instance keep it."""

    def __init__(self) -> None:
        self.last_seen: dict[int, int] = {}

    async def recently_seen(self, since_ms: int, device_ids: list[int]) -> list[tuple[int, int]]:
        return [(d, at) for d, at in self.last_seen.items() if at >= since_ms and d in device_ids]


class Instance:
    def __init__(self, tracker: PresenceTracker, said: list[tuple[str, str]], name: str, registry: Registry) -> None:
        self.tracker, self.said, self.name, self.registry = tracker, said, name, registry

    async def report(self, d: Device, at_ms: int) -> None:
        """What the gateway does for a report: touch, or seen + claim; the log writer marks it seen."""
        if not self.tracker.touch(d.id, at_ms):
            if self.tracker.seen(d, at_ms, TIMEOUT_MS) and await self.tracker.claim(d, TIMEOUT_MS):
                self.said.append((self.name, "online"))
        self.registry.last_seen[d.id] = max(self.registry.last_seen.get(d.id, 0), at_ms)


@asynccontextmanager
async def instance(name: str, said: list, registry: Registry, url: str = URL) -> AsyncIterator[Instance]:
    link = RedisLink(url)
    await link.start()

    async def emit(d: Device, status: str, at_ms: int, reason: str) -> None:
        said.append((name, status))

    try:
        yield Instance(PresenceTracker(emit, RedisPresence(link), registry.recently_seen), said, name, registry)
    finally:
        await link.stop()


def device() -> Device:
    i = unique_id()
    return Device(i, "pk", f"dev-{i}", True, 0, 0, "s", device_id=f"pk_dev-{i}")


def key(d: Device) -> str:
    return f"thingport:presence:{{{d.product_key}}}:{d.id}"


def test_a_device_on_two_instances_goes_online_and_offline_once() -> None:
    d = device()

    async def main() -> None:
        said: list[tuple[str, str]] = []
        registry = Registry()
        async with instance("a", said, registry) as a, instance("b", said, registry) as b:
            await a.report(d, 1000)
            await b.report(d, 1500)
            assert said == [("a", "online")]
            for t in range(2000, 8000, 500):  # from now on it talks to b only
                await b.report(d, t)
            assert await a.tracker.sweep(7000) == 0  # silent on a, not in the registry
            assert await b.tracker.sweep(7000) == 0
            assert said == [("a", "online")] and a.tracker.online(d.id)
            # silent everywhere since 7500: both sweep past its timeout, one says it
            assert await a.tracker.sweep(12_600) + await b.tracker.sweep(12_600) == 1
            assert [s for _, s in said] == ["online", "offline"]
            assert not a.tracker.online(d.id) and not b.tracker.online(d.id)
            await b.report(d, 13_000)  # back: online again, once
            await a.report(d, 13_100)
            assert said[2:] == [("b", "online")]

    run(main())


def test_the_claim_is_refreshed_while_online_here_and_recreated_if_lost() -> None:
    d = device()

    async def main() -> None:
        said: list[tuple[str, str]] = []
        registry = Registry()
        async with instance("a", said, registry) as a, instance("b", said, registry) as b, Redis.from_url(URL) as r:
            await a.report(d, 1000)
            assert 9000 < await r.pttl(key(d)) <= 2 * TIMEOUT_MS
            await r.pexpire(key(d), 50)  # as if time had passed
            await a.report(d, 3400)
            await a.tracker.sweep(3400)  # not due yet: refreshed every half timeout
            assert await r.pttl(key(d)) <= 50
            await a.tracker.sweep(3500)
            assert 9000 < await r.pttl(key(d)) <= 2 * TIMEOUT_MS
            await r.delete(key(d))  # lost (a Redis restart without persistence)
            await a.tracker.sweep(6000)
            assert await r.exists(key(d))
            await b.report(d, 6100)
            assert said == [("a", "online")]  # b did not say it again

    run(main())


def test_an_online_that_was_not_stored_is_said_again() -> None:
    d = device()

    async def main() -> None:
        said: list[tuple[str, str]] = []
        registry = Registry()
        async with instance("a", said, registry) as a, instance("b", said, registry) as b:
            await a.report(d, 1000)
            await a.tracker.unclaim(d)  # the gateway: appending the "online" failed
            await b.report(d, 1100)
            assert said == [("a", "online"), ("b", "online")]

    run(main())


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 6379) as p:
        yield p


def test_without_redis_each_instance_decides_for_itself(proxy: TcpProxy) -> None:
    d = device()

    async def main() -> None:
        said: list[tuple[str, str]] = []
        registry = Registry()
        async with instance("a", said, registry, f"redis://127.0.0.1:{proxy.port}/0") as a:
            proxy.cut()
            await a.report(d, 1000)
            assert said == [("a", "online")]  # said, not lost
            assert await a.tracker.sweep(7000) == 1
            assert said[-1] == ("a", "offline")

    run(main())
