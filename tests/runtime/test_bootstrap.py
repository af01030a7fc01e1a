"""runtime/bootstrap.py: one App per process, built from the settings (and the caller's overrides), started
and stopped once however often it is asked, and wired so that what one part does reaches the others."""

import ast
import asyncio
import time
from pathlib import Path

from thingport.core.message_ids import MAX_WORKER, SEQUENCE_BITS
from thingport.core.model import StoredMessage
from thingport.runtime.bootstrap import Overrides, build
from thingport.settings import load_settings
from thingport.state.limits import LocalLimits
from thingport.state.shared import SharedState
from thingport.store.leases import FileLease

RUNTIME = Path(__file__).resolve().parents[2] / "src" / "thingport" / "runtime"


def test_the_worker_number_is_claimed_at_start_and_carried_by_the_message_ids(tmp_path: Path) -> None:
    """Worker 5 is held by another process: this one takes 6, and its messageIds say so."""
    settings = load_settings(data_dir=tmp_path / "data", worker_id=5)
    rival = FileLease(settings.data_dir, "worker")
    assert rival.try_acquire(5)
    app = build(settings)

    async def main() -> tuple[int, int]:
        await app.start()
        await app.start()  # the server's lifespan starts it again: nothing happens twice
        try:
            return app.settings.worker_id, (app.ingest.message_ids.next_id() >> SEQUENCE_BITS) & MAX_WORKER
        finally:
            await app.stop()
            await app.stop()

    try:
        assert asyncio.run(main()) == (6, 6)
        assert FileLease(settings.data_dir, "worker").try_acquire(6)  # released at stop
    finally:
        rival.release()


def test_a_started_app_wakes_its_pulls_when_the_log_commits(tmp_path: Path) -> None:
    """The log's commits reach the management service of a started app (a pull waiting for messages
    returns as soon as one is stored); an app only built for a command answers at once."""
    app = build(load_settings(data_dir=tmp_path / "data"))

    async def main() -> tuple[float, float, int]:
        idle = app.management()
        await idle.create_product("p", "pk01")
        device = await idle.create_device("pk01", "dev-1")
        await idle.create_subscription("s", "pk01", "http", kinds=["raw"])
        started = time.monotonic()
        await idle.pull("s", wait_s=5)
        unstarted = time.monotonic() - started
        await app.start()
        try:
            management = app.management()
            pull = asyncio.create_task(management.pull("s", wait_s=10))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await app.stores.log.append(StoredMessage(
                app.ingest.message_ids.next_id(), device.id, "pk01", "dev-1", "aliyun", "/pk01/dev-1/user/t",
                b"x", int(time.time() * 1000), "custom", iot_id=device.device_id))
            found, _ = await pull
            return unstarted, time.monotonic() - started, len(found)
        finally:
            await app.stop()

    unstarted, woken_after, found = asyncio.run(main())
    assert unstarted < 1 and woken_after < 2 and found == 1


def test_overrides_replace_what_the_settings_would_make(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    shared = SharedState(LocalLimits(settings))
    app = build(settings, Overrides(clock=lambda: 1_900_000_000.0, shared=shared))
    try:
        assert app.ingest.shared is shared and app.shared is shared
        assert app.ingest.now_ms() == 1_900_000_000_000
    finally:
        app.close()


def test_readiness_through_the_app(tmp_path: Path) -> None:
    app = build(load_settings(data_dir=tmp_path / "data"))

    async def main() -> dict[str, str]:
        await app.start()
        try:
            return await app.readiness.check()
        finally:
            await app.stop()

    assert asyncio.run(main()) == {"database": "ok", "writes": "ok"}


def test_the_runtime_leaves_click_to_the_cli() -> None:
    """server.py used to raise click's UsageError; the CLI alone speaks click now (see test_server.py)."""
    imports = set()
    for path in RUNTIME.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imports.update((path.name, alias.name.partition(".")[0]) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imports.add((path.name, node.module.partition(".")[0]))
    assert {name for name, module in imports if module == "click"} == set()
    assert ("server.py", "uvicorn") in imports  # (the walk sees the imports)
