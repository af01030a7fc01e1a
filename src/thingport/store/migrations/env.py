"""Alembic's entry point for thingport's PostgreSQL schema; ``thingport db upgrade`` runs it.

The connection comes from the caller (``migrate.upgrade``), so no alembic.ini is needed.
"""

import re
import time
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo

from thingport.store.postgres_db import lock_id

connection = context.config.attributes["connection"]
progress = context.config.attributes.get("progress")
_started = [time.monotonic()]


def _applied(ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]) -> None:
    """One line per step applied: which, what it does, how long it took."""
    now = time.monotonic()
    if progress is not None:
        script = step.up_revision  # the revision applied, or the one reverted: a Script, with its docstring
        text = getattr(script, "doc", "") or ""
        doc = re.split(r" \(|: ", " ".join(text.split()), maxsplit=1)[0]  # its docstring's headline
        verb = "applied" if step.is_upgrade else "reverted"
        revision = step.up_revision_id
        progress.done(f"{verb} {revision}: {doc if len(doc) <= 100 else doc[:99] + '…'} ({now - _started[0]:.1f} s)")
    _started[0] = now


context.configure(connection=connection, transactional_ddl=True, on_version_apply=_applied)
with context.begin_transaction():
    # one upgrader at a time, when several hosts start with --db-upgrade together
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock_id('migrate')})")
    context.run_migrations()
