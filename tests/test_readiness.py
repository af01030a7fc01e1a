"""/readyz is unauthenticated: it names its checks and their states, never the reasons (a driver's error
names the database's host, port and name); those go to the server's log, at most once per 10 s."""

import time
from pathlib import Path

import httpx
import psycopg

from tests.postgres import ADMIN_URL, fresh_database
from tests.support import ServerProcess, wait_until


def test_a_database_that_stops_answering_is_not_ready_without_saying_where_it_is(tmp_path: Path) -> None:
    url = fresh_database()
    name = url.rsplit("/", 1)[1]
    server = ServerProcess(tmp_path / "data", database_url=url).start()
    ready = f"http://127.0.0.1:{server.api_port}/readyz"
    try:
        assert httpx.get(ready, timeout=10).json()["checks"]["database"] == "ok"
        hidden = f"{name}_away"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:  # the database goes away under the server
            for _ in range(50):
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                try:
                    admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{hidden}"')
                    break
                except psycopg.errors.ObjectInUse:  # it reconnected in between
                    time.sleep(0.05)
            else:
                raise AssertionError("could not take the database away")
        try:
            wait_until(lambda: httpx.get(ready, timeout=10), "/readyz noticing the database is gone", 10, 0.2,
                       accept=lambda reply: reply.status_code == 503)
            for _ in range(5):
                reply = httpx.get(ready, timeout=10)
        finally:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{hidden}" RENAME TO "{name}"')
        assert reply.status_code == 503
        assert reply.json() == {"status": "not ready", "checks": {"database": "failing", "writes": "ok"}}
        for leak in (name, "5432", "127.0.0.1", "connection"):
            assert leak not in reply.text
        wait_until(lambda: httpx.get(ready, timeout=10), "ready again after the database came back", 10, 0.2,
                   accept=lambda reply: reply.status_code == 200)
    finally:
        server.stop()
    logged = server.output()
    assert logged.count("not ready: database check failed") == 1 and name in logged
