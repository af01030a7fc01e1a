"""Token-bucket rate limits with an injected clock (pure; the caller owns the buckets' storage)."""

from dataclasses import dataclass
from itertools import islice

import msgspec


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 per second with a burst of at least 1")


class TokenBucket(msgspec.Struct, gc=False):
    """Allows ``rate.burst`` at once, refilling at ``rate.per_second``. Untracked by Python's cyclic garbage
    collector (nothing in it can form a cycle): a map of 100,000 devices' buckets made every full collection
    longer."""

    _rate: Rate
    _at: float  # when the tokens were last counted
    _tokens: float = -1.0  # a new bucket is full (see __post_init__)

    def __post_init__(self) -> None:
        if self._tokens < 0:
            self._tokens = self._rate.burst

    def take(self, now: float, cost: float = 1.0, rate: Rate | None = None) -> bool:
        """``rate`` replaces the bucket's own from now on (a product's rate may change while its buckets live)."""
        if rate is not None:
            self._rate = rate
        rate = self._rate
        elapsed = now - self._at
        if elapsed > 0:
            self._tokens = min(rate.burst, self._tokens + elapsed * rate.per_second)
            self._at = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def full_at(self, now: float) -> bool:
        """Refilled to its burst by ``now``: no different from a new bucket, so it may be forgotten."""
        return self._tokens + (now - self._at) * self._rate.per_second >= self._rate.burst


class BucketMap:
    """One bucket per key, bounded in size.

    A bucket that has refilled is the same as a new one, so when the map is full those are dropped first
    and exactly; only when more than ``max_keys`` keys are draining at once do the least recently created
    go, and an evicted bucket comes back full, which only ever errs toward allowing a request. Measured on a
    fleet of 100,000 devices reporting in turn: a map that evicted the oldest bucket instead made a new one
    for every report, and those long-lived objects kept Python's full garbage collection running (~0.3 s
    pauses every few seconds).
    """

    __slots__ = ("_rate", "_buckets", "_max_keys")

    def __init__(self, rate: Rate, max_keys: int = 100_000) -> None:
        self._rate = rate
        self._buckets: dict[object, TokenBucket] = {}
        self._max_keys = max_keys

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: object, now: float, rate: Rate | None = None) -> bool:
        """``rate``: this key's own rate instead of the map's (e.g. its product's)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._make_room(now)
            bucket = self._buckets[key] = TokenBucket(rate or self._rate, now)
        return bucket.take(now, 1.0, rate)

    def _make_room(self, now: float) -> None:
        """Forget every refilled bucket; then, while less than a tenth of the map is free, the oldest (so a
        sweep's cost is spread over at least a tenth of ``max_keys`` new keys)."""
        buckets = self._buckets
        self._buckets = buckets = {k: b for k, b in buckets.items() if not b.full_at(now)}
        excess = len(buckets) - (self._max_keys - max(1, self._max_keys // 10))
        if excess > 0:
            for key in list(islice(buckets, excess)):
                del buckets[key]
