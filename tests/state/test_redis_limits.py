"""Rate limits shared through the real Redis: two separately connected instances share one allowance, and
a Redis that fails, stalls or is missing degrades them to local buckets until it answers again."""

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from tests.bus.services import run
from tests.bus.tcp_proxy import TcpProxy
from tests.state.redis_support import URL, require_redis, unique, unique_id
from tests.support import wait_until_async
from thingport.core.errors import InstanceThrottled, Throttled
from thingport.core.model import Device
from thingport.core.throttle import Rate
from thingport.settings import Settings
from thingport.state.limits import LocalLimits
from thingport.state.redis_limits import RedisLimits
from thingport.state.redis_link import RedisLink

LINK_LOG = "thingport.state.redis_link"


@pytest.fixture(autouse=True)
def redis_server() -> None:
    require_redis()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 6379) as p:
        yield p


@asynccontextmanager
async def instance(settings: Settings, url: str = URL, probe_every_s: float = 1.0) -> AsyncIterator[RedisLimits]:
    """One gateway's limits, on a connection of its own."""
    link = RedisLink(url, probe_every_s=probe_every_s)
    await link.start()
    try:
        yield RedisLimits(link, LocalLimits(settings))
    finally:
        await link.stop()


def device(product_key: str) -> Device:
    i = unique_id()
    return Device(i, product_key, f"dev-{i}", True, 0, 0, "s", device_id=f"{product_key}_dev-{i}")


async def report(limits: RedisLimits, d: Device, rate: Rate | None = None) -> str:
    try:
        await limits.check_report(d, rate)
    except InstanceThrottled:
        return "product"
    except Throttled:
        return "device"
    return "ok"


async def auth(limits: RedisLimits, device_key: str, source: str) -> str:
    try:
        await limits.check_auth(device_key, source)
    except InstanceThrottled:
        return "source"
    except Throttled:
        return "device"
    return "ok"


def test_a_devices_reports_are_limited_across_instances() -> None:
    settings = Settings(device_report_rate=0.01, device_report_burst=3)
    pk = unique("pk")
    d, other = device(pk), device(pk)

    async def main() -> None:
        async with instance(settings) as a, instance(settings) as b:
            got = [await report(x, d) for x in (a, b, a, b, a)]
            assert got == ["ok", "ok", "ok", "device", "device"]  # not 3 per instance
            assert await report(b, other) == "ok"
            assert a._link.up and b._link.up  # shared all along, not degraded

    run(main())


def test_product_buckets_are_shared_and_a_refusal_spends_no_other_bucket() -> None:
    settings = Settings(device_report_rate=0.01, device_report_burst=5, product_report_rate=0.01,
                        product_report_burst=3)
    pk = unique("pk")
    devices = [device(pk) for _ in range(3)]

    async def main() -> None:
        async with instance(settings) as a, instance(settings) as b:
            got = [await report(x, d) for x, d in zip((a, b, a, b), (*devices, devices[0]), strict=True)]
            assert got == ["ok", "ok", "ok", "product"]
            assert await report(b, device(unique("pk"))) == "ok"  # another product
            async with Redis.from_url(URL) as r:
                tokens = float(await r.hget(f"thingport:rl:{{{pk}}}:d:{devices[0].id}", "t"))
            assert 4.0 <= tokens < 4.01  # one report taken, not two: the product refused the second

    run(main())


def test_a_products_own_device_rate_is_shared() -> None:
    settings = Settings(device_report_rate=100, device_report_burst=200)
    d = device(unique("pk"))

    async def main() -> None:
        async with instance(settings) as a, instance(settings) as b:
            slow = Rate(0.01, 2)
            assert [await report(x, d, slow) for x in (a, b, a)] == ["ok", "ok", "device"]

    run(main())


def test_a_bucket_expires_once_it_would_be_full_again() -> None:
    settings = Settings(device_report_rate=10, device_report_burst=2)
    pk = unique("pk")
    d = device(pk)
    key = f"thingport:rl:{{{pk}}}:d:{d.id}"

    async def main() -> None:
        async with instance(settings) as a, Redis.from_url(URL) as r:
            assert await report(a, d) == "ok"
            assert 0 < await r.pttl(key) <= 100  # one token at 10/s
            assert await report(a, d) == "ok"
            assert 100 < await r.pttl(key) <= 200
            await wait_until_async(lambda: r.exists(key), "the full bucket's key expired", 1.0,
                                   accept=lambda found: not found)
            assert [await report(a, d) for _ in range(3)] == ["ok", "ok", "device"]  # it came back full

    run(main())


def test_auth_attempts_across_instances_and_no_lockout_by_strangers() -> None:
    settings = Settings(device_auth_rate=0.01, device_auth_burst=3, source_auth_rate=0.01, source_auth_burst=5)
    target = f"aliyun:{unique('pk')}/dev-1"
    stranger, owner = unique("203.0.113"), unique("192.0.2")

    async def main() -> None:
        async with instance(settings) as a, instance(settings) as b:
            got = [await auth(x, target, stranger) for x in (a, b, a, b)]
            assert got == ["ok", "ok", "ok", "device"]  # one device, one address: 3 across instances
            assert await auth(b, target, owner) == "ok"  # the device itself is not locked out
            assert [await auth(a, f"aliyun:pk/guess-{i}", stranger) for i in range(3)] == ["ok", "ok", "source"]

    run(main())


def test_cut_redis_degrades_to_local_buckets_at_once_then_recovers(
    proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(device_report_rate=0.01, device_report_burst=2)
    pk = unique("pk")
    caplog.set_level(logging.INFO, LINK_LOG)

    async def main() -> None:
        async with instance(settings, f"redis://127.0.0.1:{proxy.port}/0") as a, instance(settings) as b:
            d = device(pk)
            assert [await report(a, d), await report(b, d), await report(a, d)] == ["ok", "ok", "device"]
            proxy.cut()
            started = time.monotonic()
            d = device(pk)
            got = [await report(a, d) for _ in range(4)]
            assert time.monotonic() - started < 0.5  # at once: the failed call, then no Redis at all
            assert got == ["ok", "ok", "device", "device"]  # this instance's own buckets
            assert a._link.readiness() == "degraded" and b._link.readiness() == "ok"
            assert await report(b, d) == "ok"  # b shares nothing with a's local buckets meanwhile
            warnings = [r for r in caplog.records if r.name == LINK_LOG and r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()  # once, not per request

            proxy.restore()
            await wait_until_async(lambda: a._link.readiness(), "the link up again", 5, 0.05,
                                   accept=lambda state: state == "ok")
            assert any("answers again" in r.getMessage() for r in caplog.records if r.name == LINK_LOG)
            d = device(pk)
            assert [await report(x, d) for x in (a, b, a)] == ["ok", "ok", "device"]  # shared again

    run(main())


def test_stalled_redis_times_out_quickly_and_degrades(proxy: TcpProxy) -> None:
    settings = Settings(device_report_rate=0.01, device_report_burst=2)

    async def main() -> None:
        async with instance(settings, f"redis://127.0.0.1:{proxy.port}/0") as a:
            d = device(unique("pk"))
            assert await report(a, d) == "ok"
            proxy.stall()
            started = time.monotonic()
            assert await report(a, d) == "ok"  # the local bucket is full: this instance never saw d
            assert 0.15 < time.monotonic() - started < 0.6  # the link's 0.2 s timeout, no retries
            assert a._link.readiness() == "degraded"

    run(main())


def test_redis_down_at_start_makes_a_degraded_instance_not_a_failed_one(proxy: TcpProxy) -> None:
    settings = Settings(device_report_rate=0.01, device_report_burst=1)
    proxy.cut()

    async def main() -> None:
        async with instance(settings, f"redis://127.0.0.1:{proxy.port}/0", probe_every_s=0.1) as a:
            assert a._link.readiness() == "degraded"
            d = device(unique("pk"))
            assert [await report(a, d), await report(a, d)] == ["ok", "device"]
            proxy.restore()
            await wait_until_async(lambda: a._link.readiness(), "the link up once Redis answers", 3, 0.05,
                                   accept=lambda state: state == "ok")

    run(main())
