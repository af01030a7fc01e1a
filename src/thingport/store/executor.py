"""Runs blocking database calls on one dedicated thread, so the event loop never waits on disk or network."""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from thingport.store.database import Database

T = TypeVar("T")


class DbExecutor:
    """One connection, one thread: calls are serialized, as one driver connection requires."""

    def __init__(self, db: Database, name: str) -> None:
        self._db = db
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, fn: Callable[[Database], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self._db)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._db.close()
