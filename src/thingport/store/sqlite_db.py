"""SQLite connections and schema for the embedded default (one file in the data dir, WAL mode).

WAL lets the CLI and readers work beside the server's single writer; ``synchronous=FULL`` makes each
commit durable (fsync) before the server acknowledges what it holds. Group commit keeps that cheap.
"""

import sqlite3
from pathlib import Path

DB_FILE = "thingport.db"
PAGE_SIZE = 4096

_SCHEMA_V1 = """
CREATE TABLE products (
    product_key TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    node_type   TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE devices (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: tokens name devices by id
    product_key   TEXT NOT NULL REFERENCES products(product_key),
    device_name   TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1,
    token_epoch   INTEGER NOT NULL DEFAULT 0,
    created_ms    INTEGER NOT NULL,
    last_auth_ms  INTEGER,
    last_client_id TEXT,
    last_source   TEXT,
    UNIQUE (product_key, device_name)
);
CREATE TABLE changes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,   -- the messageId given to the device
    device_id   INTEGER NOT NULL,
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    dialect     TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    received_ms INTEGER NOT NULL
);
"""

MIGRATIONS = [_SCHEMA_V1]


def db_path(data_dir: Path) -> Path:
    return data_dir / DB_FILE


def connect(path: Path, max_bytes: int | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, durable commits.

    ``max_bytes`` caps the database file for this connection's writes (the storage quota): a write past
    it fails with SQLITE_FULL and nothing is acknowledged.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    if max_bytes is not None:
        conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // PAGE_SIZE)}")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to the newest version; safe to run from several processes at once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def open_database(data_dir: Path, max_bytes: int | None = None) -> sqlite3.Connection:
    conn = connect(db_path(data_dir), max_bytes)
    migrate(conn)
    return conn
