"""The log consumers' loop (read, hand on, retry with backoff, save, wait for a commit, save on stop) and their
throttled saves, with a consumer that records what the loop asks of it."""

import asyncio
import time
from dataclasses import dataclass

import pytest

from tests.bus.services import run
from tests.fakes import InMemoryLog
from tests.support import wait_until_async
from thingport.bus import consumer
from thingport.bus.consumer import CommitSignal, LogConsumer, QuietSaves
from thingport.core.model import StoredMessage


@dataclass
class Part:
    seqs: list[int]
    cursor: int
    full: bool


class Recorder(LogConsumer[Part]):
    """Reads two messages at a time; fails the stretch that starts at ``fail_at`` ``failures`` times."""

    linger_s = 0.0

    def __init__(self, log: InMemoryLog, fail_at: int, failures: int) -> None:
        self.log, self.fail_at, self.failures = log, fail_at, failures
        self.reads: list[int] = []
        self.attempts: list[tuple[list[int], float]] = []
        self.delivered: list[int] = []
        self.saved: list[int] = []
        self.events: list[str] = []
        self.idle = asyncio.Event()

    async def read(self, after: int) -> Part | None:
        self.reads.append(after)
        messages = await self.log.read_after(after, 2)
        return Part([m.seq for m in messages], messages[-1].seq, len(messages) == 2) if messages else None

    async def deliver(self, stretch: Part, retry_in: float) -> bool:
        self.attempts.append((stretch.seqs, retry_in))
        if stretch.seqs[0] == self.fail_at and self.failures:
            self.failures -= 1
            return False
        self.delivered.extend(stretch.seqs)
        return True

    async def done(self, stretch: Part) -> None:
        self.saved.append(stretch.cursor)

    async def caught_up(self) -> None:
        self.idle.set()

    async def flush(self) -> None:
        self.events.append("flush")

    async def close(self) -> None:
        self.events.append("close")


def message(i: int) -> StoredMessage:
    return StoredMessage(i, 1, "pk", "dev", "aliyun", "/t", b"{}", i)


def test_a_failed_stretch_is_read_again_with_growing_backoff_before_anything_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer, "BACKOFF_S", 0.01)
    monkeypatch.setattr(consumer, "BACKOFF_MAX_S", 0.04)
    monkeypatch.setattr(consumer, "IDLE_S", 3600.0)  # caught up, only a commit wakes it

    async def main() -> None:
        log = InMemoryLog()
        await log.append_many(tuple(message(i) for i in range(1, 6)))
        signal = CommitSignal()
        recorder = Recorder(log, fail_at=3, failures=3)
        task = asyncio.create_task(recorder.run(0, signal))
        await recorder.idle.wait()
        assert recorder.delivered == [1, 2, 3, 4, 5]
        assert recorder.reads == [0, 2, 2, 2, 2, 4, 5]
        assert recorder.attempts == [([1, 2], 0.01), ([3, 4], 0.01), ([3, 4], 0.02), ([3, 4], 0.04), ([3, 4], 0.04),
                                     ([5], 0.01)]  # doubled up to the most, then back to the first
        assert recorder.saved == [2, 4, 5]
        recorder.idle.clear()
        await log.append(message(6))
        signal.notify()
        await wait_until_async(lambda: recorder.delivered[-1:] == [6], "the commit woke the consumer")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert recorder.saved == [2, 4, 5, 6] and recorder.events == ["flush", "close"]

    run(main())


def test_quiet_saves_wait_news_does_not() -> None:
    async def main() -> None:
        saved: list[int] = []

        def save(n: int):  # type: ignore[no-untyped-def]
            async def write() -> None:
                saved.append(n)
            return write

        saves = QuietSaves(3600.0)
        await saves.done(save(1), news=False)
        assert saved == [1]  # never saved yet: the first quiet one is
        await saves.done(save(2), news=False)
        await saves.done(save(3), news=False)
        assert saved == [1]  # within every_s: waiting
        await saves.done(save(4), news=True)
        assert saved == [1, 4]  # news at once (and the quiet ones before it with it)
        await saves.done(save(5), news=False)
        await saves.flush()
        await saves.flush()
        assert saved == [1, 4, 5]  # the newest waiting one, once
        await saves.done(save(6), news=False)
        saves.drop()
        await saves.flush()
        assert saved == [1, 4, 5]
        recent = QuietSaves(3600.0, saved_at=time.monotonic())
        await recent.done(save(7), news=False)
        assert saved == [1, 4, 5]  # saved a moment ago: the quiet one waits

    run(main())


def test_a_commit_made_while_an_empty_read_ran_wakes_the_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read saw nothing, but a commit came before the consumer started waiting: it must not sleep until
    the next commit or IDLE_S (a lone report's forwarding waited up to a second)."""
    monkeypatch.setattr(consumer, "IDLE_S", 3600.0)

    async def main() -> None:
        log = InMemoryLog()
        signal = CommitSignal()

        class CommitDuringFirstRead(Recorder):
            async def read(self, after: int) -> Part | None:
                part = await super().read(after)
                if len(self.reads) == 1:  # empty; meanwhile a report commits
                    await log.append(message(1))
                    signal.notify()
                return part

        recorder = CommitDuringFirstRead(log, fail_at=0, failures=0)
        task = asyncio.create_task(recorder.run(0, signal))
        await wait_until_async(lambda: recorder.delivered == [1], "the commit during the read woke the consumer")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
