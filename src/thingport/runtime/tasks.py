"""Small helpers for the background tasks that services start and stop."""

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has finished; ``None`` (never started) is a no-op.

    The ``CancelledError`` that the cancelled task ends with is swallowed, so that a service's ``stop()``
    returns normally. Any other exception the task raises while it unwinds propagates to the caller.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
