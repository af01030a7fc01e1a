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


def test_run_alone_runs_between_batches_never_inside_one_and_hands_back_its_result() -> None:
    """What was submitted before the job is written before it, what came after waits for it, and the job's
    own result (or exception) reaches its caller: retention's deletes run this way on the log's writer."""
    events: list[object] = []
    gate = threading.Event()

    def write(items: list[int]) -> None:
        gate.wait(5)
        events.append(list(items))

    def job() -> str:
        events.append("job")
        return "deleted"

    def broken() -> None:
        raise ValueError("no such table")

    async def main() -> None:
        committer: GroupCommitter[int] = GroupCommitter(write, max_batch=1000)
        committer.start(asyncio.get_running_loop())
        first = committer.submit(0)  # the writer takes it at once and waits on the gate
        await asyncio.sleep(0.05)
        before = [committer.submit(i) for i in (1, 2)]
        alone = committer.run_alone(job)
        after = [committer.submit(i) for i in (3, 4)]
        failing = committer.run_alone(broken)
        gate.set()
        await asyncio.gather(first, *before, *after)
        assert await alone == "deleted"
        with pytest.raises(ValueError, match="no such table"):
            await failing
        committer.stop()

    asyncio.run(main())
    assert events == [[0], [1, 2], "job", [3, 4]]


def test_stop_first_writes_every_batch_and_runs_every_job_queued_before_it_in_order() -> None:
    done: list[object] = []

    async def main() -> None:
        committer: GroupCommitter[int] = GroupCommitter(done.append, max_batch=2)
        committer.start(asyncio.get_running_loop())
        futures = [committer.submit(1), committer.run_alone(lambda: done.append("job")), committer.submit(2),
                   committer.submit(3), committer.submit(4)]
        await asyncio.to_thread(committer.stop)
        await asyncio.gather(*futures)

    asyncio.run(main())
    assert done[1] == "job" and [x for b in done if isinstance(b, list) for x in b] == [1, 2, 3, 4]
