"""Rules as stored, on both engines: created whole or not at all, their sink credentials sealed, their cursor
and counts moved together in one write, and retention keeping what a rule has yet to evaluate."""

import asyncio
import sqlite3
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.store.test_sql_stores import run
from thingport.bus.forwarder import CommitSignal, Forwarder
from thingport.bus.rule_runner import RuleRunner
from thingport.core.errors import Conflict, NotFound, ParamError
from thingport.core.model import ForwardAction, StoredMessage
from thingport.manage.service import Management

SECRET = "whsec_c2VjcmV0LXRoYXQtbXVzdC1ub3QtbGVhaw=="
WEBHOOK = {"kind": "forward", "sink": "webhook", "options": {"url": "http://127.0.0.1:9/h", "secret": SECRET}}
STATEMENT = 'SELECT t FROM "/pk01/+/user/data" WHERE t > 1'


def message(seq: int, t: int) -> StoredMessage:
    return StoredMessage(9000 + seq, 1, "pk01", "dev", "aliyun", "/pk01/dev/user/data", b'{"t": %d}' % t,
                         1000 + seq, "custom", None, None, "pk01_dev")


def test_a_rule_is_stored_with_its_actions_sealed_and_managed_by_name(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        created = await m.create_rule("hot", STATEMENT, [WEBHOOK], check=False)
        assert created.actions == (ForwardAction("webhook", WEBHOOK["options"]),)
        assert (created.enabled, created.matched, created.failed, created.state) == (True, 0, 0, "running")
        with pytest.raises(Conflict, match="rule hot already exists"):
            await m.create_rule("hot", STATEMENT, [WEBHOOK], check=False)
        paused, backlog = await m.set_rule_enabled("hot", False)
        assert not paused.enabled and backlog == 0
        assert [r.name for r, _ in await m.list_rules()] == ["hot"]
        await m.delete_rule("hot")
        for missing in (m.rule("hot"), m.delete_rule("hot"), m.set_rule_enabled("hot", True)):
            with pytest.raises(NotFound, match="rule hot does not exist"):
                await missing
        await m.create_rule("hot", STATEMENT, [WEBHOOK], enabled=False, check=False)
        assert not (await m.rule("hot"))[0].enabled

    run(data_dir, act, engine)
    for path in data_dir.glob("thingport.db*"):  # SQLite: the secret is sealed (PostgreSQL: the same code)
        assert SECRET.encode() not in path.read_bytes()


@pytest.mark.parametrize(("statement", "actions", "error"), [
    ('SELECT t FROM "/pk/+/x" WHERE', [WEBHOOK], "the statement ends too early at line 1, column 30"),
    ("SELECT t FROM\n  WHERE t > 1", [WEBHOOK], "unexpected WHERE at line 2, column 3"),
    (STATEMENT, [], "a rule needs at least one action"),
    (STATEMENT, [{"kind": "teleport"}], "action 1: kind must be one of forward, alarm, not 'teleport'"),
    (STATEMENT, [{"kind": "alarm", "severity": "major"}], "action 1: an alarm name is 1-64 letters"),
    (STATEMENT, [{"kind": "alarm", "name": "hot", "severity": "awful"}], "action 1: severity must be one of"),
    (STATEMENT, [{"kind": "alarm", "name": "hot", "sink": "webhook"}], "action 1: unknown field(s) sink"),
    (STATEMENT, [WEBHOOK, {"kind": "forward", "sink": "kafka"}], "action 2: sink must be one of"),
    (STATEMENT, [{"kind": "forward", "sink": "http"}], "action 1: a rule forwards to a push sink"),
    (STATEMENT, [{"kind": "forward", "sink": "webhook", "options": {"url": "http://x/"}}],
     "action 1: sink options: webhook sink: option 'secret' is required"),
    (STATEMENT, [{"kind": "forward", "sink": "webhook", "options": {}, "extra": 1}], "unknown field"),
])
def test_a_refused_rule_says_why_and_leaves_nothing(data_dir: Path, statement: str, actions: list, error: str) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        with pytest.raises(ParamError, match=error.replace("(", r"\(").replace(")", r"\)")):
            await m.create_rule("r", statement, actions, check=False)
        assert await m.list_rules() == []

    run(data_dir, act)


def test_cursor_and_counts_move_together_and_never_back(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        rule = await m.create_rule("hot", STATEMENT, [WEBHOOK], check=False, from_start=True)
        assert rule.cursor == 0
        log = stores.log
        await log.save_rule_progress(rule.id, 10, 3, 1, "seq 7: the payload has no t", 1234)
        await log.save_rule_progress(rule.id, 20, 2, 0, None, None)
        await log.save_rule_progress(rule.id, 15, 5, 5, "stale", 99)  # an older stretch: nothing changes
        saved, _ = await m.rule("hot")
        assert (saved.cursor, saved.matched, saved.failed) == (20, 5, 1)
        assert (saved.last_error, saved.last_error_ms) == ("seq 7: the payload has no t", 1234)
        await stores.registry.set_rule_state(rule.id, "failing", 555, "action 1 (forward to webhook): down")
        failing, _ = await m.rule("hot")
        assert (failing.state, failing.state_since_ms, failing.sink_error) == (
            "failing", 555, "action 1 (forward to webhook): down")

    run(data_dir, act, engine)


def test_retention_keeps_what_a_rule_has_yet_to_evaluate(data_dir: Path) -> None:
    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_product("p", "pk01")
        await stores.log.append_many(tuple(message(i, i) for i in range(1, 6)))
        rule = await m.create_rule("slow", STATEMENT, [WEBHOOK], enabled=False, check=False, from_start=True)
        await stores.log.save_rule_progress(rule.id, 2, 0, 0, None, None)
        rules = RuleRunner(stores.log, stores.registry, CollectorRegistry(), CommitSignal())
        forwarder = Forwarder(stores.log, stores.registry, CollectorRegistry(), CommitSignal(), retention_days=0,
                              held=rules.held)
        await asyncio.sleep(0.01)
        await forwarder.apply_retention()
        kept = [msg.seq for msg in await stores.log.read_after(0, 100)]
        assert kept == [3, 4, 5]  # the rule is done with 1 and 2 only
        await m.delete_rule("slow")
        await forwarder.apply_retention()
        assert [msg.seq for msg in await stores.log.read_after(0, 100)] == [5]  # the newest always stays

    run(data_dir, act)


def test_sqlite_of_schema_7_gains_rules_on_open(data_dir: Path) -> None:
    from thingport.store.keys import KeyRing
    from thingport.store.sqlite_db import MIGRATIONS, connect, db_path

    KeyRing(data_dir)
    conn = connect(db_path(data_dir))
    for number, script in enumerate(MIGRATIONS[:7], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version={number}")
    conn.close()

    async def act(m: Management, stores):  # type: ignore[no-untyped-def]
        await m.create_rule("hot", STATEMENT, [WEBHOOK], check=False)
        return [r.name for r, _ in await m.list_rules()]

    assert run(data_dir, act) == ["hot"]
    with sqlite3.connect(db_path(data_dir)) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_postgresql_gains_rules_by_db_upgrade_and_loses_them_by_downgrade() -> None:
    import psycopg

    from tests.postgres import fresh_database
    from thingport.store import pg_schema

    url = fresh_database(migrate=False)
    assert pg_schema.upgrade(url, "0006")[1] == "0006"
    assert pg_schema.upgrade(url, "0007") == ("0006", "0007")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM rules").fetchone()[0] == 0
    assert pg_schema.downgrade(url, "0006") == ("0007", "0006")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('rules')").fetchone()[0] is None
