"""The one place that assembles a thingport process: ``build(settings, overrides)`` opens the stores and makes
every adapter and service from the settings, and the ``App`` it returns starts and stops them in order.

The server, the CLI, the simulator, the tests and the benchmark's diagnostics all build their process here;
what a caller wants different (a test's clock or faulty log, the bench's log without fsync) it says in
``Overrides``, never by reaching into what was built.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector

from thingport.bus.alarm_evaluator import AlarmEvaluator
from thingport.bus.consumer import CommitSignal
from thingport.bus.forwarder import Forwarder
from thingport.bus.rule_runner import RuleRunner
from thingport.core.tokens import TokenCodec
from thingport.dialects.dialect import DialectTable
from thingport.dialects.table import DIALECTS
from thingport.ingest.use_case import DeviceIngest
from thingport.manage.alarms import AlarmService
from thingport.manage.service import Management
from thingport.metrics import DeviceMetrics
from thingport.runtime.coordination import LeasedService, LogWatcher, Services, WorkerNumber
from thingport.runtime.key_watch import KeyWatch
from thingport.runtime.readiness import Readiness
from thingport.runtime.shared_metrics import Snapshots, WorkersCollector, shared_dir
from thingport.runtime.stores import LogFactory, Stores, open_stores
from thingport.settings import Settings
from thingport.state.registry_cache import RegistryCache
from thingport.state.shared import SharedState, open_shared_state
from thingport.store.leases import lease_for
from thingport.store.sql_log import SqlMessageLog


@dataclass(frozen=True)
class Overrides:
    """What a caller supplies in place of what the settings would make. Every field defaults to the real
    thing; a process started with ``--workers`` hands its overrides to each worker (they must pickle)."""

    message_log: LogFactory = SqlMessageLog  # the durable log, over the writer connection build opens
    clock: Callable[[], float] = time.time  # wall clock of the device side (tokens, rate limits, presence)
    shared: SharedState | None = None  # rate limits and presence arbitration (default: the settings' Redis or none)


class App:
    """One process's parts, built and wired. ``start()`` before serving, ``stop()`` after: both may be called
    twice (the server's lifespan and ``serve`` each call them). An app that only opens the stores (a CLI
    command) is never started, and ``close()`` closes its stores."""

    def __init__(self, settings: Settings, stores: Stores, cache: RegistryCache, shared: SharedState,
                 ingest: DeviceIngest, dialects: DialectTable, commits: CommitSignal,
                 forwarding: LeasedService, log_watch: LogWatcher | None, worker: WorkerNumber, key_watch: KeyWatch,
                 readiness: Readiness, alarming: LeasedService, evaluator: AlarmEvaluator) -> None:
        self.settings = settings
        self.stores = stores
        self.cache = cache
        self.shared = shared
        self.ingest = ingest
        self.dialects = dialects  # the device endpoint's (runtime/device_server.py)
        self.metrics: CollectorRegistry = ingest.metrics.registry  # served at /metrics
        self._snapshots: Snapshots | None = None
        directory = shared_dir()
        if directory is not None:  # one of several workers: /metrics (worker 0's) shows them all
            self._snapshots = Snapshots(self.metrics, directory)
            self.metrics = CollectorRegistry(auto_describe=True)
            self.metrics.register(WorkersCollector(ingest.metrics.registry, directory))
        self.commits = commits
        self.forwarding = forwarding
        self.alarming = alarming  # the alarm evaluator, where its lease is held
        self.evaluator = evaluator
        self.log_watch = log_watch
        self.worker = worker
        self.key_watch = key_watch
        self.readiness = readiness
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        stores, ingest = self.stores, self.ingest
        # the messageIds this process hands out carry its leased number: unique across the cluster
        number = await self.worker.claim()
        self.settings = self.settings.model_copy(update={"worker_id": number})
        ingest.message_ids.use_worker(number)
        stores.log.start(asyncio.get_running_loop())
        await self.cache.start(await stores.registry.change_cursor(), self.settings.registry_poll_s)
        self.worker.keep(ingest.message_ids)
        if self.log_watch is not None:
            self.log_watch.start()
        await self.forwarding.start()
        await self.alarming.start()
        await self.shared.start()  # Redis, when clustered: a degraded start still serves
        await ingest.resume_presence()
        await ingest.presence.start(ingest.now_ms)
        self.key_watch.start()
        if self._snapshots is not None:
            self._snapshots.start()

    def management(self) -> Management:
        """The management service over this app's stores. Pulls wait for new messages on this process's
        commits once it serves; an app never started (a CLI command) answers them at once."""
        return Management(self.stores.registry, self.stores.log, self.settings.presence_timeout_s,
                          self.commits if self._started else None, self.stores.alarms)

    async def stop(self) -> None:
        if self._closed:
            return
        if self._started:
            if self._snapshots is not None:
                await self._snapshots.stop()  # what it counted until now: counters survive the worker
            await self.key_watch.stop()  # finished before the stores close under a reload
            await self.ingest.presence.stop()
            await self.shared.stop()
            await self.forwarding.stop()
            await self.alarming.stop()
            if self.log_watch is not None:
                await self.log_watch.stop()
            await self.cache.stop()
        self.close()  # writes what is queued: messageIds stamped with this process's number
        if self._started:
            await self.worker.release()

    def close(self) -> None:
        """Close the stores (``stop()`` does, after the services that use them)."""
        if not self._closed:
            self._closed = True
            self.stores.close()


def build(settings: Settings, overrides: Overrides | None = None, *, create: bool = True) -> App:
    """The process the settings describe, not started. ``create`` False: only existing stores (no data dir,
    database or master key is made; see ``open_stores``)."""
    overrides = overrides or Overrides()
    clock = overrides.clock
    stores = open_stores(settings, create, overrides.message_log)
    registry, log = stores.registry, stores.log
    cache = RegistryCache(registry)
    shared = overrides.shared or open_shared_state(settings, clock)
    metrics = DeviceMetrics()
    metrics.registry.register(stores.health)  # thingport_store_write_failures_total
    ProcessCollector(registry=metrics.registry)  # process_resident_memory_bytes, _cpu_seconds_total, _open_fds
    ingest = DeviceIngest(settings, registry, log, cache, TokenCodec(lambda: stores.keys.token_keys), clock,
                      metrics=metrics, shared=shared)
    commits = CommitSignal()
    log.on_commit(commits.notify)
    rules = RuleRunner(log, registry, metrics.registry, commits, alarms=AlarmService(stores.alarms, registry))
    evaluator = AlarmEvaluator(log, stores.alarms, registry, ingest.message_ids, clock, commits, metrics.registry,
                               settings.presence_timeout_s)

    async def held() -> list[int]:  # the cursors retention keeps the log after, beside the subscriptions'
        return [*await rules.held(), *await evaluator.held()]

    forwarder = Forwarder(log, registry, metrics.registry, commits, settings.retention_days,
                          settings.retention_max_mb, settings.retention_force,
                          retention_every_s=settings.retention_every_s, held=held)
    # the rules run where the forwarder runs: one lease, one writer of every cursor
    forwarding = LeasedService(lease_for(settings.database_url, settings.data_dir, "forwarder"),
                               Services(forwarder, rules), "forwarder")
    alarming = LeasedService(lease_for(settings.database_url, settings.data_dir, "alarms"), evaluator, "alarms")
    # other processes commit too: watch the log grow to wake this one's forwarder and pulls
    log_watch = LogWatcher(log.last_seq, commits.notify) if settings.database_url or settings.workers > 1 else None
    worker = WorkerNumber(lease_for(settings.database_url, settings.data_dir, "worker"), settings.worker_id)
    return App(
        settings, stores, cache, shared, ingest, DialectTable(ingest, DIALECTS), commits,
        forwarding, log_watch, worker, KeyWatch(stores.keys, ingest.keys_changed),
        Readiness(registry, log, stores.health, shared, clock), alarming, evaluator,
    )
