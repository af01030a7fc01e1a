"""SQLite connections and schema for the embedded default (one file in the data dir, WAL mode).

WAL lets the CLI and readers work beside the server's single writer; ``synchronous=FULL`` makes each
commit durable (fsync) before the server acknowledges what it holds. Group commit keeps that cheap. The log
writer of a server set to ``durability = "os"`` uses ``synchronous=NORMAL`` instead: in WAL mode a commit is
then written to the OS, not synced (a crash of the process loses nothing, a power cut the newest commits).
"""

import fcntl
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from thingport.private_files import narrow_existing, private_dir, private_file
from thingport.store.database import Cursor, Database, DriverErrors, Durability

DB_FILE = "thingport.db"
WRITE_LOCK_FILE = "thingport.db-writer"  # flock'd for each write transaction (see SqliteDatabase)
PAGE_SIZE = 4096
SYNCHRONOUS: dict[Durability, str] = {"fsync": "FULL", "os": "NORMAL"}

_SCHEMA_V1 = """
CREATE TABLE products (
    product_key   TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    node_type     TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    model_version TEXT,                 -- current thing model (thing_models.version); NULL: schemaless
    validation    TEXT NOT NULL DEFAULT 'per-property',
    presence_timeout_s REAL,            -- silence after which its devices are offline; NULL: the server's
    topics        TEXT NOT NULL DEFAULT '[]'  -- custom topic categories: [[suffix, "pub"|"sub"|"all"], ...]
);
CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    key_hash   BLOB NOT NULL UNIQUE,    -- SHA-256 of the key: the key itself is shown once, never stored
    prefix     TEXT NOT NULL,           -- first characters, to tell keys apart in listings
    created_ms INTEGER NOT NULL
);
CREATE TABLE thing_models (             -- every version ever imported, so a message can name its model
    product_key TEXT NOT NULL,
    version     TEXT NOT NULL,          -- content hash
    document    TEXT NOT NULL,          -- {"format": ..., "model": <as imported>}
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (product_key, version)
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
    last_seen_ms  INTEGER,
    device_id     TEXT NOT NULL UNIQUE,    -- the IoTDA device_id
    gateway_id    INTEGER REFERENCES devices(id),
    token_ms      INTEGER,                 -- newest IoTDA token's issue time
    prev_token_ms INTEGER,                 -- the one before (valid 30 s after token_ms)
    UNIQUE (product_key, device_name)
);
CREATE INDEX devices_by_gateway ON devices (gateway_id);
CREATE TABLE changes (                  -- the change feed running servers poll (one of the two is set)
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   INTEGER,
    product_key TEXT,
    at_ms       INTEGER NOT NULL
);
CREATE TABLE messages (
    seq         INTEGER PRIMARY KEY,   -- commit order (the rowid; retention never deletes the newest row,
                                       -- so it never goes back): what forwarding cursors follow
    id          INTEGER NOT NULL,      -- the messageId given to the device (time-ordered, not commit-ordered)
    device_id   INTEGER NOT NULL,
    iot_id      TEXT NOT NULL,         -- the device's IoTDA device_id, for envelopes and routing keys
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    dialect     TEXT NOT NULL,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    reply       BLOB,
    device_ms   INTEGER                -- the time the device gave, when it gave one
);
CREATE TABLE subscriptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    product_key TEXT NOT NULL REFERENCES products(product_key),
    kinds       TEXT NOT NULL,         -- comma-separated: raw, properties, event, status
    topic_filter TEXT,                 -- MQTT-style filter (+, #) on the message topic; NULL: all
    sink        TEXT NOT NULL,         -- http, rabbitmq, nats, mqtt, webhook
    options_sealed BLOB NOT NULL,      -- sink options (may hold credentials): encrypted like device secrets
    cursor      INTEGER NOT NULL,      -- last log seq the sink confirmed (or skipped)
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE latest_values (
    device_id  INTEGER NOT NULL,
    identifier TEXT NOT NULL,
    value      TEXT NOT NULL,           -- JSON
    time_ms    INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (device_id, identifier)
) WITHOUT ROWID;
CREATE TABLE history (
    device_id  INTEGER NOT NULL,
    identifier TEXT NOT NULL,
    time_ms    INTEGER NOT NULL,
    value      TEXT NOT NULL,           -- JSON
    message_id INTEGER NOT NULL
);
CREATE INDEX messages_by_device ON messages (device_id, seq);
CREATE INDEX history_by_series ON history (device_id, identifier, time_ms);
"""

_SCHEMA_V2 = """
ALTER TABLE products ADD COLUMN device_report_rate REAL;   -- reports per second per device; NULL: the server's
ALTER TABLE products ADD COLUMN device_report_burst REAL;
"""

_SCHEMA_V3 = """
CREATE TABLE history_v3 (
    device_id  INTEGER NOT NULL,
    time_ms    INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    samples    TEXT NOT NULL,           -- JSON object: identifier -> value, every value the message gave at time_ms
    PRIMARY KEY (device_id, time_ms, message_id)
) WITHOUT ROWID;
INSERT INTO history_v3 (device_id, time_ms, message_id, samples)
    SELECT device_id, time_ms, message_id, json_group_object(identifier, json(value))
    FROM history GROUP BY device_id, time_ms, message_id;
DROP TABLE history;
ALTER TABLE history_v3 RENAME TO history;
"""

_SCHEMA_V4 = """
-- JSON [[issued_ms, superseded_ms], ...]: IoTDA tokens in their 30 s grace
ALTER TABLE devices ADD COLUMN superseded_tokens TEXT;
-- IoTDA auth must be sign_type 1 (0/1); NULL: the server's
ALTER TABLE products ADD COLUMN require_sign_type_1 INTEGER;
"""

_SCHEMA_V5 = """
ALTER TABLE subscriptions ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;  -- highest seq handed to a consumer
UPDATE subscriptions SET delivered = cursor;
ALTER TABLE subscriptions ADD COLUMN state TEXT NOT NULL DEFAULT 'running';  -- running, retrying, failing
ALTER TABLE subscriptions ADD COLUMN state_since_ms INTEGER;  -- when it entered that state (NULL: created so)
ALTER TABLE subscriptions ADD COLUMN last_error TEXT;         -- why it is retrying or failing (no credentials)
CREATE TABLE write_probe (              -- /readyz writes (and deletes) a row here while writes fail, to learn
    id    INTEGER PRIMARY KEY,          -- when they work again; empty otherwise
    at_ms INTEGER NOT NULL,
    pad   BLOB NOT NULL                 -- as large as a report, so it needs the room one needs
);
"""

_SCHEMA_V6 = """
CREATE INDEX changes_by_time ON changes (at_ms);   -- PostgreSQL had it from the start: the feed's trimming
"""

# subscription_products: a subscription takes a list of products or every product (product_keys NULL), so
# its one product_key (NOT NULL, a foreign key) becomes product_keys; SQLite changes a column's constraints
# only by rebuilding the table (the AUTOINCREMENT counter carried over: ids are never reused)
_SCHEMA_V7_SUBSCRIPTION_PRODUCTS = """
CREATE TABLE subscriptions_v7 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    product_keys TEXT,                 -- comma-separated product keys; NULL: every product
    kinds       TEXT NOT NULL,         -- comma-separated: raw, properties, event, status
    topic_filter TEXT,                 -- MQTT-style filter (+, #) on the message topic; NULL: all
    sink        TEXT NOT NULL,         -- http, rabbitmq, nats, mqtt, webhook
    options_sealed BLOB NOT NULL,      -- sink options (may hold credentials): encrypted like device secrets
    cursor      INTEGER NOT NULL,      -- last log seq the sink confirmed (or skipped)
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_ms  INTEGER NOT NULL,
    delivered   INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL DEFAULT 'running',
    state_since_ms INTEGER,
    last_error  TEXT
);
INSERT INTO subscriptions_v7 (id, name, product_keys, kinds, topic_filter, sink, options_sealed, cursor, enabled,
                              created_ms, delivered, state, state_since_ms, last_error)
    SELECT id, name, product_key, kinds, topic_filter, sink, options_sealed, cursor, enabled,
           created_ms, delivered, state, state_since_ms, last_error FROM subscriptions;
DELETE FROM sqlite_sequence WHERE name = 'subscriptions_v7';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'subscriptions_v7', seq FROM sqlite_sequence WHERE name = 'subscriptions';
DROP TABLE subscriptions;
ALTER TABLE subscriptions_v7 RENAME TO subscriptions;
"""

# rules: a statement over the log and its actions, evaluated after a cursor of its own as a subscription is
# forwarded (issue 22); one self-contained step
_SCHEMA_V8_RULES = """
CREATE TABLE rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    statement   TEXT NOT NULL,         -- SELECT ... FROM "<topic filter>" [WHERE ...] (core/rule_sql.py)
    actions_sealed BLOB NOT NULL,      -- JSON list of actions (sink options may hold credentials): encrypted
    enabled     INTEGER NOT NULL DEFAULT 1,
    cursor      INTEGER NOT NULL,      -- last log seq every action confirmed (or the statement skipped)
    created_ms  INTEGER NOT NULL,
    matched     INTEGER NOT NULL DEFAULT 0,  -- messages it emitted a document for (moved with the cursor)
    failed      INTEGER NOT NULL DEFAULT 0,  -- messages it could not be evaluated on
    last_error  TEXT,                  -- why the newest failed message failed
    last_error_ms INTEGER,
    state       TEXT NOT NULL DEFAULT 'running',  -- running, retrying, failing: how its sinks confirm
    state_since_ms INTEGER,
    sink_error  TEXT                   -- why it is retrying or failing (no credentials)
);
"""

# devices_by_product: a product's devices in id order (device listings page by id), where the
# (product_key, device_name) index made SQLite sort all of a product's devices for every page. Self-contained
# and idempotent: schema step 9; PostgreSQL revision 0008.
_SCHEMA_V9_DEVICES_BY_PRODUCT = """
CREATE INDEX IF NOT EXISTS devices_by_product ON devices (product_key, id);
"""

# alarms: per-product definitions, per-device alarms with their changes (an outbox the evaluator writes to
# the log as ``alarm`` messages), the evaluator's pending durations and its log cursor (README "Alarms")
_SCHEMA_V10_ALARMS = """
CREATE TABLE alarm_definitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    product_key TEXT NOT NULL,
    name        TEXT NOT NULL,
    severity    TEXT NOT NULL,          -- critical, major, minor, warning
    condition   TEXT NOT NULL,          -- 'temperature > 38', 'humidity outside [20, 80]', 'silent'
    clear_condition TEXT,               -- NULL: the condition no longer holding clears
    duration_ms INTEGER NOT NULL DEFAULT 0,  -- how long the condition must hold before the alarm is raised
    created_ms  INTEGER NOT NULL,
    UNIQUE (product_key, name)
);
CREATE TABLE alarms (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   INTEGER NOT NULL,
    product_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    iot_id      TEXT NOT NULL,
    name        TEXT NOT NULL,          -- the definition's name, or the one raise_alarm was given
    severity    TEXT NOT NULL,
    state       TEXT NOT NULL,          -- active, acknowledged, cleared
    source      TEXT NOT NULL,          -- definition, service
    details     TEXT NOT NULL,          -- JSON object
    raised_ms   INTEGER NOT NULL,
    acknowledged_ms INTEGER,
    acknowledged_by TEXT,
    cleared_ms  INTEGER
);
CREATE UNIQUE INDEX alarms_open ON alarms (device_id, name) WHERE state <> 'cleared';  -- one open per name
CREATE INDEX alarms_by_state ON alarms (state, product_key, id);
CREATE INDEX alarms_by_device ON alarms (device_id, id);
CREATE TABLE alarm_events (             -- every change of an alarm; emitted: written to the log
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    alarm_id    INTEGER NOT NULL,
    state       TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    actor       TEXT,                   -- who acknowledged or cleared it; NULL: the evaluator
    emitted     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alarm_events_unemitted ON alarm_events (id) WHERE emitted = 0;
CREATE INDEX alarm_events_by_alarm ON alarm_events (alarm_id, id);
CREATE TABLE alarm_pending (            -- a condition that holds, waiting for its duration
    device_id     INTEGER NOT NULL,
    definition_id INTEGER NOT NULL,
    since_ms      INTEGER NOT NULL,
    PRIMARY KEY (device_id, definition_id)
);
CREATE TABLE alarm_cursor (             -- one row: the last log seq the evaluator has judged
    id     INTEGER PRIMARY KEY,
    cursor INTEGER NOT NULL
);
INSERT INTO alarm_cursor (id, cursor) SELECT 1, coalesce(max(seq), 0) FROM messages;
CREATE INDEX history_by_message ON history (message_id);  -- the evaluator reads a message's accepted values
"""

MIGRATIONS = [_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6,
              _SCHEMA_V7_SUBSCRIPTION_PRODUCTS, _SCHEMA_V8_RULES, _SCHEMA_V9_DEVICES_BY_PRODUCT,
              _SCHEMA_V10_ALARMS]


def db_path(data_dir: Path) -> Path:
    return data_dir / DB_FILE


def connect(path: Path, max_bytes: int | None = None, durability: Durability = "fsync") -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, commits as durable as ``durability``.

    ``max_bytes`` caps the database file for this connection's writes (the storage quota): a write past
    it fails with SQLITE_FULL and nothing is acknowledged.
    """
    private_dir(path.parent)
    # SQLite gives the -wal and -shm files the database file's mode: 0600 here makes all three private
    private_file(path)
    narrow_existing(path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SYNCHRONOUS[durability]}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    if max_bytes is not None:
        conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // PAGE_SIZE)}")
    return conn


def _statements(script: str) -> list[str]:
    """Split a script into statements (sqlite3 decides where one ends, so comments may hold ';')."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current)
            current = ""
    return statements


def migrate(db: "SqliteDatabase") -> None:
    """Bring the schema to the newest version; safe to run from several processes at once (BEGIN IMMEDIATE:
    the version read and the migration are under one write lock)."""
    with db.transaction():
        version = db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={number}")


_ERRORS = DriverErrors(sqlite3.IntegrityError, sqlite3.Error)


class SqliteDatabase(Database):
    """The embedded default's connection: statements pass through as they are written.

    Write transactions queue on an ``flock`` of ``write_lock`` before BEGIN IMMEDIATE. SQLite's own wait for
    its write lock (the busy timeout) polls with sleeps growing to 100 ms, which gave 200-700 ms p99
    replies to ``serve --workers 2``; a process waiting on the flock is woken the moment the holder commits.
    Each connection opens the file itself: flocks of separate opens exclude each other, threads included.
    The wait has no timeout (a blocking flock cannot have one, and polling with one brought the p99 back to
    ~100 ms): a holder that dies frees it at once, one that is stopped (SIGSTOP) holds writes until it goes on.
    """

    name = "sqlite"
    one_writer = True

    def __init__(self, conn: sqlite3.Connection, write_lock: Path | None = None) -> None:
        self.raw = conn
        self._lock_fd = os.open(write_lock, os.O_RDWR | os.O_CREAT, 0o600) if write_lock is not None else None
        self._locked = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        with _ERRORS:
            return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with _ERRORS:
            self.raw.executemany(sql, rows)

    def begin(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # releases the GIL while it waits
            self._locked = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._unlock()
            raise

    def commit(self) -> None:
        self.execute("COMMIT")  # a failed COMMIT leaves the transaction open: rollback() unlocks then
        self._unlock()

    def rollback(self) -> None:
        try:
            if self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
        finally:
            self._unlock()

    def _unlock(self) -> None:
        if self._locked:
            self._locked = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)  # type: ignore[arg-type]

    def has_json_key(self, column: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE key = ?)"

    def json_number(self, column: str) -> str:
        # json_each compares the key as text: no JSON path to quote (a key may hold dots or quotes)
        return f"(SELECT CASE WHEN type IN ('integer', 'real') THEN atom END FROM json_each({column}) WHERE key = ?)"

    def size_bytes(self) -> int:
        """Pages in use, not the file's free pages."""
        pages = self.raw.execute("PRAGMA page_count").fetchone()[0]
        free = self.raw.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.raw.execute("PRAGMA page_size").fetchone()[0]

    def close(self) -> None:
        self.raw.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # drops the flock with it
            self._lock_fd = None


def open_database(data_dir: Path, max_bytes: int | None = None, durability: Durability = "fsync") -> SqliteDatabase:
    db = SqliteDatabase(connect(db_path(data_dir), max_bytes, durability), data_dir / WRITE_LOCK_FILE)
    migrate(db)
    return db
