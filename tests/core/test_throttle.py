import pytest

from thingport.core.throttle import BucketMap, Rate, TokenBucket


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(Rate(per_second=2, burst=3), 0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 token refilled
    assert bucket.take(0.5)  # 1 token
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_bucket_map_keys_are_independent_and_bounded() -> None:
    buckets = BucketMap(Rate(1, 1), max_keys=2)
    assert buckets.take("a", 0) and not buckets.take("a", 0)
    assert buckets.take("b", 0)
    assert buckets.take("c", 0)  # evicts "a"
    assert buckets.take("a", 0)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Rate(0, 1)


def test_a_key_may_carry_its_own_rate_which_may_change() -> None:
    buckets = BucketMap(Rate(100, 100))
    own = Rate(1, 2)
    assert [buckets.take("a", 0, own) for _ in range(3)] == [True, True, False]
    assert buckets.take("b", 0)  # the map's rate for the others
    faster = Rate(10, 2)
    assert not buckets.take("a", 0.05, faster)  # 0.5 token at 10/s
    assert buckets.take("a", 0.1, faster)


def test_a_full_map_forgets_refilled_buckets_before_a_draining_one() -> None:
    """A refilled bucket is a new one: dropping it changes nothing. Evicting the oldest instead would have
    handed the draining device a full bucket (and, with more devices reporting in turn than the map
    holds, made a new bucket for every report)."""
    buckets = BucketMap(Rate(1, 1), max_keys=3)
    slow = Rate(0.001, 1)  # empty for the next 1000 s once taken
    assert buckets.take("draining", 0, slow)
    assert buckets.take("a", 0) and buckets.take("b", 0)
    assert buckets.take("c", 10)  # a and b refilled long ago: they go, not the oldest
    assert len(buckets) == 2
    assert not buckets.take("draining", 10, slow)


def test_a_map_of_draining_buckets_stays_bounded() -> None:
    buckets = BucketMap(Rate(0.001, 1), max_keys=100)
    for n in range(1000):
        assert buckets.take(n, 0.0)  # each new key gets its burst
        assert len(buckets) <= 100
    assert not buckets.take(999, 0.0)  # the newest are kept
