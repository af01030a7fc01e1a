"""Picks up a master key rotation (or prune) made by ``thingport keys`` while the server runs."""

import asyncio
import logging
from collections.abc import Callable

from thingport.store.keys import KeyRing
from thingport.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class KeyWatch:
    """Reloads the key ring when its file changes and calls ``changed`` then. The ring may also be reloaded
    by a registry read that met a new key: its generation tells either way."""

    def __init__(self, keys: KeyRing, changed: Callable[[], None], every_s: float = 1.0) -> None:
        self._keys = keys
        self._changed = changed
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="key-watch")

    async def _watch(self) -> None:
        keys = self._keys
        seen = keys.generation
        while True:
            await asyncio.sleep(self._every_s)
            try:
                keys.maybe_reload()
                if keys.generation != seen:
                    seen = keys.generation
                    self._changed()
                    log.info("master keys reloaded: %d key(s)", len(keys.masters))
            except Exception:
                log.exception("could not reload the master keys")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
