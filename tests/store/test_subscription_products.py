"""Subscriptions of one product, a list or every product, stored alike on SQLite and PostgreSQL, and the
migration that made ``product_key`` a list (``subscription_products``) keeping what was there."""

from pathlib import Path

import pytest

from tests.store.test_sql_stores import run
from thingport.core.errors import NotFound
from thingport.manage.service import Management


def test_a_subscription_stores_its_products_or_every_product(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("a", "pka")
        await m.create_product("b", "pkb")
        await m.create_subscription("one", "pka", "http")
        await m.create_subscription("two", ["pka", "pkb"], "http")
        await m.create_subscription("every", None, "http")
        with pytest.raises(NotFound):
            await m.create_subscription("missing", ["pka", "nope"], "http")
        return {s.name: s.products for s, _ in await m.subscriptions()}

    assert run(data_dir, act, engine) == {"one": ("pka",), "two": ("pka", "pkb"), "every": ()}


def test_sqlite_subscriptions_of_schema_6_keep_their_product_and_ids(data_dir: Path) -> None:
    import sqlite3

    from thingport.store.keys import KeyRing
    from thingport.store.sqlite_db import MIGRATIONS, connect, db_path

    # an older data dir: schema 6, made by running its migrations only
    KeyRing(data_dir)
    conn = connect(db_path(data_dir))
    for number, script in enumerate(MIGRATIONS[:6], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute("INSERT INTO products (product_key, name, node_type, created_ms) VALUES ('pka', 'a', 'device', 1)")

    # two subscriptions as schema 6 stored them, the newer one deleted
    for sid, name in ((1, "kept"), (2, "gone")):
        conn.execute("INSERT INTO subscriptions (id, name, product_key, kinds, sink, options_sealed, cursor,"
                     " created_ms) VALUES (?, ?, 'pka', 'raw', 'http', x'00', 5, 1)", (sid, name))
    conn.execute("DELETE FROM subscriptions WHERE name = 'gone'")
    conn.close()

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        rows = await stores.registry._db.run(  # the sealed options are not readable here (made-up bytes)
            lambda c: c.execute("SELECT id, name, product_keys, cursor FROM subscriptions").fetchall())
        await m.create_subscription("new", None, "http")
        new_id = await stores.registry._db.run(
            lambda c: c.execute("SELECT id FROM subscriptions WHERE name = 'new'").fetchone()[0])
        return rows, new_id

    rows, new_id = run(data_dir, act)
    assert [tuple(r) for r in rows] == [(1, "kept", "pka", 5)]
    assert new_id == 3  # 2 belonged to a deleted subscription: a forwarder of it may still write its cursor
    with sqlite3.connect(db_path(data_dir)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_postgresql_subscription_products_migrate_and_refuse_to_go_back_with_lists(data_dir: Path) -> None:
    import psycopg

    from tests.postgres import fresh_database
    from thingport.store import pg_schema

    url = fresh_database(migrate=False)
    pg_schema.upgrade(url, "0005")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO products (product_key, name, node_type, created_ms) VALUES ('pka', 'a', 'device', 1)")
        conn.execute("INSERT INTO subscriptions (name, product_key, kinds, sink, options_sealed, cursor, created_ms)"
                     " VALUES ('kept', 'pka', 'raw', 'http', '\\x00', 5, 1)")
    pg_schema.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT product_keys FROM subscriptions").fetchall() == [("pka",)]
        conn.execute("INSERT INTO subscriptions (name, product_keys, kinds, sink, options_sealed, cursor, created_ms)"
                     " VALUES ('every', NULL, 'raw', 'http', '\\x00', 5, 1)")
    with pytest.raises(Exception, match="every product"):
        pg_schema.downgrade(url, "0005")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM subscriptions WHERE name = 'every'")
    assert pg_schema.downgrade(url, "0005") == (pg_schema.head(), "0005")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT product_key FROM subscriptions").fetchall() == [("pka",)]
