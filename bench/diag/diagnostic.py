"""Benchmark diagnostics, never a way to serve: the server with part of the durable write switched off, to
show its cost. ``bench/run.py`` starts a diagnostic row's server as

    python bench/diag/diagnostic.py MODE --host H --port P --api-host H --api-port P --data-dir D

which serves exactly as ``thingport serve`` does, but with the message log that ``MODE`` names, given to the
process through ``runtime.bootstrap.build``'s overrides (nothing of thingport is patched):

- ``nofsync``: the log writer's connection commits with ``PRAGMA synchronous=OFF``. Every message is still
  written in its batch's transaction, but no commit waits for the disk: the difference to ``topic`` is what
  durability (one fsync per batch and what comes with it) costs per report.
- ``nostore``: reports are acknowledged without being written at all (token, ACL, throttle, id and reply
  as usual): the difference to ``bare`` is thingport's own work per request, the rest is the log's.
- ``filelog``: reports go through the same group commit, but each batch is appended to a flat file beside
  the database (id, device, time, topic, payload per message) with one ``write`` and one ``fdatasync``, and
  no SQL: the cheapest durable log this process could keep, so its distance to ``nostore`` is the floor
  of what a durable log costs here, whatever its design (the fsync, and the queue, writer thread and
  hand-off any group commit needs). Sessions and cursors still go to SQLite; devices' last-seen times are
  not kept (status messages go to the file like any message). SQLite data dirs only.
"""

import argparse
import os
import struct
import sys
from pathlib import Path

from thingport.core.model import StoredMessage
from thingport.runtime.bootstrap import Overrides
from thingport.runtime.stores import LogStore
from thingport.store import sql_log
from thingport.store.database import Database
from thingport.store.executor import DbExecutor
from thingport.store.sql_log import SqlMessageLog
from thingport.store.write_health import WriteHealth

MODES = ("nofsync", "nostore", "filelog")


def nofsync_log(writer: Database, reader: DbExecutor, max_batch: int, health: WriteHealth) -> LogStore:
    writer.execute("PRAGMA synchronous=OFF")
    return SqlMessageLog(writer, reader, max_batch, health)


class NoStoreLog(SqlMessageLog):
    """Acknowledges messages without writing them (sessions, cursors and probes are written)."""

    async def append(self, message: StoredMessage) -> None:
        return None

    async def append_many(self, messages: tuple[StoredMessage, ...]) -> None:
        return None


_HEADER = struct.Struct("<qqqHI")


class FileLog(SqlMessageLog):
    """The same committer (queue, thread, batch limit, write health), writing each batch's messages to a flat
    file with one write and one fdatasync; the rest of a batch goes to SQL as usual."""

    def __init__(self, writer: Database, reader: DbExecutor, max_batch: int, health: WriteHealth) -> None:
        super().__init__(writer, reader, max_batch, health)
        database = writer.execute("PRAGMA database_list").fetchone()[2]
        self._file = os.open(database + "-diag-filelog", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _write_batch(self, items: list[sql_log.Item]) -> None:  # the batch writer the committer calls
        flat = sql_log.flatten(items)
        messages = [m for m in flat if type(m) is StoredMessage]
        if len(messages) < len(flat):
            super()._write_batch([item for item in flat if type(item) is not StoredMessage])
        if messages:
            frames: list[bytes] = []
            for m in messages:
                topic = m.topic.encode()
                frames += (_HEADER.pack(m.message_id, m.device_id, m.received_ms, len(topic), len(m.payload)),
                           topic, m.payload)
            data = memoryview(b"".join(frames))
            while data:  # a short write is resumed, never taken for the whole batch
                data = data[os.write(self._file, data):]
            os.fdatasync(self._file)

    def close(self) -> None:
        super().close()
        os.close(self._file)


_LOGS = {"nofsync": nofsync_log, "nostore": NoStoreLog, "filelog": FileLog}


def overrides(mode: str) -> Overrides:
    """The process ``mode`` runs: its message log in place of the durable one."""
    if mode not in _LOGS:
        raise SystemExit(f"diagnostic mode {mode!r}: expected nofsync, nostore or filelog")
    return Overrides(message_log=_LOGS[mode])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    chosen = overrides(args.mode)  # an unknown mode stops here, before anything is served

    from thingport.runtime.server import serve
    from thingport.settings import load_settings

    serve(load_settings(host=args.host, port=args.port, api_host=args.api_host, api_port=args.api_port,
                        data_dir=args.data_dir), chosen)


if __name__ == "__main__":
    main(sys.argv[1:])
