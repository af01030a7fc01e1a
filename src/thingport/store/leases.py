"""Leases: a name (or a number) that one process of the cluster holds at a time, for as long as it lives.

The forwarder holds one, so a subscription's cursor has one writer however many instances run; each
process holds a worker number, so the messageIds it hands out never collide with another's. On
PostgreSQL a lease is a session advisory lock, freed by the server when the holder's connection ends
(a crashed host gives its leases up by itself); on the embedded default it is an flock on a file in the
data dir, freed by the kernel when the holder dies.
"""

import fcntl
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from thingport.private_files import private_dir

if TYPE_CHECKING:  # an optional backend, imported when a PostgreSQL lease is used
    import psycopg

log = logging.getLogger(__name__)

WORKER_IDS = 1024  # the snowflake's worker field


class Lease:
    """Blocking calls; callers run them off the event loop."""

    def try_acquire(self, number: int = 0) -> bool:
        """Take the lease ``number`` (of this lease's name) if nobody holds it."""
        raise NotImplementedError

    def held(self) -> bool:
        """Still ours (False once the connection that held it is gone)."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class FileLease(Lease):
    def __init__(self, directory: Path, name: str) -> None:
        self._path = directory / "leases"
        self._name = name
        self._fd: int | None = None

    def try_acquire(self, number: int = 0) -> bool:
        private_dir(self._path)
        fd = os.open(self._path / f"{self._name}-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.release()
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class PostgresLease(Lease):
    def __init__(self, url: str, name: str) -> None:
        from thingport.store.postgres_db import lock_id

        self._url = url
        self._key = lock_id(name) & 0x7FFF_FFFF  # the two-key form takes two int4s: (name, number)
        self._conn: psycopg.Connection | None = None

    def try_acquire(self, number: int = 0) -> bool:
        import psycopg

        from thingport.store.postgres_db import connect

        for _ in range(2):  # a session the server ended is only found out by using it: then once more, anew
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                conn = self._conn = connect(self._url)
            try:
                row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (self._key, number)).fetchone()
                return row is not None and bool(row[0])
            except psycopg.Error:
                conn.close()
        return False

    def held(self) -> bool:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return False
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            conn.close()
            return False
        return True

    def release(self) -> None:
        """Unlock, then close. A closed session's locks are freed only when its backend has exited, a moment
        after the client has gone: without the unlock, a process taking over at once could find it held."""
        import psycopg

        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not (conn.closed or conn.broken):
                conn.execute("SELECT pg_advisory_unlock_all()")
        except psycopg.Error:
            pass  # the session is gone, and its locks with it
        finally:
            conn.close()


def lease_for(database_url: str | None, data_dir: Path, name: str) -> Lease:
    return PostgresLease(database_url, name) if database_url else FileLease(data_dir, name)


def claim_worker_id(lease: Lease, preferred: int) -> int:
    """The first free worker number from ``preferred`` on (wrapping); raises when all 1024 are taken."""
    for offset in range(WORKER_IDS):
        number = (preferred + offset) % WORKER_IDS
        if lease.try_acquire(number):
            return number
    raise RuntimeError("all 1024 worker ids are taken: too many thingport processes share this store")
