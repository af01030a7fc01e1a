import asyncio
import json
from pathlib import Path

import msgspec
import pytest

from tests.support import wait_until_async
from thingport.core.errors import Conflict, NotFound, StoreUnavailable
from thingport.core.model import StoredMessage
from thingport.manage.service import Management
from thingport.runtime.bootstrap import build
from thingport.runtime.stores import open_stores
from thingport.settings import load_settings
from thingport.store.keys import UnknownKey


def run(data_dir: Path, action, engine: dict | None = None, **settings):  # type: ignore[no-untyped-def]
    app = build(load_settings(data_dir=data_dir, **(engine or {}), **settings))
    stores = app.stores

    async def main():  # type: ignore[no-untyped-def]
        stores.log.start(asyncio.get_running_loop())
        return await action(app.management(), stores)

    try:
        return asyncio.run(main())
    finally:
        app.close()


def test_device_secret_is_not_stored_in_the_clear(data_dir: Path) -> None:
    secret = "S3cretThatMustNotLeak0123456789x"

    async def act(m: Management, _):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        await m.create_device("pk01", "dev-1", secret)
        return (await m.device("pk01", "dev-1")).secret

    assert run(data_dir, act) == secret
    for path in data_dir.glob("thingport.db*"):
        assert secret.encode() not in path.read_bytes()


def test_a_different_master_key_cannot_read_secrets(data_dir: Path, engine: dict) -> None:
    async def create(m: Management, _):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        await m.create_device("pk01", "dev-1")

    run(data_dir, create, engine)
    (data_dir / "master.key").write_bytes(b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")

    async def read(m: Management, _):  # type: ignore[no-untyped-def]
        return await m.device("pk01", "dev-1")

    with pytest.raises(UnknownKey, match="sealed with a key this server does not have"):
        run(data_dir, read, engine)


def test_changes_feed_names_every_changed_device(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        start = await stores.registry.change_cursor()
        a = await m.create_device("pk01", "dev-a")
        b = await m.create_device("pk01", "dev-b")
        cursor, changed, products = await stores.registry.changes_since(start)
        assert changed == sorted([a.id, b.id]) and products == []
        await m.set_enabled("pk01", "dev-a", False)
        cursor2, changed, products = await stores.registry.changes_since(cursor)
        assert changed == [a.id] and cursor2 > cursor
        assert await stores.registry.changes_since(cursor2) == (cursor2, [], [])
        await stores.registry.set_product_validation("pk01", "whole-report")
        assert (await stores.registry.changes_since(cursor2))[1:] == ([], ["pk01"])

    run(data_dir, act, engine)


def test_disable_and_reset_secret_bump_the_token_epoch_and_delete_frees_nothing_for_reuse(
    data_dir: Path, engine: dict
) -> None:
    async def act(m: Management, _):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        d = await m.create_device("pk01", "dev-a")
        assert (await m.set_enabled("pk01", "dev-a", False)).token_epoch == d.token_epoch + 1
        assert (await m.set_enabled("pk01", "dev-a", True)).token_epoch == d.token_epoch + 1
        reset = await m.reset_secret("pk01", "dev-a")
        assert reset.token_epoch == d.token_epoch + 2 and reset.secret != d.secret
        await m.delete_device("pk01", "dev-a")
        again = await m.create_device("pk01", "dev-a")
        assert again.id != d.id  # a deleted device's tokens can never name a new one
        with pytest.raises(Conflict):
            await m.create_device("pk01", "dev-a")
        with pytest.raises(NotFound):
            await m.create_device("nope", "dev-b")
        with pytest.raises(NotFound):
            await m.delete_device("pk01", "dev-zz")

    run(data_dir, act, engine)


def test_appended_messages_are_read_back_newest_last(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        msgs = [StoredMessage(i, 1, "pk", "dn", "aliyun", "/t", bytes([i]), 1000 + i) for i in range(1, 6)]
        await asyncio.gather(*(stores.log.append(msg) for msg in msgs))
        newest = await m.newest_messages(3)
        assert [x.message_id for x in newest] == [3, 4, 5]
        # after a seq, the readers' horizon applies: it may wait for another transaction of the cluster
        after = await wait_until_async(lambda: m.newest_messages(10, after_seq=newest[1].seq), "message 5")
        assert [x.message_id for x in after] == [5]
        assert (await m.newest_messages(1))[0] == msgspec.structs.replace(msgs[-1], seq=newest[2].seq)

    run(data_dir, act, engine)


def test_storage_quota_refuses_writes_and_acknowledges_nothing(data_dir: Path) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        big = StoredMessage(1, 1, "pk", "dn", "aliyun", "/t", b"x" * 200_000, 1)
        with pytest.raises(StoreUnavailable, match="full"):
            await stores.log.append(big)
        assert await m.newest_messages(10) == []

    run(data_dir, act, storage_max_mb=0.05)


def test_log_order_is_commit_order_not_message_id_order(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        late = StoredMessage(10, 1, "pk", "dn", "aliyun", "/t", b"first committed", 1)
        early = StoredMessage(5, 1, "pk", "dn", "aliyun", "/t", b"second committed", 2)
        await stores.log.append(late)
        await stores.log.append(early)
        read = await stores.log.read_after(0, 10)
        assert [x.message_id for x in read] == [10, 5] and 0 < read[0].seq < read[1].seq
        assert await stores.log.read_after(read[0].seq, 10) == [read[1]]
        assert await stores.log.last_seq() == read[1].seq

    run(data_dir, act, engine)


def test_latest_values_take_the_newest_time_within_one_batch(data_dir: Path, engine: dict) -> None:
    from thingport.core.model import ValuesAt

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        d = await m.create_device("pk01", "dev-1")

        def msg(i: int, value: int, at: int) -> StoredMessage:
            return StoredMessage(i, d.id, "pk01", "dev-1", "aliyun", "/t", b"", at, "property_post",
                                 properties=(ValuesAt(at, {"t": value}),))

        # one batch (one transaction) with a late report in the middle
        await stores.log.append_many((msg(1, 10, 1000), msg(2, 30, 3000), msg(3, 20, 2000)))
        _, latest = await stores.registry.device_status(d.id)
        assert latest["t"] == (30, 3000)
        assert [v for _, v, _ in await stores.registry.history(d.id, "t", None, None, 10)] == [30, 20, 10]

    run(data_dir, act, engine)


def test_a_cursor_following_the_log_misses_nothing_while_two_processes_write(data_dir: Path) -> None:
    """PostgreSQL hands out ``seq`` before commit: a follower reading past a gap would step
    over a message whose transaction committed after a later one's."""
    from tests.postgres import fresh_database

    settings = load_settings(data_dir=data_dir, database_url=fresh_database(), group_commit_max_batch=7)
    writers = [open_stores(settings), open_stores(settings)]

    async def main() -> list[int]:
        for stores in writers:
            stores.log.start(asyncio.get_running_loop())

        async def write(n: int, offset: int, stores) -> None:  # type: ignore[no-untyped-def]
            await asyncio.gather(*(
                stores.log.append(StoredMessage(offset + i, 1, "pk", "dn", "aliyun", "/t", b"x", i)) for i in range(n)
            ))

        last: list[int] = []  # the newest seq, once every write committed

        async def follow() -> list[int]:
            # An empty read is not the end: the readers' horizon waits for every older transaction of the
            # PostgreSQL cluster (other databases' too), so the follower reads on until it passed the last
            # seq. A message stepped over stays missing from ``seen``.
            cursor, seen = 0, []
            deadline = asyncio.get_running_loop().time() + 30
            while not (last and cursor >= last[0]) and asyncio.get_running_loop().time() < deadline:
                batch = await writers[0].log.read_after(cursor, 50)
                seen += [m.message_id for m in batch]
                cursor = batch[-1].seq if batch else cursor
                if not batch:
                    await asyncio.sleep(0.01)
            return seen

        follower = asyncio.create_task(follow())
        await asyncio.gather(write(400, 0, writers[0]), write(400, 10_000, writers[1]))
        last.append((await writers[0].log.newest(1))[0].seq)  # newest() reads without the horizon
        return await follower

    try:
        seen = asyncio.run(main())
    finally:
        for stores in writers:
            stores.close()
    assert sorted(seen) == sorted([*range(400), *range(10_000, 10_400)])


def test_postgresql_schema_is_migrated_only_when_asked(data_dir: Path) -> None:
    from tests.postgres import fresh_database

    url = fresh_database(migrate=False)
    with pytest.raises(StoreUnavailable, match="thingport db upgrade"):
        open_stores(load_settings(data_dir=data_dir, database_url=url))
    open_stores(load_settings(data_dir=data_dir, database_url=url, db_upgrade=True)).close()
    open_stores(load_settings(data_dir=data_dir, database_url=url)).close()


def test_size_bounds_are_refused_on_postgresql(data_dir: Path) -> None:
    from pydantic import ValidationError

    for bound in ({"retention_max_mb": 10}, {"storage_max_mb": 10}):
        with pytest.raises(ValidationError, match="SQLite store only"):
            load_settings(data_dir=data_dir, database_url="postgresql://x@127.0.0.1/y", **bound)


def test_concurrent_log_writers_sharing_devices_do_not_deadlock(data_dir: Path) -> None:
    """Batches that touch the same devices' rows in opposite orders: locked in one order, none fails."""
    import random

    from tests.postgres import fresh_database
    from thingport.core.model import ValuesAt

    settings = load_settings(data_dir=data_dir, database_url=fresh_database(), group_commit_max_batch=20)
    setup = open_stores(settings)

    async def devices() -> list[int]:
        m = Management(setup.registry, setup.log)
        await m.create_product("p", "pk01")
        return [(await m.create_device("pk01", f"dev-{i}")).id for i in range(8)]

    try:
        ids = asyncio.run(devices())
    finally:
        setup.close()
    writers = [open_stores(settings) for _ in range(3)]

    async def main() -> list[BaseException | None]:
        for stores in writers:
            stores.log.start(asyncio.get_running_loop())
        rng = random.Random(7)

        async def write(stores, base: int):  # type: ignore[no-untyped-def]
            for round_ in range(30):
                order = rng.sample(ids, len(ids))
                await asyncio.gather(*(stores.log.append(StoredMessage(
                    base + round_ * 100 + i, d, "pk01", f"dev-{d}", "aliyun", "/t", b"", 1000 + round_, "property_post",
                    properties=(ValuesAt(1000 + round_, {"t": i}),))) for i, d in enumerate(order)))

        return await asyncio.gather(*(write(s, n * 1_000_000) for n, s in enumerate(writers)), return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        for stores in writers:
            stores.close()
    assert results == [None, None, None]


def test_history_keeps_each_value_with_its_own_time_and_json_type(data_dir: Path, engine: dict) -> None:
    """A history row holds every value a message gave at one time; each property's series is still its own,
    with JSON types (objects, text, booleans, null) and odd keys (a schemaless product's) as given."""
    from thingport.core.model import ValuesAt

    odd = 'a."b"$[0]'

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        d = await m.create_device("pk01", "dev-1")
        other = await m.create_device("pk01", "dev-2")
        values = (ValuesAt(1000, {"t": 21, "doc": {"x": [1, 2.5]}, "on": True, "note": "1", "gone": None, odd: 7}),
                  ValuesAt(500, {"t": 19}))  # a batch post's older sample of "t", in the same message
        await stores.log.append_many((
            StoredMessage(1, d.id, "pk01", "dev-1", "aliyun", "/t", b"", 2000, "property_post", properties=values),
            StoredMessage(2, d.id, "pk01", "dev-1", "aliyun", "/t", b"", 3000, "property_post",
                          properties=(ValuesAt(3000, {"t": 23}),)),
            StoredMessage(3, other.id, "pk01", "dev-2", "aliyun", "/t", b"", 3000, "property_post",
                          properties=(ValuesAt(3000, {"t": 99}),)),
        ))
        history = stores.registry.history
        assert await history(d.id, "t", None, None, 10) == [(3000, 23, 2), (1000, 21, 1), (500, 19, 1)]
        assert await history(d.id, "t", 600, 2000, 10) == [(1000, 21, 1)]
        assert await history(d.id, "t", None, None, 1) == [(3000, 23, 2)]
        for name, value in (("doc", {"x": [1, 2.5]}), ("on", True), ("note", "1"), ("gone", None), (odd, 7)):
            assert await history(d.id, name, None, None, 10) == [(1000, value, 1)]
        assert await history(d.id, "missing", None, None, 10) == []
        assert await history(other.id, "t", None, None, 10) == [(3000, 99, 3)]
        _, latest = await stores.registry.device_status(d.id)
        assert latest["t"] == (23, 3000) and latest["gone"] == (None, 1000) and latest[odd] == (7, 1000)

    run(data_dir, act, engine)


_OLD_HISTORY = [
    (7, "t", 1000, "21", 1),
    (7, "h", 1000, "55.5", 1),
    (7, "t", 2000, '{"v":1}', 2),
    (8, "t", 1000, "3", 3),
]
_CONVERTED = {7: [(2000, {"v": 1}, 2), (1000, 21, 1)], 8: [(1000, 3, 3)]}


def test_sqlite_history_of_schema_2_is_converted_on_open(data_dir: Path) -> None:
    import sqlite3

    from thingport.store.keys import KeyRing
    from thingport.store.sqlite_db import MIGRATIONS, connect, db_path

    KeyRing(data_dir)  # an older thingport's data dir has its master key beside the database
    conn = connect(db_path(data_dir))
    for number, script in enumerate(MIGRATIONS[:2], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version={number}")
    conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?)", _OLD_HISTORY)
    conn.close()

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        for device_id, series in _CONVERTED.items():
            assert await stores.registry.history(device_id, "t", None, None, 10) == series
        assert await stores.registry.history(7, "h", None, None, 10) == [(1000, 55.5, 1)]

    run(data_dir, act)
    with sqlite3.connect(db_path(data_dir)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_postgresql_history_is_converted_by_db_upgrade_and_back(data_dir: Path) -> None:
    import psycopg

    from tests.postgres import fresh_database
    from thingport.store import pg_schema

    url = fresh_database(migrate=False)
    pg_schema.upgrade(url, "0001")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany("INSERT INTO history VALUES (%s, %s, %s, %s, %s)", _OLD_HISTORY)
    pg_schema.upgrade(url)

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        for device_id, series in _CONVERTED.items():
            assert await stores.registry.history(device_id, "t", None, None, 10) == series

    run(data_dir, act, {"database_url": url})
    assert pg_schema.downgrade(url, "0001") == (pg_schema.head(), "0001")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT device_id, identifier, time_ms, value::jsonb, message_id FROM history").fetchall()
    assert sorted(rows) == sorted((d, i, t, json.loads(v), mid) for d, i, t, v, mid in _OLD_HISTORY)


def test_sqlite_writers_queue_on_the_write_lock_instead_of_polling_sqlite(data_dir: Path) -> None:
    """A second writer waits on the flock and goes in when the first commits: it never meets SQLite's busy
    lock (with no busy timeout at all it would fail at once with "database is locked")."""
    import threading

    from thingport.store.sqlite_db import open_database

    first, second = open_database(data_dir), open_database(data_dir)
    second.raw.execute("PRAGMA busy_timeout=0")
    entered = threading.Event()
    failure: list[BaseException] = []

    def write_second() -> None:
        try:
            with second.transaction():
                entered.set()
                second.execute(
                    "INSERT INTO products (product_key, name, node_type, created_ms) VALUES ('b', 'b', 'device', 2)"
                )
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)

    try:
        with first.transaction():
            first.execute(
                "INSERT INTO products (product_key, name, node_type, created_ms) VALUES ('a', 'a', 'device', 1)"
            )
            thread = threading.Thread(target=write_second)
            thread.start()
            assert not entered.wait(0.3), "the second writer went in while the first held the write lock"
        thread.join(10)
        assert not failure, failure
        assert entered.is_set()
        assert [r[0] for r in first.execute("SELECT product_key FROM products ORDER BY 1").fetchall()] == ["a", "b"]
    finally:
        first.close()
        second.close()


def test_recently_seen_asks_for_given_devices_only(data_dir: Path, engine: dict) -> None:
    """The presence sweep asks about the devices it found silent, not the whole fleet."""

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        ids = [(await m.create_device("pk01", f"dev-{i}")).id for i in range(3)]
        await stores.log.append_many(tuple(
            StoredMessage(10 + i, d, "pk01", f"dev-{i}", "aliyun", "/t", b"", 1000 * (i + 1)) for i, d in enumerate(ids)
        ))
        seen = stores.registry.recently_seen
        assert sorted(await seen(0)) == [(ids[0], 1000), (ids[1], 2000), (ids[2], 3000)]
        assert sorted(await seen(0, [ids[0], ids[2]])) == [(ids[0], 1000), (ids[2], 3000)]
        assert await seen(1500, [ids[0], ids[2]]) == [(ids[2], 3000)]
        assert await seen(0, []) == []
        many = [ids[1], *range(10_000, 11_200)]  # more ids than one statement takes
        assert await seen(0, many) == [(ids[1], 2000)]
        # and the devices themselves, as presence resumes them after a restart: those that exist, secrets open
        found = await stores.registry.devices_by_ids([*many, ids[2]])
        assert sorted((d.id, d.device_name) for d in found) == [(ids[1], "dev-1"), (ids[2], "dev-2")]
        assert found[0] == await stores.registry.device_by_id(found[0].id)

    run(data_dir, act, engine)


def test_superseded_iotda_tokens_are_kept_per_device_in_the_registry(data_dir: Path, engine: dict) -> None:
    """Each session that supersedes adds the token before it, with the time it was superseded, for every instance
    to read back; sessions of one batch (and a late one from a clock that is behind) apply in order."""
    from thingport.core.model import AuthSession
    from thingport.core.tokens import MAX_SUPERSEDED_TOKENS

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        d = await m.create_device("pk01", "dev-a")
        other = await m.create_device("pk01", "dev-b")
        for at in (1_000, 11_000):
            await stores.log.record_session(AuthSession(d.id, d.device_id, "s", at, supersedes=True))
        await asyncio.gather(
            stores.log.record_session(AuthSession(d.id, d.device_id, "s", 21_000, supersedes=True)),
            stores.log.record_session(AuthSession(other.id, other.device_id, "s", 5_000, supersedes=True)),
        )
        stored = await stores.registry.device_by_id(d.id)
        assert (stored.token_ms, stored.superseded_tokens) == (21_000, ((1_000, 11_000), (11_000, 21_000)))
        assert (await stores.registry.device_by_id(other.id)).superseded_tokens == ()
        await stores.log.record_session(AuthSession(d.id, d.device_id, "s", 20_000, supersedes=True))  # behind
        stored = await stores.registry.device_by_id(d.id)
        assert stored.token_ms == 21_000 and (20_000, 21_000) in stored.superseded_tokens
        for at in range(30_000, 30_100):
            await stores.log.record_session(AuthSession(d.id, d.device_id, "s", at, supersedes=True))
        assert len((await stores.registry.device_by_id(d.id)).superseded_tokens) == MAX_SUPERSEDED_TOKENS

    run(data_dir, act, engine)
