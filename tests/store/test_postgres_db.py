"""The log writer's pipelined batch on PostgreSQL: every statement sent before any result is read, so a
failing statement must still undo the whole batch, and the one-statement INSERT must store each column as
given (NULLs and bytes included)."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from thingport.core.errors import StoreUnavailable
from thingport.core.model import StoredMessage
from thingport.runtime.stores import Stores, open_stores
from thingport.settings import load_settings
from thingport.store import postgres_db
from thingport.store.postgres_db import LOG_SHIFT


@pytest.fixture(params=["pipeline", "no pipeline"])
def stores(request: pytest.FixtureRequest, data_dir: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stores, str]]:
    """Both ways a batch goes out: pipelined (libpq 14+), and one statement at a time (an older libpq)."""
    from tests.postgres import fresh_database

    monkeypatch.setattr(postgres_db, "PIPELINE", request.param == "pipeline")

    url = fresh_database()
    opened = open_stores(load_settings(data_dir=data_dir, database_url=url))
    yield opened, url
    opened.close()


def message(message_id: int, topic: str = "/t", reply: bytes | None = None,
            device_ms: int | None = None) -> StoredMessage:
    return StoredMessage(message_id, 7, "pk", "dev-7", "aliyun", topic, bytes([message_id]), 1000 + message_id,
                         "custom", reply, device_ms, "iot-7")


def test_a_failing_statement_undoes_the_whole_batch_and_the_writer_goes_on(stores: tuple[Stores, str]) -> None:
    log_stores, url = stores
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("ALTER TABLE messages ADD CONSTRAINT no_bad_topic CHECK (topic <> '/bad')")

    async def main() -> list[StoredMessage]:
        log = log_stores.log
        log.start(asyncio.get_running_loop())
        with pytest.raises(StoreUnavailable, match="no_bad_topic"):
            await log.append_many((message(1), message(2, "/bad"), message(3)))
        await log.append(message(4))  # the same writer connection: not left in the failed transaction
        return await log.newest(10)

    stored = asyncio.run(main())
    assert [m.message_id for m in stored] == [4]
    with psycopg.connect(url, autocommit=True) as check:
        assert check.execute("SELECT count(*) FROM messages").fetchone() == (1,)


def test_one_statement_stores_every_column_and_numbers_the_batch_in_order(stores: tuple[Stores, str]) -> None:
    log_stores, _ = stores
    batch = (message(1, reply=b'{"code":200}', device_ms=5), message(2), message(3, reply=b"", device_ms=None))

    async def main() -> list[StoredMessage]:
        log = log_stores.log
        log.start(asyncio.get_running_loop())
        await log.append_many(batch)
        return await log.newest(10)

    stored = asyncio.run(main())
    assert [m.message_id for m in stored] == [1, 2, 3]
    assert [m.seq & ((1 << LOG_SHIFT) - 1) for m in stored] == [0, 1, 2]  # the index, after the transaction id
    assert len({m.seq >> LOG_SHIFT for m in stored}) == 1
    assert [(m.reply, m.device_ms, m.payload, m.iot_id) for m in stored] == [
        (b'{"code":200}', 5, b"\x01", "iot-7"), (None, None, b"\x02", "iot-7"), (b"", None, b"\x03", "iot-7")]
