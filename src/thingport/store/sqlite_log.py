"""The durable message log on SQLite, written by group commit."""

import asyncio
import sqlite3

from thingport.core.errors import SessionStoreFailed, StoreUnavailable
from thingport.core.model import AuthSession, StoredMessage
from thingport.store.group_commit import GroupCommitter
from thingport.store.sqlite_executor import SqliteExecutor
from thingport.store.sqlite_registry import record_sessions

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, device_id, product_key, device_name, dialect, topic, payload, received_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_MESSAGE_COLUMNS = "id, device_id, product_key, device_name, dialect, topic, payload, received_ms"


class SqliteMessageLog:
    """Appends are committed by a writer thread with its own connection; reads use ``reader``."""

    def __init__(self, writer: sqlite3.Connection, reader: SqliteExecutor, max_batch: int = 1000) -> None:
        self._writer = writer
        self._reader = reader
        self._committer: GroupCommitter[StoredMessage | AuthSession] = GroupCommitter(
            self._write_batch, max_batch, name="log-writer"
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._committer.start(loop)

    def close(self) -> None:
        self._committer.stop()
        self._writer.close()

    def _write_batch(self, items: list[StoredMessage | AuthSession]) -> None:
        conn = self._writer
        messages = [
            (m.message_id, m.device_id, m.product_key, m.device_name, m.dialect, m.topic, m.payload, m.received_ms)
            for m in items
            if type(m) is StoredMessage
        ]
        sessions = [s for s in items if type(s) is AuthSession]
        conn.execute("BEGIN")
        try:
            if messages:
                conn.executemany(_INSERT_MESSAGE, messages)
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

    async def record_session(self, session: AuthSession) -> None:
        try:
            await self._committer.submit(session)
        except sqlite3.Error as exc:
            raise SessionStoreFailed(f"session could not be stored: {exc}") from None

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
