"""Retention beside ingest: deleting many old messages must not stop new ones from being stored (issue 20:
on SQLite, ingest fell to 20-170 reports/s while retention deleted, against 500-2,000/s without it)."""

import asyncio
import time
from pathlib import Path

from tests.store.test_sql_stores import run
from thingport.core.model import StoredMessage

OLD_ROWS = 150_000
DAY_MS = 86_400_000


def message(i: int, received_ms: int) -> StoredMessage:
    return StoredMessage(i, 1, "pk01", "dev-1", "aliyun", "/pk01/dev-1/user/a", b"x" * 100, received_ms, "custom",
                         iot_id="pk01_dev-1")


def test_reports_are_stored_while_retention_deletes_a_large_backlog(data_dir: Path, engine: dict) -> None:
    """One delete_before call for every old message (old code: one DELETE holding SQLite's write lock from
    start to end, every append waiting behind it) while appenders keep going: they must get acknowledgements
    *during* the deletion (progress, not a rate: this machine is shared), and retention must delete exactly
    the old messages below the floor."""
    now = int(time.time() * 1000)

    async def act(_, stores):  # type: ignore[no-untyped-def]
        log = stores.log
        await log.append_many(tuple(message(i, now - 10 * DAY_MS) for i in range(1, OLD_ROWS + 1)))
        floor = await log.last_seq()
        await log.append(message(OLD_ROWS + 1, now - 10 * DAY_MS))  # old but above the floor: stays
        acknowledged_during = 0
        next_id = OLD_ROWS + 100

        deleting = asyncio.ensure_future(log.delete_before(floor, now - DAY_MS, OLD_ROWS))

        async def appender() -> None:
            nonlocal acknowledged_during, next_id
            while not deleting.done():
                next_id += 1
                await log.append(message(next_id, int(time.time() * 1000)))
                if not deleting.done():
                    acknowledged_during += 1

        await asyncio.wait_for(asyncio.gather(deleting, *(appender() for _ in range(8))), 300)
        assert deleting.result() == OLD_ROWS - 1  # every old message below the floor (the floor's own stays)
        left = await log.read_after(0, 10)
        assert [m.message_id for m in left[:2]] == [OLD_ROWS, OLD_ROWS + 1]
        assert await log.delete_before(floor, now - DAY_MS, OLD_ROWS) == 0
        return acknowledged_during, next_id - OLD_ROWS - 100

    during, appended = run(data_dir, act, engine)
    assert during >= 10, f"only {during} of {appended} reports were stored while retention deleted"
