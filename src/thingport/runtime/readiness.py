"""The checks behind /readyz: does the database answer, does the log take writes, is Redis there."""

import asyncio
import logging
import time
from collections.abc import Callable

from thingport.core.errors import StoreUnavailable
from thingport.core.ports import Pingable, WriteProbe
from thingport.state.shared import SharedState
from thingport.store.write_health import LOG_INTERVAL_S, WriteHealth

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 2.0


class Readiness:
    """Named checks, each "ok", "failing" or "degraded" (still serves). The reasons go to the log, never to
    the unauthenticated page that shows the checks (driver errors name hosts and ports).

    "writes" fails from a refused write until one commits again. A failing instance gets no devices from a
    load balancer, so nothing else would write: while failing, each check makes one probe write (a row
    written and deleted, as much room as a report needs) and is ready again as soon as it commits."""

    def __init__(self, database: Pingable, log_writes: WriteProbe, health: WriteHealth, shared: SharedState,
                 clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._log_writes = log_writes
        self._health = health
        self._shared = shared
        self._clock = clock
        self._unready_logged: dict[str, float] = {}

    async def check(self) -> dict[str, str]:
        try:
            await asyncio.wait_for(self._database.ping(), timeout=CHECK_TIMEOUT_S)
            database = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            database = "failing"
            self._report_unready("database", exc)
        if self._health.failing("log"):
            try:
                await asyncio.wait_for(self._log_writes.probe_write(int(self._clock() * 1000)), CHECK_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - counted and logged by the write health
                if not isinstance(exc, StoreUnavailable):
                    self._report_unready("writes", exc)
        writes = "failing" if self._health.failing("log") else "ok"
        return {"database": database, "writes": writes, **self._shared.readiness()}

    def _report_unready(self, check: str, exc: BaseException) -> None:
        """A check's reason, logged at most once per ``LOG_INTERVAL_S`` per check."""
        now = time.monotonic()
        if now - self._unready_logged.get(check, -LOG_INTERVAL_S) >= LOG_INTERVAL_S:
            self._unready_logged[check] = now
            log.error("not ready: %s check failed: %s", check, exc)
