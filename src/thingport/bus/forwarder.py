"""Forwarding: every push subscription's sink is fed from the durable log, in commit order.

One task per enabled push subscription reads the log after its cursor, keeps what the subscription wants
(product, kinds, topic filter), hands the batch to the sink, and only after the sink confirmed writes the
new cursor (through group commit). A failure leaves the cursor where it was: the batch is offered again
after a backoff, so delivery is at least once and in order, and a sink that is down makes messages wait.
Tasks wake on a commit, so forwarding follows ingest without polling delay (at most LINGER_S behind).
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from thingport.bus.base import Sink, SinkError, shown_error
from thingport.bus.envelope import delivery
from thingport.bus.factory import PULL, create_sink
from thingport.bus.reader import Read, SubscriptionReader
from thingport.core.model import Subscription
from thingport.core.ports import MessageLog, SubscriptionStates

log = logging.getLogger(__name__)

BATCH = 2000  # the most log messages one batch reads (and one publish carries)
FAILING_AFTER = 3  # failed attempts in a row after which a subscription is "failing", not "retrying"
LINGER_S = 0.01  # a caught-up forwarder starts at most one batch per this many seconds


class CommitSignal:
    """Wakes every waiter when the log commits."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


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


class Forwarder:
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
        self._every = supervise_every_s
        self._retention_every = retention_every_s
        self._held = held
        self._tasks: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        self._supervisor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start (again, after ``stop``: a process that lost the forwarder lease and won it back)."""
        self._supervisor = asyncio.create_task(self._supervise(), name="forwarder")

    async def stop(self) -> None:
        tasks = [t for _, t in self._tasks.values()]
        if self._supervisor:
            tasks.append(self._supervisor)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._supervisor = None

    async def _supervise(self) -> None:
        """Keep one task per enabled push subscription; restart one whose options changed."""
        next_retention = time.monotonic() + self._retention_every
        while True:
            try:
                subscriptions = await self._registry.list_subscriptions()
                wanted = {s.name: s for s in subscriptions if s.enabled and s.sink != PULL}
                for name, (running, task) in list(self._tasks.items()):
                    current = wanted.get(name)
                    if current is None or current.id != running.id or current.options != running.options or task.done():
                        task.cancel()
                        del self._tasks[name]
                for name, subscription in wanted.items():
                    if name not in self._tasks:
                        task = asyncio.create_task(self._forward(subscription), name=f"forward-{name}")
                        self._tasks[name] = (subscription, task)
                backlogs = await self._log.backlogs([s.cursor for s in subscriptions])
                for s, backlog in zip(subscriptions, backlogs, strict=True):
                    self.metrics.backlog.labels(s.name).set(backlog)
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self._retention_every
                    await self.apply_retention(subscriptions)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("forwarding supervisor failed; retrying")
            await asyncio.sleep(self._every)

    async def _forward(self, subscription: Subscription) -> None:
        """Read, filter, publish, confirm, move the cursor: one batch at a time, so a failed batch is offered
        again before anything after it (order per device).

        A batch has a fixed cost on the server's core (a read, a socket write, the confirms, a cursor commit:
        a few hundred us) however few messages it carries, so a caught-up forwarder starts at most one batch
        per ``LINGER_S`` and takes what arrived meanwhile; one that is behind reads full batches, the next one
        while the sink waits for the confirms of the last. The cursor write commits while the next batch is
        published (at most one in flight; a cursor only ever moves forward).
        """
        reader = SubscriptionReader(self._log, subscription, BATCH)
        cursor = subscription.cursor
        name = subscription.name
        sink: Sink | None = None
        state = DeliveryState.of(self._registry, subscription)
        backoff = 0.5
        loop = asyncio.get_running_loop()
        started = -LINGER_S  # when the last batch started
        full = False  # the last read filled a whole batch: more is waiting, no lingering
        ahead: asyncio.Future[Read] | None = None  # the read after a full batch in the sink
        saving: asyncio.Future[None] | None = None  # the last cursor write
        try:
            while True:
                if ahead is not None:
                    read, ahead = await ahead, None
                else:
                    if not full and (pause := started + LINGER_S - loop.time()) > 0:
                        await asyncio.sleep(pause)
                    read = await reader.read(cursor)
                if not read.scanned:
                    full = False
                    await self._signal.wait(1.0)
                    continue
                started, full = loop.time(), read.scanned == BATCH
                batch = [delivery(m) for m in read.messages]
                if batch:
                    if full:
                        ahead = asyncio.ensure_future(reader.read(read.cursor))
                    try:
                        if sink is None:
                            sink = create_sink(subscription.sink, subscription.options)
                            await sink.open()
                        await sink.publish(batch)
                    except SinkError as exc:
                        _discard(ahead)
                        ahead = None
                        self.metrics.failures.labels(name).inc()
                        log.warning("subscription %s: sink did not confirm (%s); retrying in %.1f s",
                                    name, exc, backoff)
                        await state.failed(exc)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 30.0)
                        continue
                    self.metrics.delivered.labels(name).inc(len(batch))
                    await state.confirmed()
                backoff = 0.5
                cursor = read.cursor
                if saving is not None:
                    await saving
                saving = asyncio.ensure_future(self._log.save_cursor(subscription.id, cursor))
        finally:
            _discard(ahead)
            if saving is not None:
                # the cursor of a confirmed batch: worth a moment (a lost one means duplicates, not loss)
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(saving), 2.0)
            if sink is not None:
                await sink.close()

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
