"""Rate limits in one process (the embedded default): per-product device rates, and auth attempts that a
stranger cannot use to lock a device out."""

import asyncio

from tests.support import FakeClock
from thingport.core.errors import InstanceThrottled, Throttled
from thingport.core.model import Device
from thingport.core.throttle import Rate
from thingport.settings import Settings
from thingport.state.limits import LocalLimits


def device(i: int, product_key: str = "pk") -> Device:
    return Device(i, product_key, f"dev-{i}", True, 0, 0, "s", device_id=f"{product_key}_dev-{i}")


def reports(limits: LocalLimits, d: Device, count: int, rate: Rate | None = None) -> list[str]:
    out = []
    for _ in range(count):
        try:
            asyncio.run(limits.check_report(d, rate))
            out.append("ok")
        except InstanceThrottled:
            out.append("instance")
        except Throttled:
            out.append("device")
    return out


def test_device_product_and_instance_buckets_answer_with_their_errors() -> None:
    clock = FakeClock(1000.0)
    limits = LocalLimits(Settings(device_report_rate=1, device_report_burst=2, product_report_rate=1,
                                  product_report_burst=3, instance_report_rate=1, instance_report_burst=4), clock)
    assert reports(limits, device(1), 3) == ["ok", "ok", "device"]
    assert reports(limits, device(2), 2) == ["ok", "instance"]  # the product's third and fourth
    assert reports(limits, device(3, "other"), 2) == ["ok", "instance"]  # the instance's fourth, then none
    clock.advance(1)
    assert reports(limits, device(1), 2) == ["ok", "device"]


def test_a_products_own_device_rate_replaces_the_servers() -> None:
    clock = FakeClock(1000.0)
    limits = LocalLimits(Settings(device_report_rate=100, device_report_burst=200), clock)
    slow = Rate(0.5, 2)
    assert reports(limits, device(1), 3, slow) == ["ok", "ok", "device"]
    clock.advance(2)  # 0.5/s: one more
    assert reports(limits, device(1), 2, slow) == ["ok", "device"]
    assert reports(limits, device(2), 50) == ["ok"] * 50  # the server's rate for the others


def auth(limits: LocalLimits, device_key: str, source: str) -> str:
    try:
        asyncio.run(limits.check_auth(device_key, source))
    except InstanceThrottled:
        return "source"
    except Throttled:
        return "device"
    return "ok"


def test_a_stranger_spends_only_their_own_attempts_on_a_device() -> None:
    attacker = "203.0.113.9"
    limits = LocalLimits(Settings(device_auth_rate=0.01, device_auth_burst=3, source_auth_rate=0.01,
                                  source_auth_burst=100), FakeClock(1000.0))
    assert [auth(limits, "aliyun:pk/dev-1", attacker) for _ in range(4)] == ["ok", "ok", "ok", "device"]
    assert auth(limits, "aliyun:pk/dev-1", "192.0.2.1") == "ok"  # the device itself, from its own address
    assert auth(limits, "aliyun:pk/dev-2", attacker) == "ok"  # another device: the address's own bucket


def test_one_address_is_limited_across_device_names() -> None:
    limits = LocalLimits(Settings(source_auth_rate=0.01, source_auth_burst=3), FakeClock(1000.0))
    assert [auth(limits, f"aliyun:pk/guess-{i}", "203.0.113.9") for i in range(4)] == ["ok", "ok", "ok", "source"]
    assert auth(limits, "aliyun:pk/guess-9", "192.0.2.1") == "ok"
