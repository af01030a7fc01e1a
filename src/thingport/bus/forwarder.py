"""Forwarding: every push subscription's sink is fed from the durable log, in commit order.

One task per enabled push subscription reads the log after its cursor, keeps what the subscription wants
(product, kinds, topic filter), hands the batch to the sink, and only after the sink confirmed writes the
new cursor (through group commit). A failure leaves the cursor where it was: the batch is offered again
after a backoff, so delivery is at least once and in order, and a sink that is down makes messages wait.
Tasks wake on a commit, so forwarding follows ingest without polling delay (at most LINGER_S behind). The
loop is the log consumers' (bus/consumer.py), the tasks are kept by bus/supervisor.py.
"""

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from thingport.bus.base import Delivery, Sink, SinkError, shown_error
from thingport.bus.consumer import CommitSignal, LogConsumer
from thingport.bus.envelope import delivery
from thingport.bus.factory import PULL, create_sink
from thingport.bus.reader import SubscriptionReader
from thingport.bus.supervisor import Supervisor
from thingport.core.model import Subscription
from thingport.core.ports import MessageLog, SubscriptionStates

log = logging.getLogger(__name__)

BATCH = 2000  # the most log messages one batch reads (and one publish carries)
FAILING_AFTER = 3  # failed attempts in a row after which a subscription is "failing", not "retrying"
LINGER_S = 0.01  # a caught-up forwarder starts at most one batch per this many seconds


StoreState = Callable[[str, int, str | None], Awaitable[None]]  # (state, since ms, error): where it is shown


class DeliveryState:
    """A push subscription's (or a rule's) state as its runner sees it: ``running`` (the last attempt was
    confirmed, or none failed yet), ``retrying`` (the sink failed the last attempts), ``failing``
    (``FAILING_AFTER`` attempts in a row); stored when the state or its error changes, so ``subscription list``,
    the API and the console show it whichever process asks. A sink that refuses every publish (RabbitMQ's
    ACCESS_REFUSED) would otherwise look like a healthy one with a growing backlog."""

    def __init__(self, store: StoreState, what: str, state: str, error: str | None, since_ms: int | None) -> None:
        self._store_state = store
        self._what = what  # "subscription NAME", "rule NAME": for the log
        self.failures = 0  # in a row
        self._stored = (state, error)
        self._since = since_ms

    @classmethod
    def of(cls, registry: SubscriptionStates, subscription: Subscription) -> "DeliveryState":
        return cls(functools.partial(registry.set_subscription_state, subscription.id),
                   f"subscription {subscription.name}", subscription.state, subscription.last_error,
                   subscription.state_since_ms)

    async def failed(self, error: BaseException | str) -> None:
        self.failures += 1
        await self._store("retrying" if self.failures < FAILING_AFTER else "failing", shown_error(error))

    async def confirmed(self) -> None:
        self.failures = 0
        if self._stored != ("running", None):
            await self._store("running", None)

    async def _store(self, state: str, error: str | None) -> None:
        if (state, error) == self._stored:
            return
        previous = self._stored, self._since
        if state != self._stored[0] or self._since is None:
            self._since = time.time_ns() // 1_000_000
        self._stored = (state, error)
        try:
            await self._store_state(state, self._since, error)
        except Exception as exc:  # noqa: BLE001 - the state is shown, not needed to forward
            self._stored, self._since = previous
            log.warning("%s: its state (%s) could not be stored: %s", self._what, state, exc)


class ForwardingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.backlog = Gauge("thingport_forward_backlog", "Log messages a subscription has yet to confirm",
                             ["subscription"], registry=registry)
        self.delivered = Counter("thingport_forward_delivered", "Envelopes confirmed by a sink",
                                 ["subscription"], registry=registry)
        self.failures = Counter("thingport_forward_failures", "Batches a sink did not confirm",
                                ["subscription"], registry=registry)


@dataclass(slots=True)
class Batch:
    """What one read found for a subscription: its deliveries, in log order (a stretch: bus/consumer.py)."""

    deliveries: list[Delivery]
    cursor: int  # the seq of the last log message read, wanted or not
    full: bool


class Forwarding(LogConsumer[Batch]):
    """One push subscription's forwarding: read, filter, publish, confirm, move the cursor, one batch at a time.

    A caught-up subscription starts at most one batch per ``LINGER_S``; one that is behind reads full
    batches, the next one while the sink waits for the confirms of the last. The cursor write commits while
    the next batch is published (at most one in flight; a cursor only ever moves forward).
    """

    linger_s = LINGER_S

    def __init__(self, log: MessageLog, subscription: Subscription, metrics: ForwardingMetrics,
                 state: DeliveryState) -> None:
        self._log = log
        self._subscription = subscription
        self._reader = SubscriptionReader(log, subscription, BATCH)
        self._metrics = metrics
        self._state = state
        self._sink: Sink | None = None
        self._ahead: asyncio.Future[Batch | None] | None = None  # the read after a full batch in the sink
        self._saving: asyncio.Future[None] | None = None  # the last cursor write

    async def read(self, after: int) -> Batch | None:
        if self._ahead is None:
            return await self._read(after)
        batch = await self._ahead
        self._ahead = None
        return batch

    async def _read(self, after: int) -> Batch | None:
        read = await self._reader.read(after)
        if not read.scanned:
            return None
        return Batch([delivery(m) for m in read.messages], read.cursor, read.scanned == BATCH)

    async def deliver(self, batch: Batch, retry_in: float) -> bool:
        if not batch.deliveries:
            return True
        name = self._subscription.name
        if batch.full:
            self._ahead = asyncio.ensure_future(self._read(batch.cursor))
        try:
            if self._sink is None:
                self._sink = create_sink(self._subscription.sink, self._subscription.options)
                await self._sink.open()
            await self._sink.publish(batch.deliveries)
        except SinkError as exc:
            _discard(self._ahead)
            self._ahead = None
            self._metrics.failures.labels(name).inc()
            log.warning("subscription %s: sink did not confirm (%s); retrying in %.1f s", name, exc, retry_in)
            await self._state.failed(exc)
            return False
        self._metrics.delivered.labels(name).inc(len(batch.deliveries))
        await self._state.confirmed()
        return True

    async def done(self, batch: Batch) -> None:
        await self.flush()
        self._saving = asyncio.ensure_future(self._log.save_cursor(self._subscription.id, batch.cursor))

    async def flush(self) -> None:
        if self._saving is not None:
            await self._saving

    async def close(self) -> None:
        _discard(self._ahead)
        if self._sink is not None:
            await self._sink.close()


class Forwarder:
    """Keeps one ``Forwarding`` per enabled push subscription, and the log's retention."""

    def __init__(
        self,
        log: MessageLog,
        registry: SubscriptionStates,
        metrics_registry: CollectorRegistry,
        signal: CommitSignal,
        retention_days: float | None = None,
        retention_max_mb: float | None = None,
        retention_force: bool = False,
        supervise_every_s: float = 1.0,
        retention_every_s: float = 60.0,
        held: Callable[[], Awaitable[list[int]]] | None = None,
    ) -> None:
        """``held``: the cursors of whatever else reads the log after a cursor of its own (the rules), which
        retention must not delete messages from under either."""
        self._log = log
        self._registry = registry
        self._signal = signal
        self.metrics = ForwardingMetrics(metrics_registry)
        self._retention = (retention_days, retention_max_mb, retention_force)
        self._retention_every = retention_every_s
        self._next_retention = 0.0
        self._held = held
        self._supervisor = Supervisor(
            "forwarding", logging.getLogger(__name__), log, registry.list_subscriptions,
            wanted=lambda s: s.enabled and s.sink != PULL, key=lambda s: (s.id, s.options), run=self._forward,
            backlog=self.metrics.backlog, every_s=supervise_every_s, each_round=self._retention_due)

    async def start(self) -> None:
        """Start (again, after ``stop``: a process that lost the forwarder lease and won it back)."""
        self._next_retention = time.monotonic() + self._retention_every
        self._supervisor.start()

    async def stop(self) -> None:
        await self._supervisor.stop()

    async def _forward(self, subscription: Subscription) -> None:
        forwarding = Forwarding(self._log, subscription, self.metrics, DeliveryState.of(self._registry, subscription))
        await forwarding.run(subscription.cursor, self._signal)

    async def _retention_due(self, subscriptions: list[Subscription]) -> None:
        if time.monotonic() >= self._next_retention:
            self._next_retention = time.monotonic() + self._retention_every
            await self.apply_retention(subscriptions)

    async def apply_retention(self, subscriptions: list[Subscription] | None = None) -> int:
        """Delete old messages, never one a subscription or a rule (running or paused) has yet to confirm,
        unless forced."""
        days, max_mb, force = self._retention
        if days is None and max_mb is None:
            return 0
        subscriptions = subscriptions if subscriptions is not None else await self._registry.list_subscriptions()
        last = await self._log.last_seq()
        pending = [s.cursor for s in subscriptions] + (await self._held() if self._held is not None else [])
        floor = last + 1 if force or not pending else min(pending) + 1
        floor = min(floor, last)  # never the newest message: seq (the rowid) must never go back
        deleted = 0
        if days is not None:
            cutoff = int((time.time() - days * 86400) * 1000)
            while (n := await self._log.delete_before(floor, cutoff, 5000)) > 0:
                deleted += n
        if max_mb is not None:
            while await self._log.size_bytes() > max_mb * 1024 * 1024:
                n = await self._log.delete_before(floor, None, 5000)
                if n == 0:
                    break
                deleted += n
        return deleted


def _discard(future: asyncio.Future | None) -> None:
    """Cancel a read nobody will use (and retrieve its outcome: no "never retrieved" warnings)."""
    if future is not None:
        future.cancel()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
