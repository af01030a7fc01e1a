"""Benchmark diagnostics, never a way to serve: switches off part of the durable write to show its cost.

Python imports ``sitecustomize`` at start-up from the path, so ``bench/run.py`` puts this directory first on
``PYTHONPATH`` of a diagnostic row's server and names what to switch off in ``THINGPORT_BENCH_DIAG``:

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

Without the variable (or on any other Python process) this file does nothing.
"""

import os

_MODE = os.environ.get("THINGPORT_BENCH_DIAG", "")


def _patch(mode: str) -> None:
    from thingport.store import sql_log

    if mode == "nofsync":
        original_init = sql_log.SqlMessageLog.__init__

        def init_without_fsync(self, writer, *args, **kwargs):  # type: ignore[no-untyped-def]
            writer.execute("PRAGMA synchronous=OFF")
            original_init(self, writer, *args, **kwargs)

        sql_log.SqlMessageLog.__init__ = init_without_fsync  # type: ignore[method-assign]
    elif mode == "nostore":
        async def append_nothing(self, message):  # type: ignore[no-untyped-def]
            return None

        sql_log.SqlMessageLog.append = append_nothing  # type: ignore[method-assign]
        sql_log.SqlMessageLog.append_many = append_nothing  # type: ignore[method-assign]
    elif mode == "filelog":
        import struct

        from thingport.core.model import StoredMessage

        original_init = sql_log.SqlMessageLog.__init__
        header = struct.Struct("<qqqHI")

        def init_with_file(self, writer, *args, **kwargs):  # type: ignore[no-untyped-def]
            original_init(self, writer, *args, **kwargs)
            database = writer.execute("PRAGMA database_list").fetchone()[2]
            fd = os.open(database + "-diag-filelog", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            write_sql = self._write_batch

            def write_batch(items):  # type: ignore[no-untyped-def]
                flat = sql_log.flatten(items)
                messages = [m for m in flat if type(m) is StoredMessage]
                if len(messages) < len(flat):
                    write_sql([item for item in flat if type(item) is not StoredMessage])
                if messages:
                    frames = []
                    for m in messages:
                        topic = m.topic.encode()
                        frames += (header.pack(m.message_id, m.device_id, m.received_ms, len(topic), len(m.payload)),
                                   topic, m.payload)
                    data = memoryview(b"".join(frames))
                    while data:  # a short write is resumed, never taken for the whole batch
                        data = data[os.write(fd, data):]
                    os.fdatasync(fd)

            # the same committer (queue, thread, batch limit), writing its batches the flat-file way
            self._committer._write_batch = write_batch

        sql_log.SqlMessageLog.__init__ = init_with_file  # type: ignore[method-assign]
    else:
        raise SystemExit(f"THINGPORT_BENCH_DIAG={mode!r}: expected nofsync, nostore or filelog")


if _MODE:
    _patch(_MODE)
