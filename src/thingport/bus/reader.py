"""Reading a subscription's messages from the log: the one read-and-filter loop behind the forwarder (push
sinks), pulls and the event stream (pull subscriptions)."""

from dataclasses import dataclass

from thingport.bus.envelope import envelope_kind
from thingport.core.model import StoredMessage, Subscription
from thingport.core.ports import MessageLog
from thingport.core.topics import compile_topic_filter

CHUNK = 500  # log messages one read takes, unless the reader is given another size


class SubscriptionFilter:
    """Which log messages a subscription wants (compiled once)."""

    def __init__(self, subscription: Subscription) -> None:
        self._products = frozenset(subscription.products) or None  # None: every product
        self._kinds = frozenset(subscription.kinds)
        self._topic = compile_topic_filter(subscription.topic_filter) if subscription.topic_filter else None

    def __call__(self, message: StoredMessage) -> bool:
        return (
            (self._products is None or message.product_key in self._products)
            and envelope_kind(message) in self._kinds
            and (self._topic is None or bool(self._topic(message.topic)))
        )


@dataclass(frozen=True, slots=True)
class Read:
    """What one read found: the wanted messages, in log order, and the cursor to read on from (the seq of
    the last message looked at, wanted or not, so that unwanted ones are not read again)."""

    messages: list[StoredMessage]
    cursor: int
    scanned: int  # log messages looked at: 0 means the log has nothing after the cursor


class SubscriptionReader:
    """A subscription's messages after a cursor, in commit order, filtered by product, kind and topic."""

    def __init__(self, log: MessageLog, subscription: Subscription, chunk: int = CHUNK) -> None:
        self._log = log
        self._wanted = SubscriptionFilter(subscription)
        self.chunk = chunk

    async def read(self, after: int, limit: int | None = None) -> Read:
        """One read of up to ``chunk`` log messages after ``after``. With ``limit``, it stops at the
        ``limit``-th wanted message: the cursor is that message's seq, and what follows is read next time."""
        chunk = await self._log.read_after(after, self.chunk)
        if limit is None:  # the forwarder's case, per message on its hot path: one comprehension
            return Read([m for m in chunk if self._wanted(m)], chunk[-1].seq if chunk else after, len(chunk))
        found: list[StoredMessage] = []
        cursor = after
        for message in chunk:
            cursor = message.seq
            if self._wanted(message):
                found.append(message)
                if len(found) == limit:
                    break
        return Read(found, cursor, len(chunk))

    async def collect(self, after: int, limit: int) -> Read:
        """Up to ``limit`` wanted messages after ``after``, reading on until there are that many or the log
        has no more."""
        found: list[StoredMessage] = []
        cursor, scanned = after, 0
        while len(found) < limit:
            step = await self.read(cursor, limit - len(found))
            if not step.scanned:
                break
            found.extend(step.messages)
            cursor, scanned = step.cursor, scanned + step.scanned
        return Read(found, cursor, scanned)
