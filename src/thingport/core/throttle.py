"""Token-bucket rate limits with an injected clock (pure; the caller owns the buckets' storage)."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 per second with a burst of at least 1")


class TokenBucket:
    """Allows ``rate.burst`` at once, refilling at ``rate.per_second``."""

    __slots__ = ("_rate", "_tokens", "_at")

    def __init__(self, rate: Rate, now: float) -> None:
        self._rate = rate
        self._tokens = rate.burst
        self._at = now

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


class BucketMap:
    """One bucket per key, bounded in size: the least recently created buckets go first.

    An evicted bucket comes back full, which only ever errs toward allowing a request.
    """

    __slots__ = ("_rate", "_buckets", "_max_keys")

    def __init__(self, rate: Rate, max_keys: int = 100_000) -> None:
        self._rate = rate
        self._buckets: dict[object, TokenBucket] = {}
        self._max_keys = max_keys

    def take(self, key: object, now: float, rate: Rate | None = None) -> bool:
        """``rate``: this key's own rate instead of the map's (e.g. its product's)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = TokenBucket(rate or self._rate, now)
        return bucket.take(now, 1.0, rate)
