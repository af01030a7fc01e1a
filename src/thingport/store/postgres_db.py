"""PostgreSQL connections for production mode (psycopg 3), in the shape of the SQLite ones.

Statements are written with ``?`` placeholders (the subset both engines share) and translated once per
distinct statement. A connection that died is replaced on its next use outside a transaction, so a
PostgreSQL restart costs the requests that met it an error, and service resumes by itself.
"""

import logging
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from typing import Any

from thingport.extras import missing_extra

try:
    import psycopg
    from psycopg import pq
except ImportError as exc:  # an optional backend
    raise missing_extra("postgres", exc) from None

from thingport.store.database import Cursor, Database, DatabaseError, DriverErrors, Durability

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3
# Pipeline mode needs libpq 14+: psycopg's binary wheels bundle a newer one, but a build linked against an
# older system libpq runs a batch's statements one round trip each (the same transaction, slower).
PIPELINE = psycopg.Pipeline.is_supported()
# advisory lock ids live in one bigint space per database; ours are tagged so they do not meet others'
_LOCK_BASE = 0x7468_6970_0000_0000  # "thip"


# per-device advisory locks of the log writer: a key space of their own (the device id in the low 32 bits; two
# devices sharing a key only wait for each other)
_DEVICE_LOCKS = 0x7468_6964_0000_0000  # "thid"
# The log's order on PostgreSQL: seq = (id of the inserting transaction) << LOG_SHIFT | index in it. Numbers
# come from the transaction, not from a lock held to the commit, so any number of processes commit at once.
# A reader returns only rows below the horizon: those of transactions older than the oldest still running
# (pg_snapshot_xmin). Those are final: no running or later transaction can add a row below it, so a cursor
# never steps over a message that commits late; it waits for it. Batches hold at most max_batch items (1000).
LOG_SHIFT = 20
_NUMBER_LOG = ("SELECT pg_current_xact_id() FROM"
               " (SELECT count(pg_advisory_xact_lock(k)) FROM unnest(?::bigint[]) AS k) AS locked")
# a message's seq, computed by the server from the id the statement above assigned (no result to wait for)
_LOG_SEQ = f"(pg_current_xact_id()::text::bigint << {LOG_SHIFT}) | {{index}}"
# One scalar subquery, evaluated once from the statement's own snapshot (the one the rows are read with).
LOG_HORIZON = f"seq < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {LOG_SHIFT})"


def lock_id(what: str) -> int:
    """A stable advisory-lock id for ``what`` (a name shared by every process of the cluster)."""
    return _LOCK_BASE | zlib.crc32(what.encode())


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (a literal ``%`` is doubled first)."""
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


# A dead peer is noticed within ~15 s (TCP keep-alives), and a session stuck inside a transaction (a paused
# or cut-off process holding a device's lock, or the log readers' horizon) is ended by the server, so nobody
# waits on it for hours.
_SESSION_OPTIONS = (
    "-c idle_in_transaction_session_timeout=15000 -c tcp_keepalives_idle=5"
    " -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"
)


def connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3, options=_SESSION_OPTIONS,
        )
    except psycopg.Error as exc:
        raise DatabaseError(f"PostgreSQL is unreachable: {exc}") from None


_ERRORS = DriverErrors(psycopg.IntegrityError, psycopg.Error)


def apply_durability(conn: psycopg.Connection, durability: Durability) -> None:
    """Make the session's commits return as ``durability`` promises. ``os``: ``synchronous_commit = off``
    (the commit's WAL is written by the server's WAL writer within ~3 x wal_writer_delay: a crash of
    thingport loses nothing, one of the PostgreSQL server or its machine the newest commits). ``fsync``: the
    server's own setting, raised to ``on`` if it is ``off`` (``local`` and the remote levels already wait
    for the local flush, and a stronger one is not weakened)."""
    try:
        if durability == "os":
            conn.execute("SET synchronous_commit = off")
        elif conn.execute("SHOW synchronous_commit").fetchone() == ("off",):
            conn.execute("SET synchronous_commit = on")
    except psycopg.Error as exc:
        conn.close()
        raise DatabaseError(f"PostgreSQL: could not set synchronous_commit: {exc}") from None


class PostgresDatabase(Database):
    """``durability``: how the session's commits are made durable (the log writer's); None leaves the
    server's setting as it is."""

    name = "postgresql"

    def __init__(self, url: str, durability: Durability | None = None) -> None:
        self._url = url
        self._durability = durability
        self.raw: psycopg.Connection = self._connect()

    def _connect(self) -> psycopg.Connection:
        conn = connect(self._url)
        if self._durability is not None:
            apply_durability(conn, self._durability)
        return conn

    def _conn(self) -> psycopg.Connection:
        conn = self.raw
        if conn.closed or conn.broken:
            conn.close()
            self.raw = conn = self._connect()
            log.info("reconnected to PostgreSQL")
        return conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        with _ERRORS:
            return self._conn().execute(translate(sql), params or None)

    def execute_planned(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        with _ERRORS:
            return self._conn().execute(translate(sql), params or None, prepare=False)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with _ERRORS, self._conn().cursor() as cursor:
            cursor.executemany(translate(sql), rows)  # pipelined: one round trip, not one per row

    def select_in(self, sql: str, params: Sequence[Any], values: Sequence[Any]) -> list[Any]:
        """One statement, the values as one array: chunked IN lists on a two-column index made PostgreSQL
        scan the whole first-column range once per chunk (a million-row import took minutes)."""
        return self.execute(sql.format("= ANY(?)"), (*params, list(values))).fetchall()

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """COPY: about three times as fast as pipelined INSERTs for a bulk import."""
        with _ERRORS, self._conn().cursor() as cursor:
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def insert_batch(self, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
                     seq: str | None = None) -> None:
        """One statement, each column one array (unnest): the server plans and runs one INSERT for the
        batch, not one per row."""
        names = [name for name, _ in columns]
        arrays = ", ".join(f"?::{kind}[]" for _, kind in columns)
        if seq is None:
            sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({arrays})"
        else:
            sql = (f"INSERT INTO {table} ({', '.join(names)}, seq) SELECT {', '.join(names)},"
                   f" {seq.format(index='(n - 1)')} FROM unnest({arrays}) WITH ORDINALITY AS u({', '.join(names)}, n)")
        self.execute(sql, [list(column) for column in zip(*rows, strict=True)])

    def rollback(self) -> None:
        conn = self.raw
        if not conn.closed and not conn.broken and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()  # replaced on next use

    @contextmanager
    def batch(self) -> Iterator["PostgresDatabase"]:
        """BEGIN ... COMMIT in pipeline mode: the statements go out as they are made and their results are read
        together at the end, so a log batch costs one round trip, not one per statement (BEGIN, locks, each
        table, COMMIT). A statement whose result is read inside waits for everything before it. A failed
        statement makes the server skip the rest (COMMIT too): the error is raised here and rolled back."""
        conn = self._conn()
        pipeline: AbstractContextManager[Any] = conn.pipeline() if PIPELINE else nullcontext()
        try:
            with _ERRORS, pipeline:
                conn.execute("BEGIN")
                yield self
                self.commit()
        except BaseException:
            self.rollback()
            raise

    def serialize(self, what: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(?)", (lock_id(what),))

    log_horizon = LOG_HORIZON

    def number_log(self, device_ids: list[int], count: int) -> str:
        """Take each device's advisory lock (sorted, held to the commit), then the transaction's id; the seq
        of the transaction's message ``?`` is that id << LOG_SHIFT | its index, computed by the server.

        The id is assigned only once every lock is held, so of two transactions writing one device (two
        connections of it on two workers) the one that commits first has the smaller id: a device's
        messages are in commit order. Transactions of different devices wait for nobody. No result is read:
        in a pipelined ``batch`` this costs no round trip of its own."""
        if count >= 1 << LOG_SHIFT:
            raise DatabaseError(f"one transaction cannot log {count} messages (at most {(1 << LOG_SHIFT) - 1})")
        keys = sorted({_DEVICE_LOCKS | (device_id & 0xFFFF_FFFF) for device_id in device_ids})
        self.execute(_NUMBER_LOG, (keys,))
        return _LOG_SEQ

    def lock_devices(self, device_ids: list[int]) -> None:
        if device_ids:
            self.execute("SELECT 1 FROM devices WHERE id = ANY(?) ORDER BY id FOR UPDATE", (device_ids,))

    def has_json_key(self, column: str) -> str:
        return f"({column}::jsonb -> ?::text) IS NOT NULL"

    def json_number(self, column: str) -> str:
        return (f"(SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN v::float8 END"
                f" FROM (SELECT {column}::jsonb -> ?::text AS v) AS j)")

    def size_bytes(self) -> int:
        return int(self.execute("SELECT pg_database_size(current_database())").fetchone()[0])

    def close(self) -> None:
        self.raw.close()
