"""Alembic's entry point for thingport's PostgreSQL schema; ``thingport db upgrade`` runs it.

The connection comes from the caller (``migrate.upgrade``), so no alembic.ini is needed.
"""

from alembic import context

from thingport.store.postgres_db import lock_id

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    # one upgrader at a time, when several hosts start with --db-upgrade together
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock_id('migrate')})")
    context.run_migrations()
