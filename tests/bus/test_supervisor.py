"""Supervision: one task per wanted item of a listing, restarted when its item changed or its task ended,
stopped when the item goes, every item's backlog set; a round that fails is logged and tried again."""

import asyncio
import dataclasses
import logging
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Gauge

from tests.bus.services import run
from tests.fakes import InMemoryLog
from tests.support import wait_until_async
from thingport.bus.supervisor import Supervisor
from thingport.core.model import StoredMessage


@dataclass(frozen=True)
class Item:
    name: str
    cursor: int
    enabled: bool = True
    version: int = 1
    ends: bool = False  # its task returns at once (as one whose read failed)


def test_tasks_follow_the_listing(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        log = InMemoryLog()
        await log.append_many(tuple(StoredMessage(i, 1, "pk", "dev", "aliyun", "/t", b"", i) for i in range(1, 6)))
        items = [Item("a", 2), Item("off", 0, enabled=False), Item("brief", 5, ends=True)]
        started: list[tuple[str, int]] = []
        stopped: list[tuple[str, int]] = []
        failing = [True]

        async def listing() -> list[Item]:
            if failing[0]:
                failing[0] = False
                raise RuntimeError("the registry is away")
            return list(items)

        async def work(item: Item) -> None:
            started.append((item.name, item.version))
            if item.ends:
                return
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append((item.name, item.version))

        metrics = CollectorRegistry()
        gauge = Gauge("backlog", "", ["item"], registry=metrics)
        supervisor = Supervisor("things", logging.getLogger("tests.supervisor"), log, listing,
                                wanted=lambda i: i.enabled, key=lambda i: i.version, run=work, backlog=gauge,
                                every_s=0.001)
        supervisor.start()
        await wait_until_async(lambda: started.count(("brief", 1)) >= 2, "a task that ended started again")
        assert started.count(("a", 1)) == 1 and ("off", 1) not in started
        backlogs = [metrics.get_sample_value("backlog", {"item": n}) for n in ("a", "off", "brief")]
        assert backlogs == [3, 5, 0]  # a disabled item's too
        items[0] = dataclasses.replace(items[0], version=2)
        await wait_until_async(lambda: ("a", 2) in started, "a changed item's task restarted")
        assert ("a", 1) in stopped
        items[0] = dataclasses.replace(items[0], enabled=False)
        await wait_until_async(lambda: ("a", 2) in stopped, "an item no longer wanted stopped")
        await supervisor.stop()
        assert started.count(("a", 2)) == 1
        assert "things supervisor failed; retrying" in caplog.text

    run(main())
