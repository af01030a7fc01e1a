"""The alarm store on both engines: definitions, one open alarm per device and name, acknowledging, the
outbox of changes, and the evaluator's verdicts committed with its cursor."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from thingport.core.errors import Conflict, NotFound, ParamError
from thingport.core.model import StoredMessage, ValuesAt
from thingport.manage.service import Management
from thingport.runtime.bootstrap import build
from thingport.settings import load_settings
from thingport.store.sql_alarms import Clear, Raise


def run(data_dir: Path, engine: dict, action: Any) -> Any:
    app = build(load_settings(data_dir=data_dir, **engine))

    async def main() -> Any:
        app.stores.log.start(asyncio.get_running_loop())
        return await action(app.management(), app.stores)

    try:
        return asyncio.run(main())
    finally:
        app.close()


def test_definitions_alarms_and_their_changes(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores: Any) -> None:
        await m.create_product("p", "pkAlarms001")
        await m.create_device("pkAlarms001", "dev-1")
        store = stores.alarms
        d = await m.alarms.define("pkAlarms001", "hot", "major", "t > 38", "t < 36", 60)
        assert (d.rule.duration_ms, d.rule.clear_when.text()) == (60_000, "t < 36")
        with pytest.raises(Conflict):
            await m.alarms.define("pkAlarms001", "hot", "minor", "t > 1")
        with pytest.raises(NotFound):
            await m.alarms.define("pkNothing01", "hot", "minor", "t > 1")
        with pytest.raises(ParamError):
            await m.alarms.define("pkAlarms001", "bad name!", "minor", "t > 1")
        assert [x.name for x in await m.alarms.definitions("pkAlarms001")] == ["hot"]

        # the service: one open alarm per name, raised again it is the same one
        first, new = await m.alarms.raise_alarm("pkAlarms001", "dev-1", "door", "warning", {"by": "rule r1"})
        again, new_again = await m.alarms.raise_alarm("pkAlarms001", "dev-1", "door", "critical")
        assert new and not new_again and again.id == first.id and again.details == {"by": "rule r1"}
        with pytest.raises(ParamError, match="severity"):
            await m.alarms.raise_alarm("pkAlarms001", "dev-1", "door", "awful")
        with pytest.raises(ParamError, match="details"):
            await m.alarms.raise_alarm("pkAlarms001", "dev-1", "big", "minor", {"x": "y" * 5000})
        acked = await m.alarms.acknowledge(first.id, "alice")
        assert (acked.state, acked.acknowledged_by) == ("acknowledged", "alice")
        with pytest.raises(Conflict, match="by alice"):
            await m.alarms.acknowledge(first.id, "bob")
        with pytest.raises(NotFound):
            await m.alarms.acknowledge(10**9, "bob")
        cleared = await m.alarms.clear_alarm("pkAlarms001", "dev-1", "door", "rule r1")
        assert cleared is not None and cleared.state == "cleared"
        assert await m.alarms.clear_alarm("pkAlarms001", "dev-1", "door") is None  # nothing open
        with pytest.raises(Conflict, match="cleared"):
            await m.alarms.acknowledge(first.id, "bob")
        second, new = await m.alarms.raise_alarm("pkAlarms001", "dev-1", "door", "minor")
        assert new and second.id != first.id

        # the evaluator's verdicts commit with its cursor; the outbox holds every change, in order
        device = await m.device("pkAlarms001", "dev-1")
        r = Raise(device.id, "pkAlarms001", "dev-1", device.device_id, "hot", "major", "definition", {"value": 39}, 5)
        await store.apply([r], [], {(device.id, d.id): None}, 42)
        await store.apply([r], [], {(device.id, d.id): 7}, 41)  # raised already; a cursor never goes back
        state = await store.evaluator_state()
        assert state.cursor == 42 and state.open == {(device.id, "door"), (device.id, "hot")}
        assert state.pending == {(device.id, d.id): 7} and state.devices[device.id][1] == "dev-1"
        await store.apply([], [Clear(device.id, "hot", 9)], {(device.id, d.id): None}, None)
        events = await store.unemitted(100)
        assert [(e.alarm.name, e.state) for e in events] == [
            ("door", "active"), ("door", "acknowledged"), ("door", "cleared"), ("door", "active"),
            ("hot", "active"), ("hot", "cleared")]
        assert events[1].document()["actor"] == "alice" and events[2].actor == "rule r1"
        await store.mark_emitted([e.id for e in events[:4]])
        assert [e.id for e in await store.unemitted(100)] == [e.id for e in events[4:]]

        listed = await m.alarms.alarms("pkAlarms001")
        assert [(a.name, a.state) for a in listed] == [("door", "active")]
        assert len(await m.alarms.alarms(states=["cleared"])) == 2
        assert await m.alarms.alarms(severity="critical") == []
        with pytest.raises(ParamError):
            await m.alarms.alarms(states=["gone"])
        history = await m.alarms.history("pkAlarms001", "dev-1")
        assert [(a["name"], [c["state"] for c in a["changes"]]) for a in history] == [
            ("hot", ["active", "cleared"]), ("door", ["active"]), ("door", ["active", "acknowledged", "cleared"])]
        assert await store.open_counts() == [("pkAlarms001", "minor", "active", 1)]

        # deleting a definition clears its open alarms; deleting the product takes definitions and alarms
        await store.apply([r], [], {}, None)
        assert await m.alarms.delete_definition("pkAlarms001", "hot", "bob") == 1
        with pytest.raises(NotFound):
            await m.alarms.delete_definition("pkAlarms001", "hot")
        assert [a.name for a in await m.alarms.alarms("pkAlarms001")] == ["door"]
        await m.alarms.define("pkAlarms001", "cold", "minor", "t < 0")
        await m.delete_product("pkAlarms001", force=True)
        assert await m.alarms.alarms(states=["active", "acknowledged", "cleared"]) == []
        assert await store.definitions() == [] and await store.unemitted(10) == []

    run(data_dir, engine, act)


def test_reported_values_come_from_history_and_the_device_counts_as_seen_only_by_its_own(
    data_dir: Path, engine: dict,
) -> None:
    async def act(m: Management, stores: Any) -> None:
        await m.create_product("p", "pkAlarms002")
        device = await m.create_device("pkAlarms002", "dev-1")
        report = StoredMessage(77, device.id, "pkAlarms002", "dev-1", "aliyun", "/t", b"{}", 1000,
                               "property_post", properties=(ValuesAt(900, {"t": 39}), ValuesAt(1000, {"t": 40})))
        alarm = StoredMessage(78, device.id, "pkAlarms002", "dev-1", "thingport", "$alarm", b"{}", 5000, "alarm")
        await stores.log.append_many((report, alarm))
        reported = await stores.alarms.reported([77, 78])
        assert [(r.time_ms, r.values, r.device_name) for r in reported[77]] == [
            (900, {"t": 39}, "dev-1"), (1000, {"t": 40}, "dev-1")]
        assert 78 not in reported
        assert [(s[1], s[3]) for s in await stores.alarms.fell_silent("pkAlarms002", -1, 1000)] == [("dev-1", 1000)]
        assert await stores.alarms.fell_silent("pkAlarms002", -1, 999) == []
        assert await stores.alarms.fell_silent("pkAlarms002", 1000, 10_000) == []  # the alarm (5000) is not the device

    run(data_dir, engine, act)


def test_the_evaluator_stores_an_idle_cursor_at_most_once_a_second_and_retention_keeps_what_it_has_not_judged(
        data_dir: Path, engine: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Following ingest with no definition must not mean a write per batch (on SQLite each waits for the log
    writer's lock); and retention, which keeps the log after the cursors it is given, is given this one."""
    from thingport.bus import alarm_evaluator

    monkeypatch.setattr(alarm_evaluator, "CURSOR_EVERY_S", 3600.0)  # "within the second", whatever the load
    app = build(load_settings(data_dir=data_dir, **engine))

    async def main() -> tuple[int, int, int, list[int]]:
        app.stores.log.start(asyncio.get_running_loop())
        m = app.management()
        await m.create_product("p", "pkAlarms003")
        device = await m.create_device("pkAlarms003", "dev-1")
        evaluator = app.evaluator
        evaluator.cursor = await app.stores.alarms.evaluator_cursor()

        async def report(message_id: int) -> int:
            await app.stores.log.append(StoredMessage(message_id, device.id, "pkAlarms003", "dev-1", "aliyun", "/t",
                                                      b"{}", 1000 + message_id))
            for _ in range(1000):  # PostgreSQL: readers wait for the cluster's older transactions (the horizon)
                if judged := await evaluator.judge_next():
                    break
                await asyncio.sleep(0.01)
            assert judged == 1
            return evaluator.cursor

        first = await report(1)  # the first batch stores its cursor
        stored_first = await app.stores.alarms.evaluator_cursor()
        second = await report(2)  # within CURSOR_EVERY_S: judged, its cursor not written
        held = await evaluator.held()
        assert await evaluator.judge_next() == 0  # caught up: now it is
        return first, stored_first, second, held, await app.stores.alarms.evaluator_cursor()

    try:
        first, stored_first, second, held, stored_caught_up = asyncio.run(main())
    finally:
        app.close()
    assert stored_first == first and second > first
    assert held == [first]  # what retention keeps the log after: the stored cursor, not the one in memory
    assert stored_caught_up == second


def test_an_evaluator_with_no_definition_moves_past_a_backlog_unread(data_dir: Path, engine: dict) -> None:
    """A store that grew while the evaluator was down (or never had alarms) is not read through: measured
    on a fleet of 10M messages, reading it took the core the devices are served on for minutes."""
    from thingport.bus.alarm_evaluator import BATCH

    app = build(load_settings(data_dir=data_dir, **engine))
    count = 3 * BATCH + 7

    async def main() -> tuple[int, int, int, int]:
        app.stores.log.start(asyncio.get_running_loop())
        m = app.management()
        await m.create_product("p", "pkAlarms004")
        device = await m.create_device("pkAlarms004", "dev-1")
        await app.stores.log.append_many(tuple(
            StoredMessage(n, device.id, "pkAlarms004", "dev-1", "aliyun", "/t", b"{}", 1000 + n)
            for n in range(1, count + 1)))
        evaluator = app.evaluator
        evaluator.cursor = await app.stores.alarms.evaluator_cursor()
        for _ in range(1000):  # PostgreSQL: readers wait for the cluster's older transactions (the horizon)
            if judged := await evaluator.judge_next():
                break
            await asyncio.sleep(0.01)
        return judged, evaluator.cursor, await app.stores.log.last_seq(), await evaluator.judge_next()

    try:
        judged, cursor, last, then = asyncio.run(main())
    finally:
        app.close()
    assert judged == count  # in one step, not BATCH at a time
    assert cursor == last and then == 0
