"""Supervision: one task per wanted item of a listing (the enabled push subscriptions, the enabled rules),
kept in step with the listing as it changes.

Every round lists the items; stops the task of one no longer wanted (disabled, deleted); restarts one whose
item changed in what its task was started with (``key``) or whose task ended (it failed: it starts again
from the stored cursor); starts one for every new item; and sets every item's backlog (log messages after
its cursor). A round that fails is logged and tried again the next one: supervision lasts until ``stop``.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import Gauge

from thingport.core.ports import MessageLog


class Item(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def cursor(self) -> int: ...


T = TypeVar("T", bound=Item)


@dataclass(eq=False)
class Supervisor(Generic[T]):
    """Keeps one task per wanted item (see the module)."""

    what: str  # "forwarding", "rules": the supervisor's task, its items' tasks and its log lines
    logger: logging.Logger  # the owner's
    log: MessageLog
    listing: Callable[[], Awaitable[list[T]]]  # every item, wanted or not (each has a backlog)
    wanted: Callable[[T], bool]
    key: Callable[[T], object]  # what an item's task was started with: a change restarts it
    run: Callable[[T], Coroutine[Any, Any, None]]
    backlog: Gauge  # labelled by the item's name
    every_s: float
    each_round: Callable[[list[T]], Awaitable[None]] | None = None  # the owner's work on the round's listing
    _tasks: dict[str, tuple[T, asyncio.Task[None]]] = field(default_factory=dict, init=False)
    _supervisor: asyncio.Task[None] | None = field(default=None, init=False)

    def start(self) -> None:
        """Start (again, after ``stop``)."""
        self._supervisor = asyncio.create_task(self._supervise(), name=self.what)

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
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.logger.exception("%s supervisor failed; retrying", self.what)
            await asyncio.sleep(self.every_s)

    async def _round(self) -> None:
        items = await self.listing()
        want = {item.name: item for item in items if self.wanted(item)}
        for name, (running, task) in list(self._tasks.items()):
            current = want.get(name)
            if current is None or self.key(current) != self.key(running) or task.done():
                task.cancel()
                del self._tasks[name]
        for name, item in want.items():
            if name not in self._tasks:
                self._tasks[name] = (item, asyncio.create_task(self.run(item), name=f"{self.what}-{name}"))
        backlogs = await self.log.backlogs([item.cursor for item in items])
        for item, backlog in zip(items, backlogs, strict=True):
            self.backlog.labels(item.name).set(backlog)
        if self.each_round is not None:
            await self.each_round(items)
