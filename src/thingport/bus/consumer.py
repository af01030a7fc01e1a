"""Consumers of the log: what reads the durable log after a cursor of its own and hands on what it finds (a
push subscription's forwarding, a rule), one stretch at a time, and how such a reader saves its progress.

The loop is the same for every one of them: read the stretch after the cursor; when there is none, wait for
the next commit; hand the stretch on, and only once it is confirmed move the cursor and save it. A stretch
that was not confirmed is read at the same cursor again after a backoff, before anything after it, so what
a consumer hands on is at least once and in order per device. A stretch costs a fixed amount however short
(a read, a wake-up, a progress write), so a consumer that keeps up starts one at most every ``linger_s`` and
takes what came meanwhile; one that is behind reads full stretches back to back. What differs between
consumers (what a stretch is, how it is handed on, how progress is saved) is what a subclass says.
"""

import asyncio
import contextlib
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

BACKOFF_S = 0.5  # the pause after a stretch was not confirmed, doubled at each failure in a row, up to:
BACKOFF_MAX_S = 30.0
IDLE_S = 1.0  # caught up, a consumer looks again after this long even when nothing commits
STOP_SAVE_S = 2.0  # how long a consumer that is stopped waits for its progress to be saved


class CommitSignal:
    """Wakes every waiter when the log commits."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def armed(self) -> asyncio.Event:
        """What the next commit sets: taken before a read, handed to ``wait`` after it came back empty, so a
        commit made while the read ran wakes the waiter at once (not after ``timeout``)."""
        return self._event

    async def wait(self, timeout: float, armed: asyncio.Event | None = None) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for((armed or self._event).wait(), timeout)


class Stretch(Protocol):
    """What a consumer read after its cursor."""

    cursor: int  # the seq it ends at: where the next read starts once it is confirmed
    full: bool  # it filled a whole read: more is waiting, no lingering


S = TypeVar("S", bound=Stretch)


class LogConsumer(ABC, Generic[S]):
    """One reader of the log after a cursor of its own (see the module)."""

    linger_s: float  # a consumer that keeps up starts one stretch at most this often

    @abstractmethod
    async def read(self, after: int) -> S | None:
        """The stretch after ``after`` (asked again at the same cursor after a failure); None: nothing new."""

    @abstractmethod
    async def deliver(self, stretch: S, retry_in: float) -> bool:
        """Hand ``stretch`` on; True once it is confirmed, False to have it read again in ``retry_in`` s."""

    @abstractmethod
    async def done(self, stretch: S) -> None:
        """``stretch`` was confirmed: save the progress (or have it saved soon)."""

    async def caught_up(self) -> None:  # noqa: B027 - a hook: nothing to do unless a consumer defers saves
        """Nothing after the cursor: a moment to save what was deferred."""

    async def flush(self) -> None:  # noqa: B027 - a hook, as caught_up
        """Stopping: the progress not saved yet, which the loop waits for ``STOP_SAVE_S`` at most."""

    async def close(self) -> None:  # noqa: B027 - a hook: a consumer without a connection has nothing to close
        """Let go of connections (after ``flush``)."""

    async def run(self, cursor: int, signal: CommitSignal) -> None:
        """Consume the log after ``cursor`` until cancelled (or until a read or a save fails)."""
        loop = asyncio.get_running_loop()
        started, full = -self.linger_s, False  # when the last stretch was read, and whether it was a full one
        backoff = BACKOFF_S
        try:
            while True:
                if not full and (pause := started + self.linger_s - loop.time()) > 0:
                    await asyncio.sleep(pause)
                armed = signal.armed()
                stretch = await self.read(cursor)
                if stretch is None:
                    full = False
                    await self.caught_up()
                    await signal.wait(IDLE_S, armed)
                    continue
                started, full = loop.time(), stretch.full
                if not await self.deliver(stretch, backoff):
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                backoff = BACKOFF_S
                cursor = stretch.cursor
                await self.done(stretch)
        finally:
            # worth a moment: a lost save means handing some of the log on again, never losing it
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self.flush()), STOP_SAVE_S)
            await self.close()


class QuietSaves:
    """Progress saved at once when it carries news, and when it carries none (a quiet stretch: reading it again
    after a crash changes nothing) at most every ``every_s``: until then the newest such save waits, and is
    made when the reader is caught up (``flush``) or stops. A write per stretch would cost the log writer:
    on SQLite every write waits for its file lock, and makes it wait."""

    def __init__(self, every_s: float, saved_at: float = -math.inf) -> None:
        """``saved_at``: time.monotonic() of the last save (-inf: the first quiet one is saved at once)."""
        self._every = every_s
        self._saved_at = saved_at
        self._unsaved: Callable[[], Awaitable[None]] | None = None

    async def done(self, save: Callable[[], Awaitable[None]], news: bool) -> None:
        """A stretch is done; ``save`` stores its progress (and all before it)."""
        self._unsaved = save
        if news or time.monotonic() - self._saved_at >= self._every:
            await self.flush()

    async def flush(self) -> None:
        if self._unsaved is not None:
            await self._unsaved()
            self._unsaved, self._saved_at = None, time.monotonic()

    def drop(self) -> None:
        """Forget the waiting save (its owner goes back to its stored state)."""
        self._unsaved = None
