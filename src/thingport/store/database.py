"""One connection to the store's SQL engine, with what differs between engines behind one base class.

The registry and the log write their SQL once, in the subset SQLite and PostgreSQL share, with ``?``
placeholders; an engine's connection translates what it must and maps its driver's errors to the two
below, so the stores never name a driver. Like httpx's transports: one small base, one class per engine.
"""

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal, Protocol

# When the log writer's commit returns (and the device gets its ack): "fsync" once it is on disk (survives
# power loss), "os" once it is written to the operating system (survives a crash of thingport, not of the
# machine). Like PostgreSQL's synchronous_commit on/off; the writer connection of each engine applies it.
Durability = Literal["fsync", "os"]

IN_CHUNK = 500  # bound variables per IN list: under SQLite's 999 of old builds
INSERT_CHUNK = 10_000  # rows per executemany of a bulk insert (bounds the driver's buffers)


class DatabaseError(Exception):
    """The engine failed or is unreachable: the write did not happen."""


class IntegrityError(DatabaseError):
    """A uniqueness or reference rule refused the write."""


class DriverErrors:
    """A context that re-raises a driver's exceptions as the two above (a class, not a generator-based
    context manager: it wraps every statement of the log writer)."""

    __slots__ = ("_integrity", "_error")

    def __init__(self, integrity: type[Exception], error: type[Exception]) -> None:
        self._integrity = integrity
        self._error = error

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, self._integrity):
            raise IntegrityError(str(exc)) from None
        if isinstance(exc, self._error):
            raise DatabaseError(str(exc)) from None


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database:
    """A connection in autocommit mode: transactions are explicit (``transaction`` or ``begin``/``commit``).

    Used from one thread at a time (an executor thread or the group-commit writer).
    """

    name = "abstract"

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def execute_planned(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """``execute``, planned for these values each time: for a query whose best plan depends on them (a
        product of ten devices or of a million). PostgreSQL otherwise turns a statement run five times into
        a prepared one with a generic plan, which walked the primary key past a small product's rows."""
        return self.execute(sql, params)

    def select_in(self, sql: str, params: Sequence[Any], values: Sequence[Any]) -> list[Any]:
        """The rows of ``sql`` whose ``{}`` stands for ``IN (values)`` (after ``params``): here in chunks of
        bound variables, where SQLite looks each chunk up in the index. PostgreSQL overrides it."""
        rows: list[Any] = []
        for start in range(0, len(values), IN_CHUNK):
            chunk = values[start:start + IN_CHUNK]
            rows += self.execute(sql.format(f"IN ({','.join('?' * len(chunk))})"), (*params, *chunk)).fetchall()
        return rows

    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows, in the caller's transaction: ``executemany`` in chunks here (SQLite runs its loop
        in C). PostgreSQL overrides it with COPY."""
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        for start in range(0, len(rows), INSERT_CHUNK):
            self.executemany(sql, rows[start:start + INSERT_CHUNK])

    def insert_batch(self, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
                     seq: str | None = None) -> None:
        """Insert a write batch's ``rows`` (``columns``: name and SQL type), in the caller's transaction;
        ``seq``: ``number_log``'s expression, for a ``seq`` column numbered from each row's index. Here
        ``executemany``; PostgreSQL overrides it with one statement for the whole batch."""
        names = ", ".join(name for name, _ in columns)
        marks = ", ".join("?" * len(columns))
        if seq is None:
            self.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        else:
            self.executemany(f"INSERT INTO {table} ({names}, seq) VALUES ({marks}, {seq.format(index='?')})",
                             [(*row, index) for index, row in enumerate(rows)])

    def begin(self) -> None:
        """Start a write transaction: reads inside it see what the write will change."""
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        """Undo the open transaction, if any (a connection that died has none left to undo)."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator["Database"]:
        """BEGIN ... COMMIT, or ROLLBACK on any exception."""
        self.begin()
        try:
            yield self
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def batch(self) -> AbstractContextManager["Database"]:
        """A write transaction whose statements' results are not needed until it ends (the log writer's
        batch): ``transaction`` here; PostgreSQL sends its statements in one pipeline (one round trip)."""
        return self.transaction()

    def serialize(self, what: str) -> None:
        """Inside a transaction: wait until no other transaction that serializes ``what`` is open.

        Numbers handed out under it (the change feed's ``id``) then increase in commit order across every
        process, which is what cursors that follow them rely on (the log numbers itself: ``number_log``). SQLite has one
        writer at a time anyway; PostgreSQL takes a transaction-scoped advisory lock.
        """

    # Every write transaction takes the one write lock of the whole store (SQLite): a long write anywhere holds
    # off every other writer, the log's included. False: writers lock rows (PostgreSQL).
    one_writer = False

    log_horizon = ""  # an SQL condition on ``seq``: rows a log reader may return (empty: every committed one)

    def number_log(self, device_ids: list[int], count: int) -> str | None:
        """Inside a transaction, before it writes anything, for the ``count`` messages it will insert for
        ``device_ids`` (sorted): an SQL expression for a message's ``seq`` in which ``{index}`` stands for the
        message's index in the transaction (from 0), or None when the engine numbers them at insert.

        SQLite has one writer at a time: its rowid is in commit order already. PostgreSQL numbers them from
        the transaction's id, with no lock between transactions of different devices (see postgres_db)."""
        return None

    def lock_devices(self, device_ids: list[int]) -> None:
        """Inside a transaction: lock these device rows now, in the given (sorted) order. SQLite's write
        lock covers every row already; PostgreSQL locks rows as statements reach them, in any order."""

    def has_json_key(self, column: str) -> str:
        """An SQL condition with one ``?``, the key: the JSON object (as text) in ``column`` has that key."""
        raise NotImplementedError

    def json_number(self, column: str) -> str:
        """An SQL expression with one ``?``, the key: that key's value in the JSON object (as text) in
        ``column`` as a double when it is a JSON number, else NULL (bools, strings and objects are no numbers)."""
        raise NotImplementedError

    def size_bytes(self) -> int:
        """Bytes the store uses."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
