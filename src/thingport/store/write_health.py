"""Failing writes an operator can see: a rate-limited error in the log, a counter in /metrics, and a store
that is not ready (in /readyz) from the first failed write until one succeeds again.

On a full or read-only disk every write is refused, and the devices are told so; without this the server
said nothing and stayed "ready", so a load balancer kept sending devices to an instance that stored
nothing. The writer threads report here, so every method is thread-safe.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("thingport.store")

LOG_INTERVAL_S = 10.0  # at most one error line per store this often; the rest are counted, then summarised


@dataclass
class _Failing:
    since: float  # wall clock of the first failure of this run
    count: int = 0  # failed writes since then
    suppressed: int = 0  # not logged since the last line
    logged_at: float = 0.0  # monotonic


class WriteHealth(Collector):
    """Per store ("log", ...): failing or not, failures by operation, and the log lines about them."""

    def __init__(self, log_interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = log_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], int] = {}
        self._failing: dict[str, _Failing] = {}

    def failed(self, store: str, operations: dict[str, int], error: BaseException) -> None:
        """A write to ``store`` failed: ``operations`` counts what it held (e.g. {"messages": 12})."""
        now = self._clock()
        with self._lock:
            for operation, count in operations.items():
                self._failures[(store, operation)] = self._failures.get((store, operation), 0) + count
            state = self._failing.get(store)
            first = state is None
            if state is None:
                state = self._failing[store] = _Failing(since=time.time())
            state.count += 1
            if not first and now - state.logged_at < self._interval:
                state.suppressed += 1
                return
            suppressed, state.suppressed, state.logged_at = state.suppressed, 0, now
        what = ", ".join(f"{n} {operation}" for operation, n in operations.items())
        more = f" ({suppressed} more failed writes since the last report)" if suppressed else ""
        log.error("writes to the %s store are failing (%s refused)%s: %s; not ready until a write succeeds",
                  store, what, more, error)

    def succeeded(self, store: str) -> None:
        """A write to ``store`` committed: it is healthy again."""
        if store not in self._failing:  # the common case, without the lock (a dict lookup is atomic)
            return
        with self._lock:
            state = self._failing.pop(store, None)
        if state is not None:
            log.warning("writes to the %s store succeed again, after %d failed writes over %.0f s",
                        store, state.count, time.time() - state.since)

    def failing(self, store: str) -> bool:
        return store in self._failing

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "thingport_store_write_failures",
            "Writes the database refused (full or read-only disk, ...), by store and operation",
            labels=["store", "operation"],
        )
        with self._lock:
            counts = list(self._failures.items())
        for (store, operation), count in counts:
            family.add_metric([store, operation], count)
        yield family
