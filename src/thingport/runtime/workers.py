"""``serve --workers N``: N worker processes on one host, each a whole thingport instance.

Every worker binds the device port with SO_REUSEPORT (the kernel balances connections), shares the store
(and Redis, when set) with the others exactly as instances on other hosts do, and holds its own leased
worker number. Worker 0 also serves the management API. The supervisor restarts a worker that dies and
stops them all on SIGTERM/SIGINT.
"""

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

from thingport.runtime import shared_metrics
from thingport.runtime.tls import CertificateFiles
from thingport.settings import Settings

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
STOP_GRACE_S = 15.0


WorkerBody = Callable[[Settings, CertificateFiles, int], None]  # a module-level function: spawn pickles it


PARENT_CHECK_S = 1.0


def _stop_when_orphaned(parent: int) -> None:
    """A supervisor killed outright (SIGKILL, OOM) cannot stop its workers: each notices it is gone (it is
    re-parented) and stops itself as the supervisor would have (SIGTERM: a graceful stop), instead of
    serving on, unsupervised, on the shared port."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        log.warning("worker %d: the supervisor is gone; stopping", os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _worker(settings_doc: dict, files: CertificateFiles, index: int, body: WorkerBody, supervisor: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop (SIGTERM)
    _stop_when_orphaned(supervisor)  # its pid as it started us: it may be gone before this line runs
    settings = Settings.model_construct(**settings_doc)
    body(settings.model_copy(update={"worker_id": (settings.worker_id + index) % 1024}), files, index)


def supervise(settings: Settings, files: CertificateFiles, body: WorkerBody) -> None:
    """Runs ``body(settings, files, index)`` in ``settings.workers`` processes until SIGTERM/SIGINT."""
    if settings.database_url and settings.db_upgrade:
        from thingport.store import pg_schema

        pg_schema.upgrade(settings.database_url)  # once, here, not N times at once
    doc = settings.model_copy(update={"db_upgrade": False}).model_dump()
    # the workers' metrics snapshots (runtime/shared_metrics.py): a fresh directory per instance
    metrics_dir = Path(tempfile.mkdtemp(prefix="thingport-metrics-"))
    os.environ[shared_metrics.DIR_ENV] = str(metrics_dir)  # spawned workers inherit it
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start(index: int) -> BaseProcess:
        process = context.Process(target=_worker, args=(doc, files, index, body, os.getpid()),
                                  name=f"thingport-worker-{index}")
        process.start()
        return process

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = {index: start(index) for index in range(settings.workers)}
    print(f"thingport: {settings.workers} workers (pids {', '.join(str(p.pid) for p in workers.values())})", flush=True)
    while not stopping:
        time.sleep(0.2)
        for index, process in list(workers.items()):
            if not process.is_alive() and not stopping:
                assert process.pid is not None
                shared_metrics.mark_process_dead(metrics_dir, process.pid)
                log.warning("worker %d exited with %s; restarting it", index, process.exitcode)
                time.sleep(RESTART_DELAY_S)
                workers[index] = start(index)
    for process in workers.values():
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in workers.values():
        process.join(max(0.1, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.environ.pop(shared_metrics.DIR_ENV, None)
