"""The end of the log as several readers at (nearly) the same cursor see it: one database read and one JSON
decode of each payload serve all of them.

Every rule reads the log after a cursor of its own, but rules that keep up sit at the same cursor: without
sharing, ten rules would read every message ten times and decode its payload ten times. A chunk read after
seq N is final up to its last seq (a reader never gets a row before an earlier transaction committed: see
store/sql_log.py), so a full chunk may be handed to any reader at N later on; one that was not full is handed
out only while it is fresh (``FRESH_S``), so a reader that comes a moment later stays in step with the others
instead of reading the few messages committed meanwhile on its own.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from thingport.core import jsondoc
from thingport.core.model import StoredMessage
from thingport.core.ports import MessageLog
from thingport.core.rule_sql import MessageContext, RuleEvalError

CHUNK = 2000  # log messages one read takes
FRESH_S = 0.05  # how long a chunk that was not full is handed to readers asking for the same cursor
KEPT = 4  # chunks kept, the newest: what readers that keep up ask for (a chunk may be large: few)

_UNDECODED = object()


class NotJson(RuleEvalError):
    """A payload that is not JSON: a statement cannot be evaluated on it."""


class Chunk:
    """Log messages after a cursor, in commit order, with what every rule asks of them worked out once, when
    first asked: which match a topic filter, their payloads as JSON, their contexts."""

    __slots__ = ("messages", "cursor", "full", "_documents", "_contexts", "_matching")

    def __init__(self, messages: list[StoredMessage], after: int, full: bool = False) -> None:
        self.messages = messages
        self.cursor = messages[-1].seq if messages else after  # where the next read starts
        self.full = full  # as many messages as one read takes: more may be waiting
        self._documents: list[Any] = [_UNDECODED] * len(messages)
        self._contexts: list[MessageContext | None] = [None] * len(messages)
        self._matching: dict[str, list[int]] = {}

    def matching(self, topic_filter: str, matches: Callable[[str], bool]) -> list[int]:
        """The indexes of the messages whose topic ``matches`` (the matcher of ``topic_filter``)."""
        found = self._matching.get(topic_filter)
        if found is None:
            found = self._matching[topic_filter] = [i for i, m in enumerate(self.messages) if matches(m.topic)]
        return found

    def context(self, index: int) -> MessageContext:
        """What a statement's functions know of ``messages[index]`` besides its payload."""
        context = self._contexts[index]
        if context is None:
            m = self.messages[index]
            context = self._contexts[index] = MessageContext(m.product_key, m.device_name, m.topic, m.received_ms,
                                                             m.message_id, m.iot_id or None)
        return context

    def document(self, index: int) -> Any:
        """The payload of ``messages[index]`` as JSON; NotJson when it is not JSON."""
        doc = self._documents[index]
        if doc is _UNDECODED:
            try:
                doc = jsondoc.decode_device(self.messages[index].payload)
            except jsondoc.DECODE_ERRORS:
                error = self._documents[index] = NotJson("the payload is not JSON")
                raise error from None
            self._documents[index] = doc
        elif isinstance(doc, NotJson):
            raise doc
        return doc


class LogTail:
    """Shared reads of the log (see the module)."""

    def __init__(self, log: MessageLog, chunk: int = CHUNK) -> None:
        self._log = log
        self.chunk = chunk
        # after -> (the read, when it started)
        self._reads: OrderedDict[int, tuple[asyncio.Future[Chunk], float]] = OrderedDict()

    async def read(self, after: int) -> Chunk:
        """The messages after ``after`` (at most ``chunk``), shared with other readers at ``after``."""
        now = time.monotonic()
        found = self._reads.get(after)
        if found is not None:
            future, started = found
            if not future.done():
                return await asyncio.shield(future)
            if not future.cancelled() and future.exception() is None:
                chunk = future.result()
                if chunk.full or (chunk.messages and now - started < FRESH_S):
                    return chunk
            del self._reads[after]
        future = asyncio.ensure_future(self._read(after))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # read even when every reader left
        self._reads[after] = (future, now)
        while len(self._reads) > KEPT:
            self._reads.popitem(last=False)
        try:
            return await asyncio.shield(future)
        finally:
            if future.done() and (future.cancelled() or future.exception() is not None or not future.result().messages):
                # a failed or empty read is never handed out again: the next reader asks the log itself
                if self._reads.get(after, (None, 0.0))[0] is future:
                    del self._reads[after]

    async def _read(self, after: int) -> Chunk:
        messages = await self._log.read_after(after, self.chunk)
        return Chunk(messages, after, len(messages) == self.chunk)
