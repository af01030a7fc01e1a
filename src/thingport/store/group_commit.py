"""Group commit: many concurrent writers, one transaction (and one fsync) per batch.

Requests put their rows on a queue and await a future; a writer thread takes everything queued, writes it
in one transaction, commits, and settles the whole batch's futures with a single hop back to the event
loop. Under load batches grow by themselves, so durability costs one fsync per batch, not per message.
A future is settled with success only after COMMIT returned: nothing is acknowledged before it is durable.
"""

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")

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

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [entry for entry in batch if entry is not _STOP]
                # whatever was queued behind the stop marker is written too
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            if not batch:
                continue
            error: BaseException | None = None
            try:
                self._write_batch([item for item, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - reported to every waiter of the batch
                error = exc
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(_settle, [f for _, f in batch], error, self._on_commit)
            except RuntimeError:  # loop closed: nobody is waiting any more
                pass


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
