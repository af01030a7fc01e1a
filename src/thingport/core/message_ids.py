"""64-bit, unique, roughly time-ordered message ids (the Snowflake layout).

``41 bits of ms since 2020-01-01 | 10 bits of worker | 12 bits of sequence``: sorting ids sorts by
time, they fit a signed 64-bit column, and workers of one deployment never collide when each has its
own worker number. Within one millisecond up to 4096 ids; past that the clock is borrowed forward.
"""

import time
from collections.abc import Callable

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
_SEQ_MASK = (1 << SEQUENCE_BITS) - 1


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class MessageIdGenerator:
    __slots__ = ("_worker", "_clock_ms", "_last_ms", "_seq")

    def __init__(self, worker: int = 0, clock_ms: Callable[[], int] | None = None) -> None:
        if not 0 <= worker <= MAX_WORKER:
            raise ValueError(f"worker must be 0..{MAX_WORKER}")
        self._worker = worker << SEQUENCE_BITS
        self._clock_ms = clock_ms or _now_ms
        self._last_ms = 0
        self._seq = 0

    def use_worker(self, worker: int) -> None:
        """Switch to another worker number (this process's lease on its old one was lost)."""
        if not 0 <= worker <= MAX_WORKER:
            raise ValueError(f"worker must be 0..{MAX_WORKER}")
        self._worker = worker << SEQUENCE_BITS

    def next_id(self) -> int:
        now = self._clock_ms()
        if now > self._last_ms:
            self._last_ms = now
            self._seq = 0
        else:  # same ms, or the clock went back: keep ids increasing
            self._seq = (self._seq + 1) & _SEQ_MASK
            if self._seq == 0:
                self._last_ms += 1
        return ((self._last_ms - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)) | self._worker | self._seq


def message_id_time_ms(message_id: int) -> int:
    """The millisecond at which ``message_id`` was generated."""
    return (message_id >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS
