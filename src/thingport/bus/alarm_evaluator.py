"""The alarm evaluator: judges the products' alarm definitions against the durable log, off the device's
path, from its own cursor, and writes every alarm change to the log as an ``alarm`` message.

It runs where its lease is held (one process of all workers and instances, as the forwarder does), so the
alarms have a single judge. Each batch of log messages is judged in order; the verdicts, the pending
durations and the new cursor commit in one transaction (store/sql_alarms.py), so after a crash the same
messages are judged again from the same state. Caught up, it ticks on its clock: a condition that has held
for its duration raises, and a device silent longer than its product's presence timeout raises its
``silent`` alarms. Its own ``alarm`` messages (and ``status`` ones) are not judged.

Then it empties the outbox of alarm changes (its own, and the operators' acknowledgements from any process)
into the log, in the order they were made: a change is marked emitted after its message committed, so a
crash in between writes it again (at least once; the payload's ``eventId`` tells duplicates apart).
"""

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from prometheus_client import CollectorRegistry, Gauge

from thingport.bus.consumer import CommitSignal, QuietSaves
from thingport.core.alarms import AlarmDefinition, AlarmEvent, Track, step, tick
from thingport.core.message_ids import MessageIdGenerator
from thingport.core.model import Product, StoredMessage
from thingport.core.ports import MessageLog
from thingport.store.sql_alarms import Clear, EvaluatorState, Raise, Reported
from thingport.tasks import cancel_and_wait

log = logging.getLogger(__name__)

BATCH = 2000  # log messages judged per transaction
# A batch that changed nothing stores its cursor at most this often: judging it again after a crash changes
# nothing either, and on SQLite every write of the evaluator waits for the log writer's file lock (and makes it
# wait), so following ingest batch by batch must not mean a write per batch.
CURSOR_EVERY_S = 1.0
LINGER_S = 0.05  # an evaluator following ingest reads at most one short stretch this often (as rules do)
EMIT_BATCH = 500
ALARM_TOPIC = "$alarm"
ALARM_KIND = "alarm"
DIALECT = "thingport"
_SKIPPED_KINDS = frozenset({ALARM_KIND, "status"})
_encode = msgspec.json.encode


class AlarmStore(Protocol):
    """What the evaluator needs of the alarm store (store/sql_alarms.py)."""

    async def definitions(self, product_key: str | None = None) -> list[AlarmDefinition]: ...

    async def evaluator_state(self) -> EvaluatorState: ...

    async def evaluator_cursor(self) -> int: ...

    async def apply(self, raises: list[Raise], clears: list[Clear], pending: dict[tuple[int, int], int | None],
                    cursor: int | None) -> None: ...

    async def unemitted(self, limit: int) -> list[AlarmEvent]: ...

    async def mark_emitted(self, event_ids: list[int]) -> None: ...

    async def reported(self, message_ids: list[int]) -> dict[int, list[Reported]]: ...

    async def fell_silent(self, product_key: str, after_ms: int, until_ms: int) -> list[tuple[int, str, str, int]]: ...

    async def open_counts(self) -> list[tuple[str, str, str, int]]: ...


class Products(Protocol):
    async def list_products(self) -> list[Product]: ...


Identity = tuple[str, str, str]  # (product key, device name, IoTDA id)


class _Verdicts:
    """One round's raises, clears and pending changes, written together."""

    def __init__(self) -> None:
        self.raises: list[Raise] = []
        self.clears: list[Clear] = []
        self.pending: dict[tuple[int, int], int | None] = {}

    def __bool__(self) -> bool:
        return bool(self.raises or self.clears or self.pending)


class AlarmEvaluator:
    def __init__(self, log: MessageLog, store: AlarmStore, products: Products, ids: MessageIdGenerator,
                 clock: Callable[[], float], signal: CommitSignal, metrics: CollectorRegistry,
                 default_presence_timeout_s: float, tick_s: float = 1.0) -> None:
        self._log = log
        self._store = store
        self._products = products
        self._ids = ids
        self._clock = clock
        self._signal = signal
        self._default_timeout_ms = int(default_presence_timeout_s * 1000)
        self._tick_s = tick_s
        self._task: asyncio.Task[None] | None = None
        self.active = Gauge("thingport_alarms", "Open alarms by product, severity and state (active, acknowledged)",
                            ["product", "severity", "state"], registry=metrics)
        self._counted: set[tuple[str, str, str]] = set()
        # judged state, rebuilt from the store at every (re)start; a device with no open alarm and no
        # duration under way costs nothing here (a fleet of idle devices is not held in memory)
        self._definitions: dict[str, list[AlarmDefinition]] = {}
        self._by_id: dict[int, AlarmDefinition] = {}
        self._open: set[tuple[int, str]] = set()  # (device, alarm name)
        self._pending: dict[tuple[int, int], int] = {}  # (device, definition) -> since when the condition holds
        self._values: dict[tuple[int, int], Any] = {}  # the last value a pending condition saw
        self._devices: dict[int, Identity] = {}  # of the devices with a duration under way
        self._silence_looked: dict[str, tuple[tuple[int, ...], int]] = {}  # product -> (definitions, last seen up to)
        self.cursor = 0
        self._saves = QuietSaves(CURSOR_EVERY_S)  # a batch that changed nothing: its cursor, throttled

    async def held(self) -> list[int]:
        """The stored cursor: retention keeps what the evaluator has yet to judge."""
        return [await self._store.evaluator_cursor()]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alarm-evaluator")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for labels in self._counted:
            self.active.remove(*labels)
        self._counted.clear()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _run(self) -> None:
        while True:
            try:
                await self._resume()
                while True:
                    armed = self._signal.armed()
                    judged = await self.judge_next()
                    caught_up = not judged
                    if caught_up:
                        await self.tick()
                    await self.emit()
                    if caught_up:
                        await self._signal.wait(self._tick_s, armed)
                    elif judged < BATCH:  # following ingest: let a stretch gather (a batch's cost is mostly fixed)
                        await asyncio.sleep(LINGER_S)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alarm evaluator failed; resuming from its stored state in 1 s")
                await asyncio.sleep(1.0)

    async def _resume(self) -> None:
        state = await self._store.evaluator_state()
        self.cursor = state.cursor
        self._saves.drop()
        self._open = set(state.open)
        self._pending = dict(state.pending)
        self._values.clear()
        self._devices = dict(state.devices)
        self._silence_looked.clear()
        await self._load_definitions()

    async def _load_definitions(self) -> None:
        by_product: dict[str, list[AlarmDefinition]] = {}
        for d in await self._store.definitions():
            by_product.setdefault(d.product_key, []).append(d)
        self._definitions = by_product
        self._by_id = {d.id: d for ds in by_product.values() for d in ds}

    def _track(self, device_id: int, d: AlarmDefinition) -> Track:
        """The device's state under ``d``, from the open alarms and the durations under way."""
        return Track((device_id, d.name) in self._open, self._pending.get((device_id, d.id)))

    def _raise(self, verdicts: _Verdicts, device_id: int, identity: Identity, d: AlarmDefinition, at_ms: int,
               details: dict[str, Any]) -> None:
        pk, dn, iot_id = identity
        verdicts.raises.append(Raise(device_id, pk, dn, iot_id, d.name, d.severity, "definition",
                                     {"condition": d.rule.raise_when.text(), **details}, at_ms))
        self._open.add((device_id, d.name))

    def _clear(self, verdicts: _Verdicts, device_id: int, d: AlarmDefinition, at_ms: int) -> None:
        verdicts.clears.append(Clear(device_id, d.name, at_ms))
        self._open.discard((device_id, d.name))

    def _set_pending(self, verdicts: _Verdicts, key: tuple[int, int], since: int | None) -> None:
        if self._pending.get(key) != since:
            verdicts.pending[key] = since
            if since is None:
                self._pending.pop(key, None)
                self._values.pop(key, None)
            else:
                self._pending[key] = since

    def _judge(self, verdicts: _Verdicts, m: StoredMessage, reported: list[Reported]) -> None:
        """One message from a device: it is not silent; and the values it reported (its own, or a gateway's
        sub-devices') move each definition on their property."""
        for d in self._definitions.get(m.product_key, ()):
            if d.rule.silent:
                track = self._track(m.device_id, d)
                if track.open:
                    track.open = False
                    self._clear(verdicts, m.device_id, d, m.received_ms)
        for r in reported:
            definitions = self._definitions.get(r.product_key)
            if not definitions:
                continue
            identity = (r.product_key, r.device_name, r.iot_id)
            for d in definitions:
                prop = d.rule.raise_when.property
                if d.rule.silent or prop not in r.values:
                    continue
                track = self._track(r.device_id, d)
                value = r.values[prop]
                verdict = step(d.rule, track, value, r.time_ms)
                if verdict == "raise":
                    self._raise(verdicts, r.device_id, identity, d, r.time_ms, {"value": value})
                elif verdict == "clear":
                    self._clear(verdicts, r.device_id, d, r.time_ms)
                self._set_pending(verdicts, (r.device_id, d.id), track.pending_since_ms)
                if track.pending_since_ms is not None:
                    self._values[(r.device_id, d.id)] = value
                    self._devices[r.device_id] = identity

    async def judge_next(self) -> int:
        """Judge the next batch of the log; how many messages it held (0: caught up). With no definition
        at all there is nothing to judge: the cursor moves to the log's end unread (a store that grew while
        the evaluator was down, or one that never had alarms, is not read through message by message)."""
        await self._load_definitions()  # one just defined judges what is read from now on
        if not self._definitions:
            end = await self._log.last_seq()
            await self._load_definitions()  # again: one stored since the first look judges what follows ``end``
            if not self._definitions:
                return await self._skip_to(end)
        messages = await self._log.read_after(self.cursor, BATCH)
        if not messages:
            await self._saves.flush()  # caught up: the quiet stretches' cursor is stored now
            return 0
        verdicts = _Verdicts()
        judged = [m for m in messages if m.kind not in _SKIPPED_KINDS]
        reported = await self._store.reported([m.message_id for m in judged])
        for m in judged:
            self._judge(verdicts, m, reported.get(m.message_id, []))
        await self._advance(messages[-1].seq, verdicts)
        return len(messages)

    async def _skip_to(self, end: int) -> int:
        """Nothing to judge: move past the log up to ``end``; how many messages that was (0: caught up)."""
        if end <= self.cursor:
            await self._saves.flush()
            return 0
        (skipped,) = await self._log.backlogs([self.cursor])
        await self._advance(end, _Verdicts())
        return skipped

    async def _advance(self, cursor: int, verdicts: _Verdicts) -> None:
        """The cursor moves on: stored with the verdicts at once, or (none) as a quiet save."""
        await self._saves.done(functools.partial(self._store.apply, verdicts.raises, verdicts.clears,
                                                 verdicts.pending, cursor), news=bool(verdicts))
        self.cursor = cursor

    async def tick(self) -> None:
        """Caught up with the log: durations that ran out, and silence, raise now."""
        await self._load_definitions()
        state = await self._store.evaluator_state()  # alarms opened or cleared elsewhere (the service, a deletion)
        self._open = set(state.open)
        now = self._now_ms()
        verdicts = _Verdicts()
        for key in list(self._pending):
            d = self._by_id.get(key[1])
            if d is None:  # its definition was deleted (with its pending rows)
                self._pending.pop(key)
                self._values.pop(key, None)
                continue
            identity = self._devices.get(key[0])
            if identity is not None and tick(d.rule, self._track(key[0], d), now):
                self._raise(verdicts, key[0], identity, d, now, {"value": self._values.get(key),
                                                                 "durationSeconds": d.rule.duration_ms / 1000})
                self._set_pending(verdicts, key, None)
        pending_devices = {device_id for device_id, _ in self._pending}
        self._devices = {k: v for k, v in self._devices.items() if k in pending_devices}
        await self._silence(verdicts, now)
        if verdicts:
            await self._store.apply(verdicts.raises, verdicts.clears, verdicts.pending, None)
        await self._count()

    async def _silence(self, verdicts: _Verdicts, now: int) -> None:
        silent = {pk: [d for d in ds if d.rule.silent] for pk, ds in self._definitions.items()}
        silent = {pk: ds for pk, ds in silent.items() if ds}
        if not silent:
            return
        timeouts = {p.product_key: p.presence_timeout_s for p in await self._products.list_products()}
        for pk, definitions in silent.items():
            seconds = timeouts.get(pk)
            timeout_ms = int(seconds * 1000) if seconds else self._default_timeout_ms
            # the devices that fell silent since the last look (all of them, the first time or when the
            # product's silent definitions changed)
            ids = tuple(d.id for d in definitions)
            looked = self._silence_looked.get(pk)
            after = looked[1] if looked is not None and looked[0] == ids else -1
            until = now - timeout_ms - 1
            if until <= after:
                continue
            for device_id, dn, iot_id, last_seen in await self._store.fell_silent(pk, after, until):
                for d in definitions:
                    if (device_id, d.name) not in self._open:
                        self._raise(verdicts, device_id, (pk, dn, iot_id), d, now, {
                            "lastSeen": last_seen, "presenceTimeoutSeconds": timeout_ms / 1000})
            self._silence_looked[pk] = (ids, until)

    async def emit(self) -> int:
        """Write the alarm changes not yet in the log; how many."""
        written = 0
        while events := await self._store.unemitted(EMIT_BATCH):
            now = self._now_ms()
            messages = tuple(
                StoredMessage(self._ids.next_id(), e.alarm.device_id, e.alarm.product_key, e.alarm.device_name,
                              DIALECT, ALARM_TOPIC, _encode(e.document()), now, ALARM_KIND, None, None,
                              e.alarm.iot_id)
                for e in events
            )
            await self._log.append_many(messages)
            await self._store.mark_emitted([e.id for e in events])
            written += len(events)
        return written

    async def _count(self) -> None:
        counted: set[tuple[str, str, str]] = set()
        for pk, severity, state, n in await self._store.open_counts():
            self.active.labels(pk, severity, state).set(n)
            counted.add((pk, severity, state))
        for labels in self._counted - counted:
            self.active.labels(*labels).set(0)
            counted.add(labels)
        self._counted = counted
