"""Rate limits shared by every instance through Redis, so N instances do not allow N times the limits.

One Lua script checks all the buckets of a request in one round trip (EVALSHA), atomically and all or
none: a report's device and product buckets, an attempt's source and device buckets. Redis's clock is the
one clock, so instances with skewed clocks agree. A bucket is a hash that expires once it would be full
again (a missing bucket is a full one). Keys of one request share a hash tag (product key, source
address), so they live on one slot of a Redis Cluster too.

The instance bucket stays local: it protects this process. While Redis is unreachable the limits are this
process's own (``LocalLimits``), without trying Redis until the link's probe gets an answer.
"""

from thingport.core.errors import InstanceThrottled, Throttled
from thingport.core.model import Device
from thingport.core.throttle import Rate
from thingport.state.limits import LocalLimits
from thingport.state.redis_link import FAILURES, RedisLink

PREFIX = "thingport:"

# KEYS: the buckets; ARGV: (rate per second, burst) per bucket. Returns 0 when every bucket had a token
# (each then gives one), else the 1-based index of the first that had none (and no bucket gives one).
_BUCKETS_LUA = """
local time = redis.call('TIME')
local now = time[1] * 1000 + time[2] / 1000
local left = {}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 't', 'a')
  local tokens = burst
  if state[1] then
    tokens = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate / 1000)
  end
  if tokens < 1 then
    return i
  end
  left[i] = tokens - 1
end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', key, 't', left[i], 'a', now)
  redis.call('PEXPIRE', key, math.ceil((burst - left[i]) * 1000 / rate))
end
return 0
"""


class RedisLimits:
    def __init__(self, link: RedisLink, local: LocalLimits) -> None:
        self._link = link
        self._local = local
        self._script = link.client.register_script(_BUCKETS_LUA)
        product = local.product_rate
        self._product_args = (product.per_second, product.burst) if product is not None else None
        self._auth_args = (
            local.source_auth_rate.per_second, local.source_auth_rate.burst,
            local.device_auth_rate.per_second, local.device_auth_rate.burst,
        )

    async def check_report(self, device: Device, rate: Rate | None) -> None:
        if not self._link.up:
            return self._local.report(device, rate)
        rate = rate or self._local.device_rate
        tag = f"{PREFIX}rl:{{{device.product_key}}}:"
        if self._product_args is None:
            keys: tuple[str, ...] = (f"{tag}d:{device.id}",)
            args: tuple[float, ...] = (rate.per_second, rate.burst)
        else:
            keys = (f"{tag}d:{device.id}", f"{tag}p")
            args = (rate.per_second, rate.burst, *self._product_args)
        try:
            refused = await self._script(keys, args)
        except FAILURES as exc:
            self._link.failed(exc)
            return self._local.report(device, rate)
        if refused == 1:
            raise Throttled("device report rate limit reached")
        if refused:
            raise InstanceThrottled("product report rate limit reached")
        self._local.instance()

    async def check_auth(self, device_key: str, source: str) -> None:
        if not self._link.up:
            return self._local.auth(device_key, source)
        tag = f"{PREFIX}ra:{{{source}}}:"
        try:
            refused = await self._script((f"{tag}s", f"{tag}d:{device_key}"), self._auth_args)
        except FAILURES as exc:
            self._link.failed(exc)
            return self._local.auth(device_key, source)
        if refused == 1:
            raise InstanceThrottled("too many authentication attempts from this address")
        if refused:
            raise Throttled("too many authentication attempts for this device")

    async def check_device_auth(self, device_key: str, source: str) -> None:
        if not self._link.up:
            return self._local.device_auth(device_key, source)
        try:
            refused = await self._script((f"{PREFIX}ra:{{{source}}}:d:{device_key}",), self._auth_args[2:])
        except FAILURES as exc:
            self._link.failed(exc)
            return self._local.device_auth(device_key, source)
        if refused:
            raise Throttled("too many authentication attempts for this device")
