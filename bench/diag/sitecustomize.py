"""Benchmark diagnostics, never a way to serve: switches off part of the durable write to show its cost.

Python imports ``sitecustomize`` at start-up from the path, so ``bench/run.py`` puts this directory first on
``PYTHONPATH`` of a diagnostic row's server and names what to switch off in ``THINGPORT_BENCH_DIAG``:

- ``nofsync``: the log writer's connection commits with ``PRAGMA synchronous=OFF``. Every message is still
  written in its batch's transaction, but no commit waits for the disk: the difference to ``topic`` is what
  durability (one fsync per batch and what comes with it) costs per report.
- ``nostore``: reports are acknowledged without being written at all (token, ACL, throttle, id and reply
  as usual): the difference to ``bare`` is thingport's own work per request, the rest is the log's.

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
    else:
        raise SystemExit(f"THINGPORT_BENCH_DIAG={mode!r}: expected nofsync or nostore")


if _MODE:
    _patch(_MODE)
