"""Alarm definitions, alarms and their changes, on either SQL engine.

Every change of an alarm (raised, acknowledged, cleared) is a row of ``alarm_events`` written in the same
transaction as the alarm itself: an outbox. The evaluator writes the rows not yet emitted to the log as
``alarm`` messages and marks them emitted afterwards, so a change made by any process (the CLI while the
server is down too) reaches subscriptions, at least once, each message naming its event id.
The evaluator's verdicts, its pending durations and its log cursor commit together (``apply``): after a crash
it judges the same messages again from the same state.
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from thingport.core.alarms import Alarm, AlarmDefinition, AlarmEvent, definition_from_row
from thingport.core.errors import Conflict, NotFound
from thingport.store.database import Database, IntegrityError
from thingport.store.executor import DbExecutor

_ALARM_COLUMNS = ("id, device_id, product_key, device_name, iot_id, name, severity, state, source, details,"
                  " raised_ms, acknowledged_ms, acknowledged_by, cleared_ms")
_DEFINITION_COLUMNS = "id, product_key, name, severity, condition, clear_condition, duration_ms, created_ms"
_INSERT_EVENT = "INSERT INTO alarm_events (alarm_id, state, at_ms, actor) VALUES (?, ?, ?, ?)"
_decode = msgspec.json.decode
_encode = msgspec.json.encode


def _alarm(row: Sequence[Any]) -> Alarm:
    return Alarm(*row[:9], _decode(row[9]), *row[10:])  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class Raise:
    """An alarm to open on a device (unless one of that name is open already)."""

    device_id: int
    product_key: str
    device_name: str
    iot_id: str
    name: str
    severity: str
    source: str
    details: dict[str, Any]
    at_ms: int


@dataclass(frozen=True, slots=True)
class Clear:
    """The open alarm ``name`` of a device to clear (nothing, if none is open)."""

    device_id: int
    name: str
    at_ms: int
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Reported:
    """Values a device reported for one time, as its history holds them."""

    device_id: int
    product_key: str
    device_name: str
    iot_id: str
    time_ms: int
    values: dict[str, Any]


@dataclass(frozen=True)
class EvaluatorState:
    """What the evaluator resumes from: its cursor, the open alarms (device, name), pending durations."""

    cursor: int
    open: set[tuple[int, str]]
    pending: dict[tuple[int, int], int]  # (device, definition) -> since
    devices: dict[int, tuple[str, str, str]]  # the pending ones' (product, name, IoTDA id)


def _open_alarm(conn: Database, device_id: int, name: str) -> Alarm | None:
    row = conn.execute(f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE device_id = ? AND name = ? AND state <> 'cleared'",
                       (device_id, name)).fetchone()
    return _alarm(row) if row else None


def _raise(conn: Database, r: Raise) -> tuple[Alarm, bool]:
    """The open alarm: the one there was, or a new one (True)."""
    existing = _open_alarm(conn, r.device_id, r.name)
    if existing is not None:
        return existing, False
    alarm_id = conn.execute(
        "INSERT INTO alarms (device_id, product_key, device_name, iot_id, name, severity, state, source, details,"
        " raised_ms) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?) RETURNING id",
        (r.device_id, r.product_key, r.device_name, r.iot_id, r.name, r.severity, r.source,
         _encode(r.details).decode(), r.at_ms),
    ).fetchone()[0]
    conn.execute(_INSERT_EVENT, (alarm_id, "active", r.at_ms, None))
    return Alarm(alarm_id, r.device_id, r.product_key, r.device_name, r.iot_id, r.name, r.severity, "active",
                 r.source, r.details, r.at_ms), True


def _clear(conn: Database, c: Clear) -> Alarm | None:
    existing = _open_alarm(conn, c.device_id, c.name)
    if existing is None:
        return None
    conn.execute("UPDATE alarms SET state = 'cleared', cleared_ms = ? WHERE id = ?", (c.at_ms, existing.id))
    conn.execute(_INSERT_EVENT, (existing.id, "cleared", c.at_ms, c.actor))
    return dataclasses.replace(existing, state="cleared", cleared_ms=c.at_ms)


class SqlAlarmStore:
    def __init__(self, executor: DbExecutor) -> None:
        self._db = executor

    # --- definitions ---

    async def define(self, product_key: str, name: str, severity: str, condition: str, clear_condition: str | None,
                     duration_ms: int, created_ms: int) -> AlarmDefinition:
        def q(conn: Database) -> tuple:
            with conn.transaction():
                if not conn.execute("SELECT 1 FROM products WHERE product_key = ?", (product_key,)).fetchone():
                    raise NotFound(f"product {product_key} does not exist")
                try:
                    conn.execute(
                        "INSERT INTO alarm_definitions (product_key, name, severity, condition, clear_condition,"
                        " duration_ms, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (product_key, name, severity, condition, clear_condition, duration_ms, created_ms),
                    )
                except IntegrityError:
                    raise Conflict(f"product {product_key} has an alarm definition {name} already") from None
                return conn.execute(f"SELECT {_DEFINITION_COLUMNS} FROM alarm_definitions"
                                    " WHERE product_key = ? AND name = ?", (product_key, name)).fetchone()

        return definition_from_row(await self._db.run(q))

    async def definitions(self, product_key: str | None = None) -> list[AlarmDefinition]:
        def q(conn: Database) -> list[tuple]:
            where, params = (" WHERE product_key = ?", (product_key,)) if product_key else ("", ())
            return conn.execute(f"SELECT {_DEFINITION_COLUMNS} FROM alarm_definitions{where}"
                                " ORDER BY product_key, name", params).fetchall()

        return [definition_from_row(row) for row in await self._db.run(q)]

    async def delete_definition(self, product_key: str, name: str, at_ms: int, actor: str | None) -> int:
        """Delete it and clear its open alarms (each a change like any other); how many were cleared."""
        def q(conn: Database) -> int:
            with conn.transaction():
                gone = conn.execute("DELETE FROM alarm_definitions WHERE product_key = ? AND name = ? RETURNING id",
                                    (product_key, name)).fetchone()
                if gone is None:
                    raise NotFound(f"product {product_key} has no alarm definition {name}")
                conn.execute("DELETE FROM alarm_pending WHERE definition_id = ?", (gone[0],))
                rows = conn.execute("SELECT device_id FROM alarms WHERE product_key = ? AND name = ?"
                                    " AND source = 'definition' AND state <> 'cleared'", (product_key, name)).fetchall()
                for (device_id,) in rows:
                    _clear(conn, Clear(device_id, name, at_ms, actor))
                return len(rows)

        return await self._db.run(q)

    # --- alarms ---

    async def raise_alarm(self, r: Raise) -> tuple[Alarm, bool]:
        """Open alarm ``r.name`` on the device, unless one is open (returned, with False)."""
        def q(conn: Database) -> tuple[Alarm, bool]:
            try:
                with conn.transaction():
                    return _raise(conn, r)
            except IntegrityError:  # a concurrent twin opened it first (alarms_open)
                pass
            existing = _open_alarm(conn, r.device_id, r.name)
            if existing is None:
                raise Conflict(f"alarm {r.name} of {r.product_key}/{r.device_name} changed meanwhile: try again")
            return existing, False

        return await self._db.run(q)

    async def clear_alarm(self, c: Clear) -> Alarm | None:
        def q(conn: Database) -> Alarm | None:
            with conn.transaction():
                return _clear(conn, c)

        return await self._db.run(q)

    async def acknowledge(self, alarm_id: int, actor: str, at_ms: int) -> Alarm:
        def q(conn: Database) -> Alarm:
            with conn.transaction():
                done = conn.execute(
                    "UPDATE alarms SET state = 'acknowledged', acknowledged_ms = ?, acknowledged_by = ?"
                    " WHERE id = ? AND state = 'active'", (at_ms, actor, alarm_id)).rowcount
                row = conn.execute(f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
                if row is None:
                    raise NotFound(f"alarm {alarm_id} does not exist")
                alarm = _alarm(row)
                if not done:
                    if alarm.state == "acknowledged":
                        raise Conflict(f"alarm {alarm_id} was acknowledged already, by {alarm.acknowledged_by}")
                    raise Conflict(f"alarm {alarm_id} is cleared: there is nothing to acknowledge")
                conn.execute(_INSERT_EVENT, (alarm_id, "acknowledged", at_ms, actor))
                return alarm

        return await self._db.run(q)

    async def get(self, alarm_id: int) -> Alarm | None:
        def q(conn: Database) -> tuple | None:
            return conn.execute(f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE id = ?", (alarm_id,)).fetchone()

        row = await self._db.run(q)
        return _alarm(row) if row else None

    async def list_alarms(self, product_key: str | None, severity: str | None, states: Sequence[str],
                          device_id: int | None = None, before_id: int | None = None,
                          limit: int = 100) -> list[Alarm]:
        """Newest first; ``before_id``: the next page."""
        where, params = [], []
        for column, value in (("product_key", product_key), ("severity", severity), ("device_id", device_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(states)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        sql = (f"SELECT {_ALARM_COLUMNS} FROM alarms{' WHERE ' + ' AND '.join(where) if where else ''}"
               " ORDER BY id DESC LIMIT ?")

        def q(conn: Database) -> list[tuple]:
            return conn.execute(sql, (*params, limit)).fetchall()

        return [_alarm(row) for row in await self._db.run(q)]

    async def events(self, alarm_ids: Sequence[int]) -> dict[int, list[tuple[str, int, str | None]]]:
        """Each alarm's changes, oldest first: (state, at, actor)."""
        if not alarm_ids:
            return {}

        def q(conn: Database) -> list[tuple]:
            return conn.select_in("SELECT alarm_id, state, at_ms, actor FROM alarm_events WHERE alarm_id {}"
                                  " ORDER BY id", (), list(alarm_ids))

        found: dict[int, list[tuple[str, int, str | None]]] = {}
        for alarm_id, state, at_ms, actor in await self._db.run(q):
            found.setdefault(alarm_id, []).append((state, at_ms, actor))
        return found

    async def open_counts(self) -> list[tuple[str, str, str, int]]:
        """(product key, severity, state, alarms) of the open (active or acknowledged) alarms."""
        def q(conn: Database) -> list[tuple]:
            return conn.execute("SELECT product_key, severity, state, count(*) FROM alarms WHERE state <> 'cleared'"
                                " GROUP BY product_key, severity, state ORDER BY product_key, severity, state"
                                ).fetchall()

        return [tuple(row) for row in await self._db.run(q)]

    # --- the evaluator ---

    async def evaluator_cursor(self) -> int:
        """The last log seq the evaluator has judged, as stored: what retention keeps the log after."""
        def q(conn: Database) -> int:
            return int(conn.execute("SELECT cursor FROM alarm_cursor WHERE id = 1").fetchone()[0])

        return await self._db.run(q)

    async def evaluator_state(self) -> EvaluatorState:
        def q(conn: Database) -> EvaluatorState:
            cursor = conn.execute("SELECT cursor FROM alarm_cursor WHERE id = 1").fetchone()[0]
            opened = conn.execute("SELECT device_id, name FROM alarms WHERE state <> 'cleared'").fetchall()
            pending = conn.execute(
                "SELECT p.device_id, p.definition_id, p.since_ms, d.product_key, d.device_name, d.device_id"
                " FROM alarm_pending p JOIN devices d ON d.id = p.device_id").fetchall()
            return EvaluatorState(cursor, {(d, n) for d, n in opened}, {(d, i): s for d, i, s, *_ in pending},
                                  {d: (pk, dn, iot) for d, _, _, pk, dn, iot in pending})

        return await self._db.run(q)

    async def apply(self, raises: Sequence[Raise], clears: Sequence[Clear], pending: dict[tuple[int, int], int | None],
                    cursor: int | None) -> None:
        """The evaluator's verdicts on a batch, its pending durations (None: no longer pending) and its new
        cursor, in one transaction."""
        def q(conn: Database) -> None:
            with conn.transaction():
                for c in clears:
                    _clear(conn, c)
                for r in raises:
                    _raise(conn, r)
                for (device_id, definition_id), since in pending.items():
                    conn.execute("DELETE FROM alarm_pending WHERE device_id = ? AND definition_id = ?",
                                 (device_id, definition_id))
                    if since is not None:
                        conn.execute("INSERT INTO alarm_pending (device_id, definition_id, since_ms) VALUES (?, ?, ?)",
                                     (device_id, definition_id, since))
                if cursor is not None:
                    conn.execute("UPDATE alarm_cursor SET cursor = ? WHERE id = 1 AND cursor < ?", (cursor, cursor))

        await self._db.run(q)

    async def unemitted(self, limit: int) -> list[AlarmEvent]:
        """Changes not yet written to the log, oldest first."""
        def q(conn: Database) -> list[tuple]:
            return conn.execute(
                f"SELECT e.id, e.state, e.at_ms, e.actor, {', '.join('a.' + c for c in _ALARM_COLUMNS.split(', '))}"
                " FROM alarm_events e JOIN alarms a ON a.id = e.alarm_id WHERE e.emitted = 0 ORDER BY e.id LIMIT ?",
                (limit,)).fetchall()

        return [AlarmEvent(row[0], _alarm(row[4:]), row[1], row[2], row[3]) for row in await self._db.run(q)]

    async def mark_emitted(self, event_ids: Sequence[int]) -> None:
        def q(conn: Database) -> None:
            with conn.transaction():
                conn.executemany("UPDATE alarm_events SET emitted = 1 WHERE id = ?", [(i,) for i in event_ids])

        await self._db.run(q)

    async def reported(self, message_ids: Sequence[int]) -> dict[int, list[Reported]]:
        """The property values the thing model accepted from each message (its history rows: a gateway's
        report holds its sub-devices' values too), each message's oldest first."""
        if not message_ids:
            return {}

        def q(conn: Database) -> list[tuple]:
            return conn.select_in(
                "SELECT h.message_id, h.device_id, d.product_key, d.device_name, d.device_id, h.time_ms, h.samples"
                " FROM history h JOIN devices d ON d.id = h.device_id WHERE h.message_id {}"
                " ORDER BY h.message_id, h.time_ms", (), list(message_ids))

        found: dict[int, list[Reported]] = {}
        for message_id, device_id, pk, dn, iot_id, time_ms, samples in await self._db.run(q):
            found.setdefault(message_id, []).append(Reported(device_id, pk, dn, iot_id, time_ms, _decode(samples)))
        return found

    async def fell_silent(self, product_key: str, after_ms: int, until_ms: int) -> list[tuple[int, str, str, int]]:
        """(device id, name, IoTDA id, last seen) of the product's devices last seen after ``after_ms`` and
        up to ``until_ms``: those that fell silent in that time (a device never seen is not silent)."""
        def q(conn: Database) -> list[tuple]:
            return conn.execute("SELECT id, device_name, device_id, last_seen_ms FROM devices WHERE product_key = ?"
                                " AND last_seen_ms > ? AND last_seen_ms <= ?", (product_key, after_ms, until_ms)
                                ).fetchall()

        return [tuple(row) for row in await self._db.run(q)]
