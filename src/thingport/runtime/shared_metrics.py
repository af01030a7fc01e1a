"""One /metrics over the worker processes of ``serve --workers N``.

Each worker keeps counting into plain Python numbers (``metrics.DeviceMetrics``: the hot path stays as cheap
as with one process) and writes a snapshot of its whole registry to ``<dir>/<pid>.json`` every
``SNAPSHOT_S`` and when it stops. Worker 0, which serves /metrics, adds its own live values to the other
workers' snapshots. prometheus_client's multiprocess mode would instead write an mmap'd file under a lock on
every observation: several times the cost of a report's counting today (see the report of issue 21).

When a worker exits the supervisor marks its file dead (``mark_process_dead``): its counters and histograms
still count (a sum never goes backwards when a worker is restarted), its gauges no longer do. A worker
killed outright loses at most its last ``SNAPSHOT_S`` of counts.

Merging: counters and histograms are summed; process metrics (RSS, CPU, fds) are kept apart with a ``pid``
label; other gauges take the largest value (they say one thing several workers may hold, e.g. a backlog).
"""

import asyncio
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from thingport.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DIR_ENV = "THINGPORT_WORKER_METRICS_DIR"  # set by the supervisor for its workers; not a setting
SNAPSHOT_S = 1.0
_DEAD = "dead-"
_SUMMED = ("counter", "histogram", "summary")

Sample = tuple[str, dict[str, str], float]


def shared_dir() -> Path | None:
    """The directory this process's workers share metrics in, when it is one of several workers."""
    value = os.environ.get(DIR_ENV)
    return Path(value) if value else None


def mark_process_dead(directory: Path, pid: int) -> None:
    """A worker exited: keep what it counted, drop what it gauged."""
    try:
        os.replace(directory / f"{pid}.json", directory / f"{_DEAD}{pid}.json")
    except FileNotFoundError:
        pass  # it died before its first snapshot


def _families(registry: CollectorRegistry) -> list[dict]:
    return [
        {"name": m.name, "type": m.type, "help": m.documentation,
         "samples": [[s.name, s.labels, s.value] for s in m.samples if not s.name.endswith("_created")]}
        for m in registry.collect()
    ]


class Snapshots:
    """Writes this worker's registry to its file now and then, atomically (write, then rename)."""

    def __init__(self, registry: CollectorRegistry, directory: Path) -> None:
        self._registry = registry
        self._path = directory / f"{os.getpid()}.json"
        self._task: asyncio.Task[None] | None = None
        self._writing = threading.Lock()  # a cancelled write may still run in its thread

    def write(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        with self._writing:
            try:
                tmp.write_text(json.dumps({"pid": os.getpid(), "families": _families(self._registry)}))
                os.replace(tmp, self._path)
            except OSError:
                log.exception("could not write this worker's metrics to %s", self._path)

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.to_thread(self.write)  # a few ms of JSON: off the event loop that serves devices
                await asyncio.sleep(SNAPSHOT_S)

        self._task = asyncio.create_task(loop(), name="metrics-snapshots")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await asyncio.to_thread(self.write)


class WorkersCollector(Collector):
    """This worker's live registry plus the other workers' latest snapshots, merged."""

    def __init__(self, local: CollectorRegistry, directory: Path) -> None:
        self._local = local
        self._dir = directory

    def collect(self) -> Iterator[Metric]:
        sources: list[tuple[str, bool, list[dict]]] = [(str(os.getpid()), True, _families(self._local))]
        for path in sorted(self._dir.glob("*.json")):
            dead = path.name.startswith(_DEAD)
            pid = path.stem.removeprefix(_DEAD)
            if pid == sources[0][0] and not dead:
                continue  # this process: its live values are above
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced or removed while read: the next scrape sees it
            sources.append((pid, not dead, doc["families"]))
        yield from merge(sources)


def merge(sources: Iterable[tuple[str, bool, list[dict]]]) -> Iterator[Metric]:
    """Metric families from ``(pid, alive, families)`` of several processes, merged as the module says."""
    metrics: dict[str, Metric] = {}
    values: dict[str, dict[tuple, list]] = {}
    for pid, alive, families in sources:
        for family in families:
            kind = family["type"]
            if kind not in _SUMMED and not alive:
                continue
            metric = metrics.get(family["name"])
            if metric is None:
                metric = metrics[family["name"]] = Metric(family["name"], family["help"], kind)
                values[family["name"]] = {}
            merged = values[family["name"]]
            per_process = family["name"].startswith("process_")
            for name, labels, value in family["samples"]:
                if per_process:
                    labels = {**labels, "pid": pid}
                key = (name, tuple(sorted(labels.items())))
                entry = merged.get(key)
                if entry is None:
                    merged[key] = [name, labels, value]
                elif kind in _SUMMED:
                    entry[2] += value
                else:
                    entry[2] = max(entry[2], value)
    for name, metric in metrics.items():
        for sample_name, labels, value in values[name].values():
            metric.add_sample(sample_name, labels, value)
        yield metric
