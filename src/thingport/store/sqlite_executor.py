"""Runs blocking SQLite calls on one dedicated thread, so the event loop never waits on disk."""

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class SqliteExecutor:
    """One connection, one thread: calls are serialized, as one sqlite3 connection requires."""

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        self._conn = conn
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self._conn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._conn.close()
