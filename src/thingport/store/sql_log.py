"""The durable message log, written by group commit, on either SQL engine.

Messages are numbered twice: ``id`` is the messageId devices get (64-bit, time-ordered, assigned when the
request arrives) and ``seq`` is the position in the log. Forwarding cursors follow ``seq``: a cursor on ``id``
could step over a message that got a smaller id but committed later. On SQLite (one writer at a time) seq is
the rowid, in commit order. On PostgreSQL many processes commit at once, with no lock in common: seq comes
from the inserting transaction's id, and readers read only below the horizon of transactions still running
(``Database.number_log``, ``log_horizon``), so a message that commits late is waited for, never skipped; a
device's messages are in commit order (its transactions take its lock before their id).
"""

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import msgspec

from thingport.core.errors import SessionStoreFailed, StoreUnavailable
from thingport.core.model import AuthSession, StoredMessage
from thingport.store.database import Database, DatabaseError
from thingport.store.executor import DbExecutor
from thingport.store.group_commit import GroupCommitter
from thingport.store.sql_registry import record_sessions
from thingport.store.write_health import WriteHealth

_MESSAGE_COLUMNS = (  # in StoredMessage's field order, with their SQL types (for PostgreSQL's arrays)
    ("id", "bigint"), ("device_id", "bigint"), ("product_key", "text"), ("device_name", "text"), ("dialect", "text"),
    ("topic", "text"), ("payload", "bytea"), ("received_ms", "bigint"), ("kind", "text"), ("reply", "bytea"),
    ("device_ms", "bigint"), ("iot_id", "text"),
)
_SELECT_COLUMNS = ", ".join(name for name, _ in _MESSAGE_COLUMNS) + ", seq"  # in StoredMessage's field order
RETENTION_CHUNK = 500  # messages per retention transaction on SQLite: a few ms of the writer (delete_before)
# under ingest, after a chunk the writer is left to the reports this many times as long as the chunk took: a
# chunk after each batch took 9 of every 10 reports' worth of the writer (fleet run: 12,000 -> 800 reports/s)
RETENTION_YIELD = 3.0
BACKLOG_CAP = 100_000  # the most log messages a backlog counts where seq has gaps (PostgreSQL)
_INSERT_HISTORY = "INSERT INTO history (device_id, time_ms, message_id, samples) VALUES (?, ?, ?, ?)"
_MARK_SEEN = "UPDATE devices SET last_seen_ms = ? WHERE id = ? AND coalesce(last_seen_ms, 0) < ?"
# a late report (older time) goes into history but does not overwrite a newer latest value
_UPSERT_LATEST = (
    "INSERT INTO latest_values (device_id, identifier, value, time_ms, message_id) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (device_id, identifier) DO UPDATE SET"
    " value = excluded.value, time_ms = excluded.time_ms, message_id = excluded.message_id"
    " WHERE excluded.time_ms >= latest_values.time_ms"
)
_SAVE_CURSOR = "UPDATE subscriptions SET cursor = ? WHERE id = ? AND cursor < ?"
_SAVE_DELIVERED = "UPDATE subscriptions SET delivered = ? WHERE id = ? AND delivered < ?"
# a rule's counts move with its cursor, in one statement: a batch evaluated again after a crash (its cursor
# was not saved) is not counted twice
_SAVE_RULE_PROGRESS = (
    "UPDATE rules SET cursor = ?, matched = matched + ?, failed = failed + ?,"
    " last_error = coalesce(?, last_error), last_error_ms = coalesce(?, last_error_ms)"
    " WHERE id = ? AND cursor < ?"
)
# the probe's row is inserted, then deleted: the insert needs new room (pages, WAL frames) as a report does
_PROBE_INSERT = "INSERT INTO write_probe (id, at_ms, pad) VALUES (1, ?, ?)"
_PROBE_DELETE = "DELETE FROM write_probe WHERE id = 1"
_PROBE_PAD = bytes(8 * 1024)
_encode = msgspec.json.encode
_NOT_FROM_DEVICE = frozenset({"status", "alarm"})  # kinds the server writes: they do not mean the device was seen


@dataclass(frozen=True, slots=True)
class CursorUpdate:
    """A subscription's sink confirmed everything up to ``seq``."""

    subscription_id: int
    seq: int


@dataclass(frozen=True, slots=True)
class DeliveredUpdate:
    """A pull subscription handed messages up to ``seq`` to a consumer: acknowledgements may go that far."""

    subscription_id: int
    seq: int


@dataclass(frozen=True, slots=True)
class RuleProgress:
    """A rule is done up to ``seq``: its actions confirmed what it emitted before it; with the counts of that
    stretch and its newest evaluation error."""

    rule_id: int
    seq: int
    matched: int
    failed: int
    error: str | None
    error_ms: int | None


@dataclass(frozen=True, slots=True)
class WriteProbe:
    """A real write with no meaning (one row rewritten): does the database take writes again?"""

    at_ms: int


Item = (StoredMessage | AuthSession | CursorUpdate | DeliveredUpdate | RuleProgress | WriteProbe
        | tuple[StoredMessage, ...])
Flat = StoredMessage | AuthSession | CursorUpdate | DeliveredUpdate | RuleProgress | WriteProbe
_OPERATIONS = {StoredMessage: "messages", AuthSession: "sessions", CursorUpdate: "cursors",
               DeliveredUpdate: "deliveries", RuleProgress: "rules", WriteProbe: "probe"}


def flatten(items: list[Item]) -> list[Flat]:
    """A batch's items one by one: ``append_many``'s tuples opened, their messages sharing the transaction."""
    flat: list[Flat] = []
    for item in items:
        if type(item) is tuple:
            flat.extend(item)
        else:
            flat.append(item)  # type: ignore[arg-type]
    return flat


def _history_rows(message: StoredMessage) -> list[tuple]:
    """One history row per time the message's values are for (usually one), holding every value of that
    time as one JSON object: a 20-property report is one row, not 20 (one index entry instead of 40)."""
    return [(message.device_id, at, message.message_id, _encode(values).decode()) for at, values in message.properties]


def _newest_per_property(messages: list[StoredMessage]) -> list[tuple]:
    """One latest-value upsert per (device, property) of a batch, not one per sample: a device reporting
    20 properties in every message would otherwise rewrite each row once per message of the batch. The
    newest time wins (a tie: the later message), as the upsert's own WHERE would decide. Only the winners'
    values are encoded; the rows come sorted by (device, property), the order row locks are taken in.

    The groups are walked newest first (a stable sort, reversed, puts the later message of a tie first), and
    a group whose properties all have a newer value already costs one set comparison, done in C: devices
    report the same properties every time, and this runs on the writer thread for every report."""
    per_device: dict[int, list[tuple[int, int, dict[str, Any]]]] = {}
    for m in messages:
        per_device.setdefault(m.device_id, []).extend((at, m.message_id, values) for at, values in m.properties)
    rows: list[tuple] = []
    for device_id in sorted(per_device):
        groups = per_device[device_id]
        groups.sort(key=itemgetter(0))  # by time
        winners: dict[str, tuple[Any, int, int]] = {}  # identifier -> (value, time, message)
        for at, message_id, values in reversed(groups):
            if values.keys() <= winners.keys():
                continue
            for identifier in values.keys() - winners.keys():
                winners[identifier] = (values[identifier], at, message_id)
        rows.extend((device_id, identifier, _encode(winners[identifier][0]).decode(), *winners[identifier][1:])
                    for identifier in sorted(winners))
    return rows


class SqlMessageLog:
    """Appends are committed by a writer thread with its own connection; reads use ``reader``."""

    def __init__(self, writer: Database, reader: DbExecutor, max_batch: int = 1000,
                 health: WriteHealth | None = None) -> None:
        self._writer = writer
        self._reader = reader
        self._listeners: list[Callable[[], None]] = []
        self.health = health or WriteHealth()
        self._committer: GroupCommitter[Item] = GroupCommitter(
            self._write_watched, max_batch, name="log-writer", on_commit=self._committed
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._committer.start(loop)

    def close(self) -> None:
        self._committer.stop()
        self._writer.close()

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the event loop after every committed batch (e.g. to wake forwarders)."""
        self._listeners.append(listener)

    def _committed(self) -> None:
        for listener in self._listeners:
            listener()

    def _write_watched(self, items: list[Item]) -> None:
        """``_write_batch``, its failures reported (log, metrics, readiness) and its success too."""
        try:
            self._write_batch(items)
        except Exception as exc:
            operations: dict[str, int] = {}
            for item in flatten(items):
                operation = _OPERATIONS[type(item)]
                operations[operation] = operations.get(operation, 0) + 1
            self.health.failed("log", operations, exc)
            raise
        self.health.succeeded("log")

    def _write_batch(self, items: list[Item]) -> None:
        """One transaction: messages, the property values they carried, presence, sessions, cursors."""
        conn = self._writer
        messages: list[tuple] = []
        history: list[tuple] = []
        reporting: list[StoredMessage] = []  # those that carried property values
        seen: dict[int, int] = {}  # device -> newest receive time (status messages do not count)
        sessions: list[AuthSession] = []
        cursors: list[tuple[int, int, int]] = []
        delivered: list[tuple[int, int, int]] = []
        rules: list[tuple[int, int, int, str | None, int | None, int, int]] = []
        probes: list[tuple[int]] = []
        for item in flatten(items):
            if type(item) is StoredMessage:
                m = item
                messages.append((m.message_id, m.device_id, m.product_key, m.device_name, m.dialect, m.topic,
                                 m.payload, m.received_ms, m.kind, m.reply, m.device_ms, m.iot_id))
                if m.properties:
                    reporting.append(m)
                    history.extend(_history_rows(m))
                if m.kind not in _NOT_FROM_DEVICE:
                    seen[m.device_id] = m.received_ms
            elif type(item) is AuthSession:
                sessions.append(item)
            elif type(item) is DeliveredUpdate:
                delivered.append((item.seq, item.subscription_id, item.seq))
            elif type(item) is RuleProgress:
                rules.append((item.seq, item.matched, item.failed, item.error, item.error_ms, item.rule_id, item.seq))
            elif type(item) is WriteProbe:
                probes.append((item.at_ms,))
            else:
                cursors.append((item.seq, item.subscription_id, item.seq))  # type: ignore[union-attr]
        with conn.batch():  # no result is read in it: one round trip on PostgreSQL (pipeline)
            # first, before anything takes a transaction id: the log's numbers (PostgreSQL: and its device locks)
            seq_sql = conn.number_log(sorted({m[1] for m in messages}), len(messages)) if messages else None
            # Row locks in one order in every transaction that takes them (devices by id, then latest values
            # by device and property, as the registry does), so concurrent writers never deadlock.
            conn.lock_devices(sorted({*seen, *(s.device_id for s in sessions)}))
            if cursors:
                conn.executemany(_SAVE_CURSOR, cursors)
            if delivered:
                conn.executemany(_SAVE_DELIVERED, delivered)
            if rules:
                conn.executemany(_SAVE_RULE_PROGRESS, rules)
            if probes:
                conn.execute(_PROBE_INSERT, (probes[-1][0], _PROBE_PAD))
                conn.execute(_PROBE_DELETE)
            if seen:
                conn.executemany(_MARK_SEEN, [(at, device_id, at) for device_id, at in seen.items()])
            if sessions:
                record_sessions(conn, sessions)
            if history:
                conn.executemany(_INSERT_HISTORY, history)
                conn.executemany(_UPSERT_LATEST, _newest_per_property(reporting))
            if messages:
                conn.insert_batch("messages", _MESSAGE_COLUMNS, messages, seq_sql)

    async def append(self, message: StoredMessage) -> None:
        try:
            await self._committer.submit(message)
        except DatabaseError as exc:
            raise StoreUnavailable(f"message could not be stored: {exc}") from None

    async def append_many(self, messages: tuple[StoredMessage, ...]) -> None:
        try:
            await self._committer.submit(messages)
        except DatabaseError as exc:
            raise StoreUnavailable(f"messages could not be stored: {exc}") from None

    async def record_session(self, session: AuthSession) -> None:
        try:
            await self._committer.submit(session)
        except DatabaseError as exc:
            raise SessionStoreFailed(f"session could not be stored: {exc}") from None

    async def save_cursor(self, subscription_id: int, seq: int) -> None:
        """Durably record that a subscription is done up to ``seq`` (with whatever else commits now)."""
        try:
            await self._committer.submit(CursorUpdate(subscription_id, seq))
        except DatabaseError as exc:
            raise StoreUnavailable(f"cursor could not be stored: {exc}") from None

    async def save_delivered(self, subscription_id: int, seq: int) -> None:
        """Durably record that a pull subscription handed messages up to ``seq`` to a consumer."""
        try:
            await self._committer.submit(DeliveredUpdate(subscription_id, seq))
        except DatabaseError as exc:
            raise StoreUnavailable(f"delivery could not be recorded: {exc}") from None

    async def save_rule_progress(self, rule_id: int, seq: int, matched: int, failed: int, error: str | None,
                                 error_ms: int | None) -> None:
        """Durably record that a rule is done up to ``seq``, adding that stretch's counts (and its newest
        evaluation error) in the same statement."""
        try:
            await self._committer.submit(RuleProgress(rule_id, seq, matched, failed, error, error_ms))
        except DatabaseError as exc:
            raise StoreUnavailable(f"rule progress could not be stored: {exc}") from None

    async def probe_write(self, at_ms: int) -> None:
        """One real, meaningless write through the log's writer: raises what the database says if it fails.
        Lets a failing store learn it can write again when nothing else is written (no devices sent)."""
        try:
            await self._committer.submit(WriteProbe(at_ms))
        except DatabaseError as exc:
            raise StoreUnavailable(f"the probe write failed: {exc}") from None

    async def _select(self, where: str, params: tuple, order: str, limit: int) -> list[StoredMessage]:
        """``where`` may name ``{horizon}``: the rows a log reader may return yet (all, on SQLite)."""
        where = where.format(horizon=self._writer.log_horizon or "TRUE")
        sql = f"SELECT {_SELECT_COLUMNS} FROM messages{' WHERE ' + where if where else ''} ORDER BY seq {order} LIMIT ?"

        def q(conn: Database) -> list[tuple]:
            return conn.execute(sql, (*params, limit)).fetchall()

        return [StoredMessage(*row) for row in await self._reader.run(q)]

    async def read_after(self, seq: int, limit: int) -> list[StoredMessage]:
        """Committed messages after ``seq``, in commit order: what a forwarder reads next."""
        return await self._select("seq > ? AND {horizon}", (seq,), "ASC", limit)

    async def last_seq(self) -> int:
        """The newest seq a reader may read (on PostgreSQL: below the horizon of running transactions)."""
        def q(conn: Database) -> int:
            return conn.execute(
                f"SELECT coalesce(max(seq), 0) FROM messages WHERE {conn.log_horizon or 'TRUE'}"
            ).fetchone()[0]

        return await self._reader.run(q)

    async def backlogs(self, cursors: list[int]) -> list[int]:
        """Log messages after each cursor. SQLite's seq is dense: a subtraction. PostgreSQL's has gaps (see
        the module): a count, of at most ``BACKLOG_CAP`` (a stopped sink's backlog is not counted each time)."""
        def q(conn: Database) -> list[int]:
            horizon = conn.log_horizon
            last = conn.execute(f"SELECT coalesce(max(seq), 0) FROM messages WHERE {horizon or 'TRUE'}").fetchone()[0]
            if not horizon:
                return [max(0, last - cursor) for cursor in cursors]
            count = (f"SELECT count(*) FROM (SELECT 1 FROM messages WHERE seq > ? AND seq <= ? LIMIT {BACKLOG_CAP})"
                     " AS behind")
            return [conn.execute(count, (cursor, last)).fetchone()[0] if cursor < last else 0 for cursor in cursors]

        return await self._reader.run(q)

    async def query(
        self, product_key: str | None = None, device_id: int | None = None, topic: str | None = None,
        from_ms: int | None = None, to_ms: int | None = None, before_seq: int | None = None, limit: int = 100,
    ) -> list[StoredMessage]:
        """Messages matching every given filter, newest first (``before_seq``: the next page)."""
        where, params = [], []
        for column, value in (("product_key", product_key), ("device_id", device_id), ("topic", topic)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for clause, value in (("received_ms >= ?", from_ms), ("received_ms <= ?", to_ms), ("seq < ?", before_seq)):
            if value is not None:
                where.append(clause)
                params.append(value)
        return await self._select(" AND ".join(where), tuple(params), "DESC", limit)

    async def newest(self, limit: int, after_seq: int | None = None) -> list[StoredMessage]:
        """The newest ``limit`` messages (after ``after_seq`` when given), oldest first."""
        if after_seq is None:
            rows = await self._select("", (), "DESC", limit)
        else:
            rows = await self._select("seq > ? AND {horizon}", (after_seq,), "DESC", limit)
        return list(reversed(rows))

    async def delete_before(self, seq: int, received_before_ms: int | None, max_rows: int) -> int:
        """Retention: delete up to ``max_rows`` of the oldest messages below ``seq`` (and older than
        ``received_before_ms`` when given); returns how many went.

        On SQLite (``one_writer``) the deletes are the log writer's own work, run between its batches in
        transactions of ``RETENTION_CHUNK`` rows: each waits for at most one batch, and a batch waits for at
        most one chunk (a few ms); while reports keep coming, each chunk is followed by ``RETENTION_YIELD`` times its
        own duration of the writer for them. Run beside the writer, on another connection, one delete of thousands of
        rows after another held the file's write lock almost all the time, and the writer, polling for it
        with SQLite's busy timeout (sleeps growing to 100 ms), got it in between only now and then: ingest
        fell to a tenth while retention ran. PostgreSQL's writers lock rows: a delete of old messages holds
        up no insert, so it runs on the reader connection, in one statement."""
        age = "" if received_before_ms is None else " AND received_ms < ?"
        params = (seq,) if received_before_ms is None else (seq, received_before_ms)
        sql = f"DELETE FROM messages WHERE seq IN (SELECT seq FROM messages WHERE seq < ?{age} ORDER BY seq LIMIT ?)"

        def q(conn: Database, limit: int) -> int:
            return conn.execute(sql, (*params, limit)).rowcount

        if not self._writer.one_writer:
            return await self._reader.run(lambda conn: q(conn, max_rows))

        def chunk(limit: int) -> tuple[int, float]:
            started = time.perf_counter()
            with self._writer.transaction() as conn:
                return q(conn, limit), time.perf_counter() - started

        deleted = 0
        while deleted < max_rows:
            limit = min(RETENTION_CHUNK, max_rows - deleted)
            batches = self._committer.batches
            try:
                n, took = await self._committer.run_alone(functools.partial(chunk, limit))
            except DatabaseError as exc:
                raise StoreUnavailable(f"retention could not delete: {exc}") from None
            deleted += n
            if n < limit:
                break
            if self._committer.batches != batches:  # reports are coming in: leave them the writer for a while
                await asyncio.sleep(took * RETENTION_YIELD)
        return deleted

    async def size_bytes(self) -> int:
        """Bytes the database uses."""
        return await self._reader.run(lambda conn: conn.size_bytes())
