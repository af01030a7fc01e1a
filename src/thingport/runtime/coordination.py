"""What one process does so that several (workers on a host, instances on several hosts) share one store.

- Its worker number: leased, so the messageIds of two processes never collide.
- The forwarder and the rules: run where their lease is held, so each subscription's and rule's cursor has
  a single writer; when the holder dies, another instance takes the lease over within a second or two.
- Commits by other processes: a watcher notices the log growing and wakes forwarders and SSE streams
  that would otherwise only hear of this process's own commits.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from thingport.core.message_ids import MessageIdGenerator
from thingport.store.leases import Lease, claim_worker_id
from thingport.tasks import cancel_and_wait

log = logging.getLogger(__name__)

LEASE_CHECK_S = 1.0
LOG_WATCH_S = 0.1


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class WorkerNumber:
    """This process's worker number, claimed at start and claimed again if its lease is lost."""

    def __init__(self, lease: Lease, preferred: int) -> None:
        self._lease = lease
        self._preferred = preferred
        self.number: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def claim(self) -> int:
        self.number = await asyncio.to_thread(claim_worker_id, self._lease, self._preferred)
        return self.number

    def keep(self, ids: MessageIdGenerator, every_s: float = 5.0) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    if await asyncio.to_thread(self._lease.held):
                        continue
                    before = self.number
                    number = await asyncio.to_thread(claim_worker_id, self._lease, before or self._preferred)
                    self.number = number
                    ids.use_worker(number)
                    log.warning("worker number lease was lost and claimed again: %s -> %s", before, number)
                except Exception as exc:  # noqa: BLE001 - the store is down: try again on the next round
                    log.warning("could not renew the worker number lease: %s", exc)

        self._task = asyncio.create_task(loop(), name="worker-lease")

    async def release(self) -> None:
        await cancel_and_wait(self._task)
        await asyncio.to_thread(self._lease.release)


class Services:
    """Several services started in order and stopped in reverse, as one (the forwarder and the rules share a
    lease: they are the log's readers on its far side)."""

    def __init__(self, *services: Startable) -> None:
        self._services = services

    async def start(self) -> None:
        started: list[Startable] = []
        try:
            for service in self._services:
                await service.start()
                started.append(service)
        except BaseException:
            for service in reversed(started):
                await service.stop()
            raise

    async def stop(self) -> None:
        for service in reversed(self._services):
            await service.stop()


class LeasedService:
    """Runs ``service`` only while this process holds ``lease`` (stopped when it is lost, started again
    when it is won back)."""

    def __init__(self, lease: Lease, service: Startable, name: str) -> None:
        self._lease = lease
        self._service = service
        self._name = name
        self.running = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        await self._round()  # a lone instance starts its service before it serves its first request
        self._task = asyncio.create_task(self._loop(), name=f"{self._name}-lease")

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), LEASE_CHECK_S)
                return
            except TimeoutError:
                pass
            try:
                await self._round()
            except Exception:
                log.exception("%s lease check failed", self._name)

    async def _round(self) -> None:
        if not self.running:
            if await asyncio.to_thread(self._lease.try_acquire):
                try:
                    await self._service.start()
                except BaseException:
                    await asyncio.to_thread(self._lease.release)  # let another process have it
                    raise
                self.running = True
                log.info("%s: this process holds the lease and runs it", self._name)
        elif not await asyncio.to_thread(self._lease.held):
            self.running = False
            await self._service.stop()
            log.warning("%s: lease lost, stopped here (another process takes over)", self._name)

    async def stop(self) -> None:
        # Not a cancel: a round cancelled while its lease call runs in a thread leaves that call running,
        # and a try_acquire finishing after the release below would keep the lease for a stopped service.
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait((self._task,))  # (its outcome is not ours to raise; a cancelled task ends too)
        if self.running:
            await self._service.stop()
            self.running = False
        await asyncio.to_thread(self._lease.release)


class LogWatcher:
    """Calls ``notify`` when the log's last ``seq`` grows, whoever committed it."""

    def __init__(self, last_seq: Callable[[], Awaitable[int]], notify: Callable[[], None]) -> None:
        self._last_seq = last_seq
        self._notify = notify
        self._task: asyncio.Task[None] | None = None

    def start(self, every_s: float = LOG_WATCH_S) -> None:
        async def loop() -> None:
            seen: int | None = None
            while True:
                last: int | None
                try:
                    last = await self._last_seq()
                except Exception:  # noqa: BLE001 - the store is down: the forwarder reports it
                    last = seen
                if seen is not None and last != seen:
                    self._notify()
                seen = last
                await asyncio.sleep(every_s)

        self._task = asyncio.create_task(loop(), name="log-watch")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
