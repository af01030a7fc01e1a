"""Opens the storage adapters the settings ask for (the embedded default: SQLite in the data dir)."""

from dataclasses import dataclass

from thingport.settings import Settings
from thingport.store.keys import KeyRing
from thingport.store.sqlite_db import open_database
from thingport.store.sqlite_executor import SqliteExecutor
from thingport.store.sqlite_log import SqliteMessageLog
from thingport.store.sqlite_registry import SqliteRegistry


@dataclass
class Stores:
    keys: KeyRing
    registry: SqliteRegistry
    log: SqliteMessageLog
    _executors: tuple[SqliteExecutor, ...]

    def close(self) -> None:
        self.log.close()
        for executor in self._executors:
            executor.close()


def open_stores(settings: Settings) -> Stores:
    keys = KeyRing(settings.data_dir)
    registry_db = SqliteExecutor(open_database(settings.data_dir), "registry")
    reader_db = SqliteExecutor(open_database(settings.data_dir), "log-reader")
    writer = open_database(settings.data_dir, settings.storage_max_bytes)
    log = SqliteMessageLog(writer, reader_db, settings.group_commit_max_batch)
    return Stores(keys, SqliteRegistry(registry_db, keys), log, (registry_db, reader_db))
