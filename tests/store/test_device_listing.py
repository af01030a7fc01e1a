"""Device listings with presence, and devices counted per product, on both engines: online as the device
status says it (enabled, seen within the product's presence timeout), filters, pages that read a bounded
number of devices, and the (product_key, id) index that keeps a page of a big product cheap."""

import sqlite3
import time
from pathlib import Path

import pytest

from tests.store.test_sql_stores import run
from thingport.core.errors import NotFound
from thingport.core.model import DeviceCounts, is_online
from thingport.manage.service import Management
from thingport.store import sql_registry
from thingport.store.database import Database
from thingport.store.sqlite_db import MIGRATIONS, connect, db_path


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def seen(stores, names: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    """Set last seen as the log writer does with each report batch (``sql_log._MARK_SEEN``)."""
    def q(conn: Database) -> None:
        with conn.transaction():
            for name, at in names.items():
                conn.execute("UPDATE devices SET last_seen_ms = ? WHERE device_name = ?", (at, name))

    await stores.registry._db.run(q)


async def fleet(m: Management, stores) -> int:  # type: ignore[no-untyped-def]
    """Product pk01 (server's timeout, 300 s): dev-a seen now, dev-b seen now but disabled, dev-c never seen,
    dev-d seen 10 min ago; product pk02 (a 60 s timeout): dev-e seen 2 min ago, dev-f seen now."""
    await m.create_product("one", "pk01")
    await m.create_product("two", "pk02")
    await m.set_presence_timeout("pk02", 60)
    for name in ("dev-a", "dev-b", "dev-c", "dev-d"):
        await m.create_device("pk01", name)
    for name in ("dev-e", "dev-f"):
        await m.create_device("pk02", name)
    await m.set_enabled("pk01", "dev-b", False)
    now = _now_ms()
    await seen(stores, {"dev-a": now, "dev-b": now, "dev-d": now - 600_000, "dev-e": now - 120_000, "dev-f": now})
    return now


def test_listing_says_online_as_the_device_status_does(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await fleet(m, stores)
        items, after = await m.device_page(None, limit=100)
        assert after is None
        listed = {d.device.device_name: (d.online, d.last_seen_ms is not None) for d in items}
        assert listed == {"dev-a": (True, True), "dev-b": (False, True), "dev-c": (False, False),
                          "dev-d": (False, True), "dev-e": (False, True), "dev-f": (True, True)}
        for d in items:  # one rule: the listing and the status agree on every device
            status = await m.device_status(d.device.product_key, d.device.device_name)
            assert (status.online, status.last_seen_ms) == (d.online, d.last_seen_ms), d.device.device_name
        online = [d.device.device_name for d in (await m.device_page(None, online=True))[0]]
        offline = [d.device.device_name for d in (await m.device_page("pk01", online=False))[0]]
        disabled = [d.device.device_name for d in (await m.device_page("pk01", enabled=False))[0]]
        prefixed = [d.device.device_name for d in (await m.device_page(None, "dev-", True, False))[0]]
        children = await m.children("pk01", "dev-a")
        return online, offline, disabled, prefixed, children, dict(await m.online_by_product())

    online, offline, disabled, prefixed, children, metric = run(data_dir, act, engine)
    assert online == ["dev-a", "dev-f"]
    assert offline == ["dev-b", "dev-c", "dev-d"]  # disabled counts as offline: its tokens no longer work
    assert disabled == ["dev-b"]
    assert prefixed == ["dev-c", "dev-d", "dev-e"]
    assert children == []
    assert metric == {"pk01": 1, "pk02": 1}  # /metrics counts online the same way


def test_counts_per_product(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await fleet(m, stores)
        await m.create_product("empty", "pk03")
        return await m.device_counts(), await m.device_counts("pk02")

    every, one = run(data_dir, act, engine)
    assert every == {"pk01": DeviceCounts(4, 1, 1), "pk02": DeviceCounts(2, 1, 0), "pk03": DeviceCounts(0, 0, 0)}
    assert one == {"pk02": DeviceCounts(2, 1, 0)}


def test_a_page_reads_a_bounded_number_of_devices_and_the_cursor_goes_on(
    data_dir: Path, engine: dict, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 25 devices, 2 of them online, and at most 5 devices read a page, a page of the online ones is
    often short or empty but the cursor walks on until every match has been listed, each once."""
    monkeypatch.setattr(sql_registry, "LIST_SCAN", 5)

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("many", "pk01")
        for i in range(25):
            await m.create_device("pk01", f"dev-{i:02d}")
        now = _now_ms()
        await seen(stores, {"dev-03": now, "dev-17": now})
        pages, after = [], 0
        while after is not None:
            items, after = await m.device_page("pk01", online=True, after_id=after, limit=1)
            pages.append([d.device.device_name for d in items])
        whole = [d.device.device_name async for d in m.listed_devices("pk01", online=True)]
        full, after_full = await m.device_page("pk01", limit=3)
        twentieth = (await m.device("pk01", "dev-19")).id
        last, after_last = await m.device_page("pk01", after_id=twentieth, limit=100)  # the last 5: no next
        assert [d.device.device_name for d in last] == [f"dev-{i}" for i in range(20, 25)] and after_last is None
        return pages, whole, [d.device.device_name for d in full], after_full, full[-1].device.id

    pages, whole, full, after_full, last_id = run(data_dir, act, engine)
    assert [name for page in pages for name in page] == ["dev-03", "dev-17"] == whole
    assert len(pages) >= 5 and [] in pages  # short pages that still had a next cursor
    assert full == ["dev-00", "dev-01", "dev-02"] and after_full == last_id  # an unfiltered page is full


def test_unknown_product_is_an_error(data_dir: Path) -> None:
    async def act(m: Management, _):  # type: ignore[no-untyped-def]
        for call in (m.device_page("nope1234567"), m.device_counts("nope1234567")):
            with pytest.raises(NotFound, match="does not exist"):
                await call

    run(data_dir, act)


def test_is_online_edges() -> None:
    assert is_online(True, 1000, 1999, 1000)
    assert not is_online(True, 1000, 2000, 1000)  # silent for the whole timeout: offline
    assert not is_online(False, 1999, 2000, 1000)
    assert not is_online(True, None, 2000, 1000)


def test_sqlite_pages_a_product_by_its_index_and_older_databases_get_it(data_dir: Path) -> None:
    """A data dir of schema 7 gains devices_by_product when opened; a product's page is then a walk of that
    index, never a sort of all its devices."""
    from thingport.store.keys import KeyRing

    KeyRing(data_dir)
    conn = connect(db_path(data_dir))
    for number, script in enumerate(MIGRATIONS[:7], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version={number}")
    conn.close()

    async def act(m: Management, _):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        return await m.device_page("pk01")

    assert run(data_dir, act) == ([], None)
    with sqlite3.connect(db_path(data_dir)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        plan = " ".join(row[3] for row in check.execute(
            "EXPLAIN QUERY PLAN SELECT d.id FROM devices d WHERE d.product_key = ? AND d.id > ? ORDER BY d.id"
            " LIMIT 1 OFFSET 9999", ("pk01", 0)))
    assert "devices_by_product" in plan and "TEMP B-TREE" not in plan, plan


def test_postgresql_gets_the_index_by_db_upgrade_and_loses_it_by_downgrade() -> None:
    import psycopg

    from tests.postgres import fresh_database
    from thingport.store import pg_schema

    url = fresh_database(migrate=False)
    pg_schema.upgrade(url, "0006")

    def indexed() -> bool:
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'devices_by_product'").fetchone()
        return found is not None

    assert not indexed()
    pg_schema.upgrade(url)
    assert indexed()
    assert pg_schema.downgrade(url, "0006") == (pg_schema.head(), "0006")
    assert not indexed()
