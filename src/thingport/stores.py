"""Opens the storage adapters the settings ask for: SQLite in the data dir (the embedded default), or
PostgreSQL when ``database_url`` is set. Both engines serve the same registry and log code."""

from collections.abc import Callable
from dataclasses import dataclass

from thingport.settings import Settings
from thingport.store.database import Database
from thingport.store.executor import DbExecutor
from thingport.store.keys import KeyRing
from thingport.store.sql_log import SqlMessageLog
from thingport.store.sql_registry import SqlRegistry


@dataclass
class Stores:
    keys: KeyRing
    registry: SqlRegistry
    log: SqlMessageLog
    engine: str
    _executors: tuple[DbExecutor, ...]

    def close(self) -> None:
        self.log.close()
        for executor in self._executors:
            executor.close()


def _connector(settings: Settings) -> Callable[[bool], Database]:
    """``connect(writer)``: a new connection (the log writer's carries the storage quota)."""
    url = settings.database_url
    if url:
        from thingport.store import pg_schema
        from thingport.store.postgres_db import PostgresDatabase

        if settings.db_upgrade:
            pg_schema.upgrade(url)
        pg_schema.require_current(url)
        return lambda writer: PostgresDatabase(url)
    from thingport.store.sqlite_db import open_database

    return lambda writer: open_database(settings.data_dir, settings.storage_max_bytes if writer else None)


def open_stores(settings: Settings) -> Stores:
    connect = _connector(settings)
    keys = KeyRing(settings.data_dir)
    registry_db = DbExecutor(connect(False), "registry")
    reader_db = DbExecutor(connect(False), "log-reader")
    log = SqlMessageLog(connect(True), reader_db, settings.group_commit_max_batch)
    engine = "postgresql" if settings.database_url else "sqlite"
    return Stores(keys, SqlRegistry(registry_db, keys), log, engine, (registry_db, reader_db))
