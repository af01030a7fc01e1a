"""Opens the storage adapters the settings ask for: SQLite in the data dir (the embedded default), or
PostgreSQL when ``database_url`` is set. Both engines serve the same registry and log code."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from thingport.core.errors import ThingportError
from thingport.core.ports import ChangeFeed, KeyResealer, LogWriter, MessageLog, Pingable, Registry, WriteProbe
from thingport.settings import Settings
from thingport.store.database import Database
from thingport.store.executor import DbExecutor
from thingport.store.keys import KeyRing
from thingport.store.sql_alarms import SqlAlarmStore
from thingport.store.sql_log import SqlMessageLog
from thingport.store.sql_registry import SqlRegistry
from thingport.store.write_health import WriteHealth


class RegistryStore(Registry, ChangeFeed, Pingable, KeyResealer, Protocol):
    """Every port the registry adapter serves: what the process (start-up, readiness, key rotation) and the
    code it runs need of it."""


class LogStore(MessageLog, LogWriter, WriteProbe, Protocol):
    """Every port the message log adapter serves."""


class LogFactory(Protocol):
    """Makes the message log over its own writer connection (SqlMessageLog's signature: the class is the
    default factory, a subclass or a wrapper another one)."""

    def __call__(self, writer: Database, reader: DbExecutor, max_batch: int, health: WriteHealth) -> LogStore: ...


@dataclass
class Stores:
    keys: KeyRing
    registry: RegistryStore
    log: LogStore
    health: WriteHealth  # the log's failing writes: for /metrics and /readyz
    engine: str
    alarms: SqlAlarmStore
    _executors: tuple[DbExecutor, ...]

    def close(self) -> None:
        self.log.close()
        for executor in self._executors:
            executor.close()


def _connector(settings: Settings) -> Callable[[bool], Database]:
    """``connect(writer)``: a new connection (the log writer's carries the storage quota and the durability
    setting: only the log's commits acknowledge reports)."""
    url = settings.database_url
    if url:
        from thingport.store import pg_schema
        from thingport.store.postgres_db import PostgresDatabase

        if settings.db_upgrade:
            pg_schema.upgrade(url)
        pg_schema.require_current(url)
        return lambda writer: PostgresDatabase(url, settings.durability if writer else None)
    from thingport.store.sqlite_db import open_database

    return lambda writer: (open_database(settings.data_dir, settings.storage_max_bytes, settings.durability) if writer
                           else open_database(settings.data_dir))


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


def open_stores(settings: Settings, create: bool = True, message_log: LogFactory = SqlMessageLog) -> Stores:
    """The stores; ``create`` False: only existing ones (no data dir, database or master key is made).
    ``message_log``: makes the log (a benchmark's diagnostic or a test's faulty one; see bootstrap.Overrides)."""
    if not create:
        require_data(settings)
    connect = _connector(settings)
    # a database that exists had its secrets sealed with a key: never make a new one beside it (a key that
    # came from THINGPORT_MASTER_KEY, now unset, would otherwise be replaced without a word)
    keys = KeyRing(settings.data_dir, create=create and not _has_sqlite_data(settings))
    registry_db = DbExecutor(connect(False), "registry")
    reader_db = DbExecutor(connect(False), "log-reader")
    health = WriteHealth()
    log = message_log(connect(True), reader_db, settings.group_commit_max_batch, health)
    engine = "postgresql" if settings.database_url else "sqlite"
    return Stores(keys, SqlRegistry(registry_db, keys), log, health, engine, SqlAlarmStore(registry_db),
                  (registry_db, reader_db))
