"""The two schema histories agree: the embedded SQLite store (migrated by itself when opened) and PostgreSQL
(migrated by alembic) end with the same tables, the same columns of the same kind and nullability, and the
same indexes. A change made to one history and forgotten in the other fails here."""

import sqlite3
from pathlib import Path

import psycopg

from tests.postgres import fresh_database
from thingport.store.sqlite_db import db_path, open_database

# column kinds both engines share: SQLite's declared type and PostgreSQL's data_type -> one name
_SQLITE_KINDS = {"INTEGER": "int", "TEXT": "text", "BLOB": "bytes", "REAL": "float"}
_PG_KINDS = {"bigint": "int", "integer": "int", "smallint": "int", "text": "text", "bytea": "bytes",
             "double precision": "float", "real": "float"}
_INTERNAL = {"sqlite_sequence", "alembic_version"}


def sqlite_schema(data_dir: Path) -> dict[str, dict[str, tuple[str, bool]]]:
    open_database(data_dir).close()
    with sqlite3.connect(db_path(data_dir)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        schema = {}
        for table in tables:
            if table in _INTERNAL:
                continue
            columns = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            # a primary key column counts as NOT NULL: SQLite lets a non-INTEGER one be NULL (a quirk kept for
            # compatibility), but the code never leaves one NULL, and PostgreSQL implies it
            schema[table] = {name: (_SQLITE_KINDS[kind.upper()], bool(notnull or pk))
                             for _, name, kind, notnull, _, pk in columns}
    return schema


def sqlite_indexes(data_dir: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(db_path(data_dir)) as conn:
        rows = conn.execute("SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        return {(table, name) for table, name in rows}


def postgres_schema(url: str) -> dict[str, dict[str, tuple[str, bool]]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        ).fetchall()
    schema: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, kind, nullable in rows:
        if table not in _INTERNAL:
            schema.setdefault(table, {})[column] = (_PG_KINDS[kind], nullable == "NO")
    return schema


def postgres_indexes(url: str) -> set[tuple[str, str]]:
    """Indexes made by CREATE INDEX (not those behind primary keys and unique constraints)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT i.tablename, i.indexname FROM pg_indexes i WHERE i.schemaname = 'public' AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ).fetchall()
    return {(table, name) for table, name in rows if table not in _INTERNAL}


def test_sqlite_and_postgresql_end_with_the_same_schema(tmp_path: Path) -> None:
    url = fresh_database()
    lite, pg = sqlite_schema(tmp_path / "data"), postgres_schema(url)
    assert sorted(lite) == sorted(pg)
    for table in lite:
        assert lite[table] == pg[table], table


def test_sqlite_and_postgresql_have_the_same_indexes(tmp_path: Path) -> None:
    url = fresh_database()
    sqlite_schema(tmp_path / "data")
    assert sqlite_indexes(tmp_path / "data") == postgres_indexes(url)
