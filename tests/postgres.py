"""Test databases on the local PostgreSQL server: a fresh, migrated database per caller, dropped at exit.

``THINGPORT_TEST_POSTGRES`` names the server's admin URL (default: the machine's, trust auth). Without a
server the tests skip; under ``CI=true`` they fail (``require_service``).
"""

import atexit
import os
import uuid

import psycopg

from tests.bus.services import require_service
from thingport.store import pg_schema

ADMIN_URL = os.environ.get("THINGPORT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
_created: list[str] = []


def fresh_database(migrate: bool = True) -> str:
    """The URL of a new, empty database (migrated to the newest schema unless ``migrate`` is False)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"thingport_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    if migrate:
        pg_schema.upgrade(url)
    return url


@atexit.register
def _drop_all() -> None:
    if not _created:
        return
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            for name in _created:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass  # the server went away; the databases go with it
