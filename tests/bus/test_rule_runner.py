"""The pieces of the rule runner: shared reads of the log's end, and a statement evaluated over a chunk."""

import asyncio
import json
from pathlib import Path

import jsonschema

from tests.bus.services import run
from tests.fakes import InMemoryLog
from thingport.bus.envelope import rule_delivery
from thingport.bus.log_tail import FRESH_S, Chunk, LogTail, NotJson
from thingport.bus.rule_runner import evaluate
from thingport.core.model import StoredMessage
from thingport.core.rule_sql import compile_statement


def message(seq: int, payload: bytes, topic: str = "/pk/dev/user/data") -> StoredMessage:
    return StoredMessage(7000 + seq, 1, "pk", "dev", "aliyun", topic, payload, 1000 + seq, "custom", None, None,
                         "pk_dev", seq)


class CountingLog(InMemoryLog):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def read_after(self, seq: int, limit: int) -> list[StoredMessage]:
        self.reads += 1
        await asyncio.sleep(0.001)  # a read takes a while: readers arriving meanwhile share it
        return await super().read_after(seq, limit)


def test_readers_at_one_cursor_share_one_read_and_one_decode() -> None:
    async def main() -> None:
        log = CountingLog()
        await log.append_many(tuple(message(i, b'{"t": %d}' % i) for i in range(1, 6)))
        tail = LogTail(log, chunk=3)
        first, second = await asyncio.gather(tail.read(0), tail.read(0))
        assert first is second and log.reads == 1
        assert [m.seq for m in first.messages] == [1, 2, 3] and first.cursor == 3
        assert first.document(0) is second.document(0)  # decoded once
        assert await tail.read(0) is first and log.reads == 1  # a full chunk is final: handed out again
        rest = await tail.read(3)
        assert [m.seq for m in rest.messages] == [4, 5] and log.reads == 2
        await asyncio.sleep(FRESH_S * 1.5)  # a chunk that was not full is handed out only while it is fresh
        await log.append_many((message(6, b"{}"),))
        assert [m.seq for m in (await tail.read(3)).messages] == [4, 5, 6] and log.reads == 3
        assert (await tail.read(6)).messages == [] and (await tail.read(6)).cursor == 6
        assert log.reads == 5  # an empty read is never kept

    run(main())


def test_a_statement_over_a_chunk_emits_counts_and_says_why_it_skipped() -> None:
    messages = [message(1, b'{"t": 40}'), message(2, b'{"t": 20}'), message(3, b'{"u": 1}'),
                message(4, b"\x01\x02"), message(5, b'{"t": 50}', topic="/pk/dev/user/other"),
                message(6, b'{"t": "hot"}'), message(7, b'{"t": 39.5}\x00')]
    chunk = Chunk(messages, 0)
    statement = compile_statement('SELECT t, deviceName() AS dn FROM "/pk/+/user/data" WHERE t > 38')
    outcome = evaluate("hot", statement, chunk)
    assert [(m.seq, doc) for m, doc in outcome.outputs] == [(1, {"t": 40, "dn": "dev"}), (7, {"t": 39.5, "dn": "dev"})]
    assert (outcome.matched, outcome.failed, outcome.cursor) == (2, 3, 7)
    assert outcome.error == "seq 6 (messageId 7006, pk/dev): > cannot compare a string with a number"
    try:
        chunk.document(3)
    except NotJson as exc:
        assert str(exc) == "the payload is not JSON"
    else:
        raise AssertionError("a binary payload decoded")
    everything = evaluate("all", compile_statement('SELECT * FROM "#"'), chunk)
    assert everything.matched == 6 and everything.failed == 1  # the binary one


def test_arithmetic_that_overflows_fails_that_message_only() -> None:
    chunk = Chunk([message(1, b'{"t": 1e308}'), message(2, b'{"t": 2}')], 0)
    outcome = evaluate("big", compile_statement('SELECT floor(t * 10) AS x FROM "#"'), chunk)
    assert [doc for _, doc in outcome.outputs] == [{"x": 20}]
    assert outcome.failed == 1 and outcome.error is not None and outcome.error.startswith("seq 1 ")


def test_a_rule_delivery_carries_the_document_the_rule_and_its_own_dedup_id() -> None:
    delivered = rule_delivery(message(3, b'{"t": 40}'), "hot", {"t": 40, "dn": "dev"})
    assert delivered.dedup == "7003:hot" and delivered.kind == "raw" and delivered.route(".") == "pk.pk_dev.raw"
    envelope = json.loads(delivered.body)
    jsonschema.validate(envelope, json.loads((Path(__file__).parents[2] / "docs" / "envelope.schema.json").read_text()))
    assert envelope["payload"] == {"t": 40, "dn": "dev"} and envelope["rule"] == "hot"
    assert envelope["messageId"] == 7003 and envelope["seq"] == 3 and envelope["payloadEncoding"] == "json"
