"""The one subscription reader behind the forwarder, pulls and the event stream: what it keeps, and where
its cursor stops."""

import asyncio

from thingport.bus.reader import SubscriptionReader
from thingport.core.model import StoredMessage, Subscription


class ListLog:
    """The log's ``read_after``, over a list (the reader uses nothing else)."""

    def __init__(self, messages: list[StoredMessage]) -> None:
        self.messages = messages
        self.reads = 0

    async def read_after(self, seq: int, limit: int) -> list[StoredMessage]:
        self.reads += 1
        return [m for m in self.messages if m.seq > seq][:limit]


def message(seq: int, product_key: str = "pk", topic: str = "/pk/dev/user/a") -> StoredMessage:
    return StoredMessage(seq, 1, product_key, "dev", "aliyun", topic, b"{}", 0, seq=seq)


def subscription(topic_filter: str | None = None) -> Subscription:
    return Subscription(1, "s", ("pk",), ("raw",), topic_filter, "http", {}, 0, True, 0)


def test_a_read_skips_unwanted_messages_and_its_cursor_passes_them() -> None:
    log = ListLog([message(1, "other"), message(2), message(3, topic="/pk/dev/user/b"), message(4, "other")])
    read = asyncio.run(SubscriptionReader(log, subscription("/pk/+/user/a")).read(0))  # type: ignore[arg-type]
    assert [m.seq for m in read.messages] == [2]
    assert (read.cursor, read.scanned) == (4, 4)  # nothing of 1-4 is read again


def test_a_limited_read_stops_at_the_last_message_it_keeps() -> None:
    log = ListLog([message(seq) for seq in range(1, 11)])
    read = asyncio.run(SubscriptionReader(log, subscription()).read(0, limit=3))  # type: ignore[arg-type]
    assert [m.seq for m in read.messages] == [1, 2, 3] and read.cursor == 3


def test_collect_reads_on_across_chunks_until_it_has_enough_or_the_log_ends() -> None:
    log = ListLog([message(seq, "pk" if seq % 3 == 0 else "other") for seq in range(1, 31)])
    reader = SubscriptionReader(log, subscription(), chunk=4)  # type: ignore[arg-type]
    enough = asyncio.run(reader.collect(0, 5))
    assert [m.seq for m in enough.messages] == [3, 6, 9, 12, 15] and enough.cursor == 15
    rest = asyncio.run(reader.collect(enough.cursor, 100))
    assert [m.seq for m in rest.messages] == [18, 21, 24, 27, 30] and rest.cursor == 30
    assert asyncio.run(reader.collect(30, 1)).messages == [] and log.reads > 8
