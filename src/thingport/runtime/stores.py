"""Opens the storage adapters the settings ask for: SQLite in the data dir (the embedded default), or
PostgreSQL when ``database_url`` is set. Both engines serve the same registry and log code."""

from collections.abc import Callable
from dataclasses import dataclass

from thingport.core.errors import ThingportError
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


class NoData(ThingportError):
    """The data dir holds no thingport data, and the command may not create any."""


def _has_sqlite_data(settings: Settings) -> bool:
    from thingport.store.sqlite_db import db_path

    return not settings.database_url and db_path(settings.data_dir).exists()


def require_data(settings: Settings) -> None:
    """Refuse a command that must not create a data dir (or a database in one) when there is none: a typo
    in --data-dir would otherwise leave a fresh empty store and master key behind, and answer "nothing"."""
    if settings.database_url or _has_sqlite_data(settings):
        return
    where = settings.data_dir.resolve()
    state = "does not exist" if not where.exists() else "holds no thingport database"
    raise NoData(f"{where} {state}: no thingport data there (give --data-dir, or create a product first)")


def open_stores(settings: Settings, create: bool = True) -> Stores:
    """The stores; ``create`` False: only existing ones (no data dir, database or master key is made)."""
    if not create:
        require_data(settings)
    connect = _connector(settings)
    # a database that exists had its secrets sealed with a key: never make a new one beside it (a key that
    # came from THINGPORT_MASTER_KEY, now unset, would otherwise be replaced without a word)
    keys = KeyRing(settings.data_dir, create=create and not _has_sqlite_data(settings))
    registry_db = DbExecutor(connect(False), "registry")
    reader_db = DbExecutor(connect(False), "log-reader")
    log = SqlMessageLog(connect(True), reader_db, settings.group_commit_max_batch)
    engine = "postgresql" if settings.database_url else "sqlite"
    return Stores(keys, SqlRegistry(registry_db, keys), log, engine, (registry_db, reader_db))
