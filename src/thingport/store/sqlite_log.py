"""The durable message log on SQLite, written by group commit."""

import asyncio
import sqlite3

import msgspec

from thingport.core.errors import SessionStoreFailed, StoreUnavailable
from thingport.core.model import AuthSession, StoredMessage
from thingport.store.group_commit import GroupCommitter
from thingport.store.sqlite_executor import SqliteExecutor
from thingport.store.sqlite_registry import record_sessions

_MESSAGE_COLUMNS = "id, device_id, product_key, device_name, dialect, topic, payload, received_ms, kind, reply"
_INSERT_MESSAGE = f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_HISTORY = "INSERT INTO history (device_id, identifier, time_ms, value, message_id) VALUES (?, ?, ?, ?, ?)"
# a late report (older time) goes into history but does not overwrite a newer latest value
_UPSERT_LATEST = (
    "INSERT INTO latest_values (device_id, identifier, value, time_ms, message_id) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (device_id, identifier) DO UPDATE SET"
    " value = excluded.value, time_ms = excluded.time_ms, message_id = excluded.message_id"
    " WHERE excluded.time_ms >= latest_values.time_ms"
)
_MARK_SEEN = "UPDATE devices SET last_seen_ms = max(coalesce(last_seen_ms, 0), ?) WHERE id = ?"
_encode = msgspec.json.encode


class SqliteMessageLog:
    """Appends are committed by a writer thread with its own connection; reads use ``reader``."""

    def __init__(self, writer: sqlite3.Connection, reader: SqliteExecutor, max_batch: int = 1000) -> None:
        self._writer = writer
        self._reader = reader
        self._committer: GroupCommitter[StoredMessage | AuthSession | tuple[StoredMessage, ...]] = GroupCommitter(
            self._write_batch, max_batch, name="log-writer"
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._committer.start(loop)

    def close(self) -> None:
        self._committer.stop()
        self._writer.close()

    def _write_batch(self, items: list[StoredMessage | AuthSession | tuple[StoredMessage, ...]]) -> None:
        """One transaction: the messages, the property values they carried, presence, auth sessions."""
        conn = self._writer
        messages: list[tuple] = []
        samples: list[tuple] = []
        seen: dict[int, int] = {}
        sessions: list[AuthSession] = []
        flat: list[StoredMessage | AuthSession] = []
        for item in items:
            if type(item) is tuple:  # append_many: its messages share this transaction
                flat.extend(item)
            else:
                flat.append(item)
        for item in flat:
            if type(item) is StoredMessage:
                m = item
                messages.append((m.message_id, m.device_id, m.product_key, m.device_name, m.dialect, m.topic,
                                 m.payload, m.received_ms, m.kind, m.reply))
                for p in m.properties:
                    samples.append((m.device_id, p.identifier, p.time_ms, _encode(p.value).decode(), m.message_id))
                seen[m.device_id] = m.received_ms
            else:
                sessions.append(item)  # type: ignore[arg-type]
        conn.execute("BEGIN")
        try:
            if messages:
                conn.executemany(_INSERT_MESSAGE, messages)
                conn.executemany(_MARK_SEEN, [(at, device_id) for device_id, at in seen.items()])
            if samples:
                conn.executemany(_INSERT_HISTORY, samples)
                conn.executemany(_UPSERT_LATEST, [(d, i, v, t, mid) for d, i, t, v, mid in samples])
            if sessions:
                record_sessions(conn, sessions)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def append(self, message: StoredMessage) -> None:
        try:
            await self._committer.submit(message)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"message could not be stored: {exc}") from None

    async def append_many(self, messages: tuple[StoredMessage, ...]) -> None:
        try:
            await self._committer.submit(messages)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"messages could not be stored: {exc}") from None

    async def record_session(self, session: AuthSession) -> None:
        try:
            await self._committer.submit(session)
        except sqlite3.Error as exc:
            raise SessionStoreFailed(f"session could not be stored: {exc}") from None

    async def query(
        self, product_key: str | None = None, device_name: str | None = None, topic: str | None = None,
        from_ms: int | None = None, to_ms: int | None = None, before_id: int | None = None, limit: int = 100,
    ) -> list[StoredMessage]:
        """Messages matching every given filter, newest first (``before_id``: the next page)."""
        where, params = [], []
        for column, value in (("product_key", product_key), ("device_name", device_name), ("topic", topic)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for clause, value in (("received_ms >= ?", from_ms), ("received_ms <= ?", to_ms), ("id < ?", before_id)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages{' WHERE ' + ' AND '.join(where) if where else ''}"

        def q(conn: sqlite3.Connection) -> list[tuple]:
            return conn.execute(f"{sql} ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()

        return [StoredMessage(*row) for row in await self._reader.run(q)]

    async def newest(self, limit: int, after_id: int | None = None) -> list[StoredMessage]:
        """The newest ``limit`` messages (after ``after_id`` when given), oldest first."""

        def q(conn: sqlite3.Connection) -> list[tuple]:
            if after_id is None:
                sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages ORDER BY id DESC LIMIT ?"
                return conn.execute(sql, (limit,)).fetchall()
            sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id > ? ORDER BY id DESC LIMIT ?"
            return conn.execute(sql, (after_id, limit)).fetchall()

        rows = await self._reader.run(q)
        return [StoredMessage(*row) for row in reversed(rows)]
