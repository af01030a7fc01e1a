import asyncio
import threading

import pytest

from thingport.store.group_commit import GroupCommitter


def test_concurrent_submits_are_batched_and_acknowledged_after_the_write() -> None:
    batches: list[list[int]] = []
    written: set[int] = set()
    gate = threading.Event()

    def write(items: list[int]) -> None:
        gate.wait(5)  # hold the first batch so that the others queue up behind it
        batches.append(items)
        written.update(items)

    async def main() -> None:
        committer: GroupCommitter[int] = GroupCommitter(write, max_batch=1000)
        committer.start(asyncio.get_running_loop())
        futures = [committer.submit(i) for i in range(500)]
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in futures)  # nothing acknowledged before the write returns
        gate.set()
        await asyncio.gather(*futures)
        assert written == set(range(500))
        committer.stop()

    asyncio.run(main())
    assert len(batches) < 500  # grouped, not one write per item


def test_a_failed_write_fails_every_item_of_its_batch_and_the_next_batch_still_works() -> None:
    calls = 0

    def write(items: list[int]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")

    async def main() -> None:
        committer: GroupCommitter[int] = GroupCommitter(write)
        committer.start(asyncio.get_running_loop())
        with pytest.raises(OSError, match="disk full"):
            await committer.submit(1)
        await committer.submit(2)
        committer.stop()

    asyncio.run(main())


def test_batch_size_is_capped() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def write(items: list[int]) -> None:
        gate.wait(5)
        sizes.append(len(items))

    async def main() -> None:
        committer: GroupCommitter[int] = GroupCommitter(write, max_batch=10)
        committer.start(asyncio.get_running_loop())
        futures = [committer.submit(i) for i in range(55)]
        gate.set()
        await asyncio.gather(*futures)
        committer.stop()

    asyncio.run(main())
    assert max(sizes) <= 10 and sum(sizes) == 55


def test_stop_writes_what_is_queued() -> None:
    written: list[int] = []

    async def main() -> None:
        committer: GroupCommitter[int] = GroupCommitter(written.extend)
        committer.start(asyncio.get_running_loop())
        for i in range(20):
            committer.submit(i)
        committer.stop()

    asyncio.run(main())
    assert sorted(written) == list(range(20))
