"""Several processes commit to one PostgreSQL log at once, with no lock in common, and still: a reader's cursor
never steps over a message that commits late (it waits for it), and a device's messages are in commit order
even when two processes write that device. Each "process" here is a store of its own (its own connections);
a writer's transaction is held open on purpose, between its insert and its commit."""

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import wait_until_async
from thingport.core.model import StoredMessage
from thingport.runtime.stores import Stores, open_stores
from thingport.settings import load_settings

HOLD_S = 30.0  # the longest a held transaction waits for its release (a failing test must not hang)
TIMEOUT_S = 20.0


class HeldCommit:
    """Holds the next commit of a store's log writer: its transaction (device locks, numbers, inserted rows)
    stays open in PostgreSQL, uncommitted, until ``release``."""

    def __init__(self, stores: Stores) -> None:
        self._writer = stores.log._writer  # type: ignore[attr-defined]
        self.reached = threading.Event()
        self._released = threading.Event()
        commit = self._writer.commit

        def held() -> None:
            del self._writer.commit  # only this one
            # a pipelined batch (PostgreSQL) may not have run its statements yet: reading a result waits for
            # them, so the held transaction really holds its locks, its id and its rows
            assert self._writer.execute("SELECT 1").fetchone() == (1,)
            self.reached.set()
            self._released.wait(HOLD_S)
            commit()

        self._writer.commit = held

    async def wait_reached(self) -> None:
        await wait_until_async(self.reached.is_set, "the held transaction to reach its commit", TIMEOUT_S)

    def release(self) -> None:
        self._released.set()


def msg(message_id: int, device_id: int) -> StoredMessage:
    return StoredMessage(message_id, device_id, "pk", f"dev-{device_id}", "aliyun", "/t", b"x", message_id)


@pytest.fixture
def processes(data_dir: Path) -> Iterator[list[Stores]]:
    """Three stores on one fresh PostgreSQL database, as three thingport processes have."""
    from tests.postgres import fresh_database

    settings = load_settings(data_dir=data_dir, database_url=fresh_database())
    stores = [open_stores(settings) for _ in range(3)]
    yield stores
    for s in stores:
        s.close()


def run(stores: list[Stores], main) -> None:  # type: ignore[no-untyped-def]
    async def go() -> None:
        for s in stores:
            s.log.start(asyncio.get_running_loop())
        await main()

    asyncio.run(go())


def ids(messages: list[StoredMessage]) -> list[int]:
    return [m.message_id for m in messages]


def test_a_cursor_waits_for_a_transaction_that_commits_late(processes: list[Stores]) -> None:
    a, b, reader = processes

    async def main() -> None:
        held = HeldCommit(a)
        early = asyncio.create_task(a.log.append(msg(1, 1)))  # numbered first, committed last
        try:
            await held.wait_reached()
            # another process commits meanwhile: it does not wait for the held transaction
            await asyncio.wait_for(b.log.append(msg(2, 2)), TIMEOUT_S)
            # ...but no reader goes past the held one: the later message is not read before it
            assert await reader.log.read_after(0, 10) == []
            assert await reader.log.last_seq() == 0
            assert not early.done()
        finally:
            held.release()
        await early
        both = await wait_until_async(lambda: reader.log.read_after(0, 10), "both messages", TIMEOUT_S,
                                      accept=lambda found: len(found) == 2)
        assert ids(both) == [1, 2]  # the one that committed late is not skipped: it comes first
        assert await reader.log.last_seq() == both[-1].seq

    run(processes, main)


def test_a_device_written_by_two_processes_is_read_in_commit_order(processes: list[Stores]) -> None:
    """Process A holds a transaction with device 4's message; process B's batch has device 3 and device 4
    (3 first: B locks it, then waits for 4). B commits after A, so A's message to 4 must come first, whatever
    order the two transactions started in. Process C, writing device 5 only, waits for neither."""
    a, b, c = processes

    async def main() -> None:
        held = HeldCommit(a)
        first = asyncio.create_task(a.log.append(msg(10, 4)))
        try:
            await held.wait_reached()
            second = asyncio.create_task(b.log.append_many((msg(20, 3), msg(21, 4))))
            await asyncio.wait_for(c.log.append(msg(30, 5)), TIMEOUT_S)
            assert not second.done()  # B waits for device 4
        finally:
            held.release()
        await first
        await asyncio.wait_for(second, TIMEOUT_S)
        found = await wait_until_async(lambda: c.log.read_after(0, 10), "every message", TIMEOUT_S,
                                       accept=lambda found: len(found) == 4)
        assert ids([m for m in found if m.device_id == 4]) == [10, 21]
        assert sorted(ids(found)) == [10, 20, 21, 30]

    run(processes, main)


def test_a_following_cursor_sees_each_device_in_send_order_while_three_processes_write(
        processes: list[Stores]) -> None:
    """Each device sends its next message once the last one was acknowledged, through any of the three
    processes (a device with connections on several workers); a follower reading concurrently sees every
    message once, and each device's in the order sent."""
    import random

    devices, per_device = 6, 40
    rng = random.Random(7)
    routes = {d: [rng.randrange(3) for _ in range(per_device)] for d in range(1, devices + 1)}

    async def main() -> None:
        done = asyncio.Event()

        async def device(d: int) -> None:
            for i, process in enumerate(routes[d]):
                await processes[process].log.append(msg(d * 1000 + i, d))

        async def follow() -> list[StoredMessage]:
            cursor, seen = 0, []
            while True:
                finished = done.is_set()
                batch = await processes[0].log.read_after(cursor, 25)
                seen += batch
                cursor = batch[-1].seq if batch else cursor
                if finished and not batch and len(seen) >= devices * per_device:
                    return seen
                if not batch:
                    await asyncio.sleep(0.005)

        follower = asyncio.create_task(follow())
        await asyncio.gather(*(device(d) for d in routes))
        done.set()
        seen = await asyncio.wait_for(follower, TIMEOUT_S)
        assert len(seen) == devices * per_device
        for d in routes:
            assert ids([m for m in seen if m.device_id == d]) == [d * 1000 + i for i in range(per_device)]

    run(processes, main)


def test_a_device_is_in_commit_order_whichever_of_its_transactions_started_first(processes: list[Stores]) -> None:
    """B's transaction (devices 3 and 4) starts and pauses after its first statement; A then writes device
    4. Whichever commits first, device 4's messages are read in the order the two committed (a transaction id
    taken before the device's lock would put B's first even when A committed first)."""
    a, b, reader = processes
    commits: list[str] = []
    paused, resume = threading.Event(), threading.Event()
    writer = b.log._writer  # type: ignore[attr-defined]
    execute = writer.execute
    statements = 0

    def pausing(sql: str, params: tuple = ()):  # type: ignore[no-untyped-def]
        nonlocal statements
        statements += 1
        result = execute(sql, params)
        if statements == 2:  # BEGIN, then the transaction's first statement
            execute("SELECT 1").fetchone()  # a pipelined batch's statements have run once a result is read
            paused.set()
            resume.wait(HOLD_S)
        return result

    writer.execute = pausing
    for name, stores in (("A", a), ("B", b)):
        log = stores.log

        # committed once the batch's write returned (a pipelined COMMIT's result is read at the batch's end)
        def recorded(items: list, name: str = name, write=log._write_batch) -> None:  # type: ignore[no-untyped-def]
            write(items)
            commits.append(name)

        log._write_batch = recorded  # type: ignore[attr-defined]

    async def main() -> None:
        second = asyncio.create_task(b.log.append_many((msg(20, 3), msg(21, 4))))
        try:
            await wait_until_async(paused.is_set, "B's transaction to start", TIMEOUT_S)
            first = asyncio.create_task(a.log.append(msg(10, 4)))
            await asyncio.wait({first}, timeout=1.0)  # A commits now, or waits for B: either is right
        finally:
            resume.set()
        await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT_S)
        found = await wait_until_async(lambda: reader.log.read_after(0, 10), "every message", TIMEOUT_S,
                                       accept=lambda found: len(found) == 3)
        in_log = ["A" if m.message_id == 10 else "B" for m in found if m.device_id == 4]
        assert in_log == commits

    run(processes, main)


def test_messages_stored_before_the_upgrade_stay_before_and_after_a_downgrade(data_dir: Path) -> None:
    """Revision 0005 keeps every old seq below the first new one (cursors never go back), and a downgrade
    hands out identity numbers above every transaction-numbered one."""
    import psycopg

    from tests.postgres import fresh_database
    from thingport.store import pg_schema

    url = fresh_database(migrate=False)
    pg_schema.upgrade(url, "0004")
    insert = ("INSERT INTO messages (id, device_id, product_key, device_name, dialect, topic, payload, received_ms,"
              " kind, iot_id) VALUES (%s, 1, 'pk', 'dev-1', 'aliyun', '/t', '', 1, 'raw', '') RETURNING seq")
    with psycopg.connect(url, autocommit=True) as conn:
        old = [conn.execute(insert, (i,)).fetchone()[0] for i in (1, 2, 3)]  # type: ignore[index]
    pg_schema.upgrade(url)
    stores = open_stores(load_settings(data_dir=data_dir, database_url=url))

    async def main() -> list[StoredMessage]:
        await stores.log.append(msg(4, 1))
        return await wait_until_async(lambda: stores.log.read_after(old[-1], 10), "the new message", TIMEOUT_S)

    try:
        run([stores], main)
        new = asyncio.run(stores.log.read_after(0, 10))
    finally:
        stores.close()
    assert ids(new) == [1, 2, 3, 4] and new[-1].seq > old[-1]
    pg_schema.downgrade(url, "0004")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute(insert, (5,)).fetchone()[0] > new[-1].seq  # type: ignore[index]
