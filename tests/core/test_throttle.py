import pytest

from thingport.core.throttle import BucketMap, Rate, TokenBucket


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(Rate(per_second=2, burst=3), now=0.0)
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
