import pytest

from thingport.core.message_ids import MAX_WORKER, MessageIdGenerator, message_id_time_ms


def test_ids_are_unique_increasing_and_64_bit_even_within_one_millisecond() -> None:
    gen = MessageIdGenerator(worker=5, clock_ms=lambda: 1_800_000_000_000)
    ids = [gen.next_id() for _ in range(10_000)]  # more than 4096 per ms: borrows the next ms
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(0 < i < 2**63 for i in ids)


def test_ids_carry_their_time_and_order_by_it() -> None:
    now = [1_800_000_000_000]
    gen = MessageIdGenerator(clock_ms=lambda: now[0])
    first = gen.next_id()
    now[0] += 1000
    second = gen.next_id()
    assert message_id_time_ms(first) == 1_800_000_000_000
    assert message_id_time_ms(second) == 1_800_000_001_000
    now[0] -= 5000  # the clock goes back: ids still increase
    assert gen.next_id() > second


def test_workers_never_collide() -> None:
    a = MessageIdGenerator(worker=1, clock_ms=lambda: 1_800_000_000_000)
    b = MessageIdGenerator(worker=2, clock_ms=lambda: 1_800_000_000_000)
    assert not {a.next_id() for _ in range(100)} & {b.next_id() for _ in range(100)}


def test_worker_range() -> None:
    with pytest.raises(ValueError):
        MessageIdGenerator(worker=MAX_WORKER + 1)
