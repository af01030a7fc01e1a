"""The device endpoint's ASGI app: routes each request to its dialect, and owns start-up and shut-down."""

import asyncio
import logging
import time
from collections.abc import Callable

from thingport.coordination import LeasedService, LogWatcher, WorkerNumber
from thingport.core.errors import StoreUnavailable
from thingport.core.tokens import TokenCodec
from thingport.dialects.dialect import DialectTable
from thingport.dialects.http import Receive, Scope, Send, send_json
from thingport.dialects.table import DIALECTS
from thingport.forwarder import CommitSignal, Forwarder
from thingport.ingest.use_case import DeviceIngest
from thingport.service import Management
from thingport.settings import Settings
from thingport.state.registry_cache import RegistryCache
from thingport.store.leases import lease_for
from thingport.store.write_health import LOG_INTERVAL_S
from thingport.stores import Stores, open_stores
from thingport.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_NOT_FOUND = b'{"code":10001,"message":"param error: no such endpoint"}'


class DeviceApp:
    """Raw ASGI. Dialects are chosen by path (dialects/table.py), the cheapest dispatch there is."""

    def __init__(self, settings: Settings, stores: Stores | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._stores = stores
        self._clock = clock
        self.gateway: DeviceIngest | None = None
        self._dialects: DialectTable | None = None
        self._forwarding: LeasedService | None = None
        self._worker: WorkerNumber | None = None
        self._log_watch: LogWatcher | None = None
        self._key_watch: asyncio.Task[None] | None = None
        self._signal: CommitSignal | None = None
        self._cache: RegistryCache | None = None
        self._unready_logged: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            dialect = self._dialects.find(scope["path"])  # type: ignore[union-attr]
            if dialect is not None:
                await dialect(scope, receive, send)
            else:
                await send_json(send, _NOT_FOUND, status=404)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def startup(self) -> None:
        if self.gateway is not None:  # started already (by serve(), before the server's lifespan)
            return
        if self._stores is None:
            self._stores = open_stores(self.settings)
        stores = self._stores
        settings = self.settings
        self._worker = WorkerNumber(lease_for(settings.database_url, settings.data_dir, "worker"), settings.worker_id)
        # the messageIds this process hands out carry its leased number: unique across the cluster
        self.settings = settings = settings.model_copy(update={"worker_id": await self._worker.claim()})
        stores.log.start(asyncio.get_running_loop())
        self._cache = RegistryCache(stores.registry)
        await self._cache.start(await stores.registry.change_cursor(), self.settings.registry_poll_s)
        self.gateway = DeviceIngest(
            self.settings, stores.registry, stores.log, self._cache, TokenCodec(lambda: stores.keys.token_keys), self._clock
        )
        self._dialects = DialectTable(self.gateway, DIALECTS)
        self._signal = CommitSignal()
        stores.log.on_commit(self._signal.notify)
        gateway = self.gateway
        self._worker.keep(gateway.message_ids)
        if settings.database_url or settings.workers > 1:  # other processes commit too
            self._log_watch = LogWatcher(stores.log.last_seq, self._signal.notify)
            self._log_watch.start()
        metrics, signal = gateway.metrics.registry, self._signal
        metrics.register(stores.log.health)  # thingport_store_write_failures_total
        self._forwarding = LeasedService(
            lease_for(settings.database_url, settings.data_dir, "forwarder"),
            Forwarder(stores.log, stores.registry, metrics, signal, settings.retention_days, settings.retention_max_mb,
                      settings.retention_force),
            "forwarder",
        )
        await self._forwarding.start()
        await self.gateway.shared.start()  # Redis, when clustered: a degraded start still serves
        await self.gateway.resume_presence()
        await self.gateway.presence.start(self.gateway.now_ms)
        self._key_watch = asyncio.create_task(self._watch_keys(stores), name="key-watch")

    def management(self) -> Management:
        """The management service over this app's stores (for the API listener of the same process)."""
        assert self._stores is not None, "startup() first"
        return Management(self._stores.registry, self._stores.log, self.settings.presence_timeout_s, self._signal)

    async def readiness(self) -> dict[str, str]:
        """Named checks for /readyz, each "ok", "failing" or "degraded" (still serves). The reasons go to the
        log, never to this unauthenticated page (driver errors name hosts and ports).

        "writes" fails from a refused write until one commits again. A failing instance gets no devices
        from a load balancer, so nothing else would write: while failing, each readiness check makes one
        probe write (a row written and deleted, as much room as a report needs) and is ready again as
        soon as it commits."""
        assert self._stores is not None
        stores = self._stores
        try:
            await asyncio.wait_for(stores.registry.ping(), timeout=2.0)
            database = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            database = "failing"
            self._report_unready("database", exc)
        health = stores.log.health
        if health.failing("log"):
            try:
                await asyncio.wait_for(stores.log.probe_write(int(self._clock() * 1000)), timeout=2.0)
            except Exception as exc:  # noqa: BLE001 - counted and logged by the write health
                if not isinstance(exc, StoreUnavailable):
                    self._report_unready("writes", exc)
        writes = "failing" if health.failing("log") else "ok"
        return {"database": database, "writes": writes, **(self.gateway.shared.readiness() if self.gateway else {})}

    def _report_unready(self, check: str, exc: BaseException) -> None:
        """A readiness check's reason, logged at most once per ``LOG_INTERVAL_S`` per check."""
        now = time.monotonic()
        if now - self._unready_logged.get(check, -LOG_INTERVAL_S) >= LOG_INTERVAL_S:
            self._unready_logged[check] = now
            log.error("not ready: %s check failed: %s", check, exc)

    async def _watch_keys(self, stores: Stores) -> None:
        """Pick up a key rotation (or prune) made by ``thingport keys`` while serving. The ring may also be
        reloaded by a registry read that met a new key: the generation tells either way."""
        seen = stores.keys.generation
        while True:
            await asyncio.sleep(1.0)
            try:
                stores.keys.maybe_reload()
                if stores.keys.generation != seen:
                    seen = stores.keys.generation
                    if self.gateway:
                        self.gateway.keys_changed()
                    log.info("master keys reloaded: %d key(s)", len(stores.keys.masters))
            except Exception:
                log.exception("could not reload the master keys")

    async def shutdown(self) -> None:
        await cancel_and_wait(self._key_watch)  # finished before the stores close under a reload
        if self.gateway:
            await self.gateway.presence.stop()
            await self.gateway.shared.stop()
        if self._forwarding:
            await self._forwarding.stop()
        if self._log_watch:
            await self._log_watch.stop()
        if self._cache:
            await self._cache.stop()
        if self._stores:
            self._stores.close()  # writes what is queued: messageIds stamped with this process's number
        if self._worker:
            await self._worker.release()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
