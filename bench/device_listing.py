"""Device listings and counts at fleet size: how long a page of ``GET /api/devices`` (``Management.device_page``)
and a product's device counts take with a million devices, per filter, on SQLite and PostgreSQL.

    .venv/bin/python -m bench.device_listing                       # 1M devices, SQLite then PostgreSQL
    .venv/bin/python -m bench.device_listing --devices 100000 --backends sqlite

Two products: ``pkbig`` with 99% of the devices and ``pksmall`` with 1%, interleaved (100 small ones after
every 9,900 big ones); 1% of the big product's devices seen now (online), 0.1% of all disabled. Each case is
timed 5 times from the middle of the id range (median and max). Everything is made under a temporary
directory (removed at the end); the PostgreSQL database (made through ``test``) is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from thingport.manage.device_files import DeviceRow
from thingport.manage.service import Management
from thingport.runtime.bootstrap import build
from thingport.settings import load_settings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
CHUNK = 10_000  # devices imported per call: 99% big, 1% small


async def fill(m: Management, stores: Any, devices: int) -> None:
    await m.create_product("big", "pkbig")
    await m.create_product("small", "pksmall")
    big, small = CHUNK * 99 // 100, CHUNK // 100
    for chunk in range(devices // CHUNK):
        for pk, prefix, count in (("pkbig", "dev", big), ("pksmall", "sm", small)):
            rows = [DeviceRow(i + 1, f"{prefix}-{chunk:04d}-{i:05d}", f"S3cret-{chunk:04d}-{i:05d}-0123456789abcdef")
                    for i in range(count)]
            report = await m.import_devices(pk, rows, False, False)
            assert report.imported == count, report
    now = time.time_ns() // 1_000_000

    def seen(conn: Any) -> None:
        with conn.transaction():  # as the log writer marks devices seen; mod(): no % in PostgreSQL's paramstyle
            conn.execute("UPDATE devices SET last_seen_ms = ? WHERE product_key = 'pkbig' AND mod(id, 100) = 7",
                         (now + 3_600_000,))  # seen "in an hour": online for the whole run
            conn.execute("UPDATE devices SET enabled = 0 WHERE mod(id, 1000) = 3")

    await stores.registry._db.run(seen)


async def measure(m: Management, devices: int) -> list[tuple[str, float, float, str]]:
    mid = devices // 2
    cases: list[tuple[str, dict[str, Any]]] = [
        ("page of 100, big product", {"product_key": "pkbig", "after_id": mid}),
        ("page of 100, small product", {"product_key": "pksmall", "after_id": mid}),
        ("page of 100, big product, online", {"product_key": "pkbig", "online": True, "after_id": mid}),
        ("page of 100, big product, offline", {"product_key": "pkbig", "online": False, "after_id": mid}),
        ("page of 100, big product, disabled", {"product_key": "pkbig", "enabled": False, "after_id": mid}),
        ("page of 100, small product, online (none)", {"product_key": "pksmall", "online": True, "after_id": mid}),
        ("page of 100, every product, online", {"online": True, "after_id": mid}),
    ]
    rows = []
    for label, kwargs in cases:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            items, after = await m.device_page(limit=100, **kwargs)
            times.append((time.perf_counter() - started) * 1000)
        rows.append((label, statistics.median(times), max(times), f"{len(items)} items, next {after}"))
    for label, pk in (("counts, every product", None), ("counts, big product", "pkbig"),
                      ("counts, small product", "pksmall")):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            counts = await m.device_counts(pk)
            times.append((time.perf_counter() - started) * 1000)
        rows.append((label, statistics.median(times), max(times), str(sum(c.total for c in counts.values()))))
    return rows


def run_backend(backend: str, devices: int, root: Path) -> list[tuple[str, float, float, str]]:
    settings: dict[str, Any] = {"data_dir": root / backend}
    name = f"bench_listing_{uuid.uuid4().hex[:8]}"
    if backend == "postgresql":
        import psycopg

        from thingport.store import pg_schema

        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        settings["database_url"] = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        pg_schema.upgrade(settings["database_url"])
    try:
        app = build(load_settings(**settings), create=True)
        try:
            async def main() -> list[tuple[str, float, float, str]]:
                app.stores.log.start(asyncio.get_running_loop())
                started = time.perf_counter()
                await fill(app.management(), app.stores, devices)
                print(f"{backend}: {devices} devices imported in {time.perf_counter() - started:.0f} s")
                if backend == "postgresql":
                    def analyze(conn: Any) -> None:
                        conn.execute("ANALYZE devices")
                    await app.stores.registry._db.run(analyze)
                return await measure(app.management(), devices)

            return asyncio.run(main())
        finally:
            app.close()
    finally:
        if backend == "postgresql":
            import psycopg

            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1_000_000, help="a multiple of 10,000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            for label, median, worst, what in run_backend(backend, args.devices, Path(tmp)):
                print(f"{backend:10s} {label:45s} median {median:7.1f} ms  max {worst:7.1f} ms  {what}")


if __name__ == "__main__":
    main()
