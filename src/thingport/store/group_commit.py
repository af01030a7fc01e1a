"""Group commit: many concurrent writers, one transaction (and one fsync) per batch.

Requests put their rows on a queue and await a future; a writer thread takes everything queued, writes it
in one transaction, commits, and settles the whole batch's futures with a single hop back to the event
loop. Under load batches grow by themselves, so durability costs one fsync per batch, not per message.
A future is settled with success only after COMMIT returned: nothing is acknowledged before it is durable.

Other work that needs the writer's connection (retention's deletes) runs on the same thread *between*
batches (``run_alone``), in short transactions of its own: on SQLite every write holds the file's one write
lock, so a delete anywhere else would hold off the writer for as long as it runs.
"""

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
T = TypeVar("T")

_STOP = object()


class GroupCommitter(Generic[Item]):
    """Feeds queued items to ``write_batch`` in batches of up to ``max_batch``, on its own thread.

    ``write_batch`` must write the items in one transaction and raise if it did not commit; its
    exception then fails every item of that batch (and no item of it is acknowledged).
    """

    def __init__(
        self,
        write_batch: Callable[[list[Item]], None],
        max_batch: int = 1000,
        name: str = "group-commit",
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._write_batch = write_batch
        self._on_commit = on_commit  # called on the event loop after each committed batch
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.batches = 0  # batches written so far (read from the loop: has anything been written since?)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread.start()

    def submit(self, item: Item) -> "asyncio.Future[None]":
        """Queue ``item``; the returned future completes once it is committed (or fails with the reason)."""
        assert self._loop is not None, "start() first"
        future = self._loop.create_future()
        self._queue.put((item, future))
        return future

    def run_alone(self, work: Callable[[], T]) -> "asyncio.Future[T]":
        """Run ``work`` on the writer thread after the batch being taken now and before the next one, never
        inside a batch's transaction (it opens its own). Its result (or exception) settles the future. Keep it
        short: the reports queued meanwhile wait for it."""
        assert self._loop is not None, "start() first"
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((_Alone(work), future))
        return future

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while True:
            batch, alone, stop = self._take(block=not stopping)
            stopping = stopping or stop
            if batch:
                self._commit(batch)
            if alone is not None:
                self._do_alone(alone)
            if stopping and not batch and alone is None:
                return  # stopped, and whatever was queued behind the stop marker is done too

    def _take(self, block: bool) -> tuple[list[tuple[Any, "asyncio.Future[None]"]], Any, bool]:
        """The next batch (up to ``max_batch`` items, all of them once stopping), the ``run_alone`` job that
        ended it if one did (what was queued after that job waits for it), and whether the stop marker came."""
        batch: list[tuple[Any, asyncio.Future[None]]] = []
        stop = False
        try:
            entry = self._queue.get() if block else self._queue.get_nowait()
            while True:
                if entry is _STOP:
                    stop = True
                elif type(entry[0]) is _Alone:
                    return batch, entry, stop
                else:
                    batch.append(entry)
                    if len(batch) >= self._max_batch and not stop:
                        break
                entry = self._queue.get_nowait()
        except queue.Empty:
            pass
        return batch, None, stop

    def _commit(self, batch: list[tuple[Any, "asyncio.Future[None]"]]) -> None:
        error: BaseException | None = None
        try:
            self._write_batch([item for item, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - reported to every waiter of the batch
            error = exc
        self.batches += 1
        self._hand_back(_settle, [f for _, f in batch], error, self._on_commit)

    def _do_alone(self, entry: tuple["_Alone", "asyncio.Future[Any]"]) -> None:
        job, future = entry
        try:
            result, error = job.work(), None
        except BaseException as exc:  # noqa: BLE001 - the caller's to handle
            result, error = None, exc
        self._hand_back(_settle_alone, future, result, error)

    def _hand_back(self, settle: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(settle, *args)
        except RuntimeError:  # loop closed: nobody is waiting any more
            pass


class _Alone:
    """A ``run_alone`` job in the queue."""

    __slots__ = ("work",)

    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work


def _settle(
    futures: list["asyncio.Future[None]"], error: BaseException | None, on_commit: Callable[[], None] | None
) -> None:
    if error is None and on_commit is not None:
        on_commit()
    for future in futures:
        if future.done():  # the request went away; the write stands regardless
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _settle_alone(future: "asyncio.Future[Any]", result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
