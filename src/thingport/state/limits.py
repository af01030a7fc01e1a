"""Rate limits on reports and authentication attempts, behind one small async interface.

``LocalLimits`` keeps every bucket in this process (the embedded default); ``state/redis_limits.py``
shares the device, product and auth buckets across instances. Both refuse with the core's errors:
``Throttled`` for a device's own limit, ``InstanceThrottled`` for a limit the device shares with others.

Authentication is limited per source address (every attempt, whatever device it names: against brute
force over many devices) and per device *and* source address (every attempt, before the signature check:
against brute force on one device). A device's bucket is keyed by its address too, so a stranger who
knows a device's identity spends only their own allowance and cannot lock the device out. A device has one
bucket whichever dialect it speaks (the ingest use case names it by ``productKey/deviceName`` in both).
"""

import time
from collections.abc import Callable

from thingport.core.errors import InstanceThrottled, Throttled
from thingport.core.model import Device
from thingport.core.throttle import BucketMap, Rate, TokenBucket
from thingport.settings import Settings


class LocalLimits:
    """Every bucket in this process: N instances allow N times the limits."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.device_rate = Rate(settings.device_report_rate, settings.device_report_burst)
        self.product_rate = (
            Rate(settings.product_report_rate, settings.product_report_burst)
            if settings.product_report_rate is not None
            else None
        )
        self.source_auth_rate = Rate(settings.source_auth_rate, settings.source_auth_burst)
        self.device_auth_rate = Rate(settings.device_auth_rate, settings.device_auth_burst)
        self._reports = BucketMap(self.device_rate)
        self._products = BucketMap(self.product_rate) if self.product_rate is not None else None
        self._sources = BucketMap(self.source_auth_rate)
        self._device_auths = BucketMap(self.device_auth_rate)
        self._instance = (
            TokenBucket(Rate(settings.instance_report_rate, settings.instance_report_burst), clock())
            if settings.instance_report_rate is not None
            else None
        )

    def report(self, device: Device, rate: Rate | None) -> None:
        now = self._clock()
        if not self._reports.take(device.id, now, rate or self.device_rate):
            raise Throttled("device report rate limit reached")
        if self._products is not None and not self._products.take(device.product_key, now):
            raise InstanceThrottled("product report rate limit reached")
        self.instance()

    def instance(self) -> None:
        """The instance's own bucket: local in every mode (it protects this process)."""
        if self._instance is not None and not self._instance.take(self._clock()):
            raise InstanceThrottled("instance report rate limit reached")

    def auth(self, device_key: str, source: str) -> None:
        now = self._clock()
        if not self._sources.take(source, now):
            raise InstanceThrottled("too many authentication attempts from this address")
        self.device_auth(device_key, source, now)

    def device_auth(self, device_key: str, source: str, now: float | None = None) -> None:
        if not self._device_auths.take((device_key, source), self._clock() if now is None else now):
            raise Throttled("too many authentication attempts for this device")

    async def check_report(self, device: Device, rate: Rate | None) -> None:
        self.report(device, rate)

    async def check_auth(self, device_key: str, source: str) -> None:
        self.auth(device_key, source)

    async def check_device_auth(self, device_key: str, source: str) -> None:
        self.device_auth(device_key, source)
