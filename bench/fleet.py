"""Fleet-sized benchmark: what a million devices, ten million messages and ten thousand open connections
cost the real server (``python -m thingport serve``, started as bench/run.py starts it), against the same
measurements on a small fleet and an empty store, in one run. See bench/README.md and BENCHMARKS.md "Fleet".

    .venv/bin/python -m bench.fleet --scale full      # 1M devices, 100k authenticate, 10M messages, 10k conns
    .venv/bin/python -m bench.fleet --scale small     # the same steps, tiny (tests/bench runs it)
    .venv/bin/python -m bench.fleet --scale full --messages 2000000 --backends sqlite   # any figure overridden

Per backend (the embedded SQLite default, and PostgreSQL on a fresh database made through ``test``):

A. a store with ``base`` devices (bulk-imported) and no messages: RSS at start, /auth of every device
   (p50/p99), RSS after, report throughput (wrk, round robin over the devices' tokens), `device history` /
   `device messages` / `messages` latency through the management API.
B. ``thingport device import`` of the rest of the fleet (timed), then the log filled with ``messages``
   rows through the store's own append path (``SqlMessageLog.append_many``, big batches, server stopped;
   the oldest ``retention_share`` of them dated 30 days back), bytes on disk per message; the server
   again: RSS at start and after ``authenticate`` distinct devices signed in, the same auth, report and
   query figures (B/A is the issue's ratio, target >= 0.9; query p99 < 50 ms), then ``connections`` idle
   keep-alive TLS connections (one report each): RSS per connection and an active device's latency.
C. a server with ``RETENTION_DAYS=1`` on that store under continuous report load: ingest per second before
   and while retention (first run 60 s after start) deletes the old messages.

Servers and this client get the hard file-descriptor limit as their soft one. Everything is made under one
temporary directory (removed at the end unless --keep) and PostgreSQL databases are dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import resource
import shutil
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.run import (
    HOST,
    PG_ADMIN_URL,
    REPO,
    UNTHROTTLED,
    BenchError,
    ServeTarget,
    clean_env,
    cli_json,
    drop_database,
    filesystem_of,
    free_port,
    git_state,
    machine_busy,
    process_tree,
    running,
    tree_cpu,
    wrk_script,
)
from thingport.core.signing import aliyun_sign
from thingport.runtime.server import certificate_for
from thingport.settings import load_settings
from thingport.store.sqlite_db import db_path

BENCH_DIR = Path(__file__).resolve().parent
LUA = BENCH_DIR / "fleet_report.lua"
PAYLOAD = '{"temperature":21.5,"humidity":48.2,"voltage":3.31}'
OLD_DAYS = 30  # how far back the retention share of the filled messages is dated


@dataclass(frozen=True)
class Scale:
    devices: int  # registered in the end (base + one bulk import)
    base: int  # the small fleet A is measured on
    authenticate: int  # distinct devices that sign in on B
    messages: int  # rows written into the log before B
    connections: int  # idle keep-alive TLS connections held open on B
    seconds: int  # per wrk throughput run
    queries: int  # per query kind
    retention_share: float  # of the filled messages, the part old enough for RETENTION_DAYS=1 to delete
    retention_watch: int  # longest wait (s) for retention to finish deleting under load
    # C's server: first retention pass this long after start (the ingest before it is the yardstick; at full
    # scale 20 s left no "before": the first samples already saw deletions)
    retention_first_s: int = 20


SCALES = {
    "full": Scale(1_000_000, 1_000, 100_000, 10_000_000, 10_000, 10, 200, 0.1, 420, 45),
    "small": Scale(1_500, 100, 300, 10_000, 100, 1, 10, 0.2, 45),
}


# --- processes ----------------------------------------------------------------------------------------

def stamp() -> str:
    return f"{datetime.datetime.now(datetime.UTC):%H:%M:%S}"


def rss_kb(pid: int) -> int:
    """Resident memory of the server's whole process tree (VmRSS summed), in KiB."""
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def raise_fd_limit() -> int:
    """The soft file-descriptor limit raised to the hard one (children inherit it: the servers too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class FleetServer(ServeTarget):
    """``thingport serve`` on a data dir (SQLite) or a PostgreSQL database, remembering its API port."""

    def __init__(self, name: str, database_url: str, env: dict[str, str]) -> None:
        super().__init__(name, {**UNTHROTTLED, "THINGPORT_KEEP_ALIVE_S": "3600", **env})
        self.database_url = database_url
        self.api_port = 0

    def command(self, port: int, data_dir: Path) -> list[str]:
        self.api_port = free_port()
        extra = ["--database", self.database_url] if self.database_url else []
        return [sys.executable, "-m", "thingport", "serve", "--host", HOST, "--port", str(port),
                "--api-host", HOST, "--api-port", str(self.api_port), "--data-dir", str(data_dir), *extra]


# --- the store: devices, messages, sizes ---------------------------------------------------------------

def secret_of(n: int) -> str:
    return hashlib.sha256(f"fleet-{n}".encode()).hexdigest()[:32]


def name_of(n: int) -> str:
    return f"dev{n:07d}"


class Store:
    """One backend's store: where it is, and the CLI environment that reaches it."""

    def __init__(self, backend: str, data_dir: Path) -> None:
        self.backend, self.data_dir = backend, data_dir
        self.db_name = f"fleet_{os.getpid()}_{int(time.time())}"
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.db_name if backend == "postgresql" else ""
        self.created = False
        self.product_key = ""

    def env(self) -> dict[str, str]:
        return {"THINGPORT_DATABASE_URL": self.url} if self.url else {}

    def create(self) -> None:
        if self.url:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'CREATE DATABASE "{self.db_name}"')
            self.created = True
            out = subprocess.run([sys.executable, "-m", "thingport", "db", "upgrade", "--database", self.url, "--json"],
                                 env=clean_env(), capture_output=True, text=True, timeout=120, check=False)
            if out.returncode != 0:
                raise BenchError(f"thingport db upgrade failed: {out.stderr.strip()[-300:]}")
        self.product_key = cli_json(self.data_dir, "product", "create", "--name", "fleet", env=self.env())["productKey"]

    def drop(self) -> None:
        if self.created:
            drop_database(self.db_name)

    def import_devices(self, first: int, last: int) -> float:
        """``thingport device import`` of devices first..last-1 from a CSV; its wall time in seconds."""
        csv_file = self.data_dir / f"devices-{first}.csv"
        with open(csv_file, "w") as f:
            f.write("deviceName,deviceSecret\n")
            f.writelines(f"{name_of(n)},{secret_of(n)}\n" for n in range(first, last))
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "thingport", "device", "import", "--product-key",
                              self.product_key, str(csv_file), "--json", "--data-dir", str(self.data_dir)],
                             env=clean_env(self.env()), capture_output=True, text=True, timeout=3600, check=False)
        took = time.monotonic() - started
        csv_file.unlink()
        if out.returncode != 0:
            raise BenchError(f"thingport device import failed: {out.stderr.strip()[-400:]}")
        return took

    def sql(self, query: str) -> Any:
        """One value from a read-only query on the store."""
        if self.url:
            import psycopg

            with psycopg.connect(self.url, connect_timeout=5) as conn:
                row = conn.execute(query).fetchone()
        else:
            with closing(sqlite3.connect(f"file:{db_path(self.data_dir)}?mode=ro", uri=True, timeout=30)) as c:
                row = c.execute(query).fetchone()
        return None if row is None else row[0]

    def size_bytes(self) -> int:
        """Bytes the whole store takes on disk (SQLite: the database file and its WAL)."""
        if self.url:
            return int(self.sql(f"SELECT pg_database_size('{self.db_name}')"))
        path = db_path(self.data_dir)
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))

    def checkpoint(self) -> None:
        """Fold SQLite's WAL into the file (so the size is the data's); PostgreSQL: VACUUM ANALYZE messages."""
        if self.url:
            import psycopg

            with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                conn.execute("VACUUM ANALYZE messages")
        else:
            with closing(sqlite3.connect(db_path(self.data_dir), timeout=60)) as c:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def fill(self, count: int, devices: int, old_share: float) -> tuple[float, range]:
        """``count`` messages through the store's own append path (``append_many`` in big batches, what the
        server's group commit does), spread over the first ``devices`` devices, each with one property
        group (so history grows too); the oldest ``old_share`` dated OLD_DAYS back. Returns (seconds, the
        old messages' seqs)."""
        from thingport.core.model import StoredMessage, ValuesAt
        from thingport.runtime.bootstrap import build

        settings = load_settings(data_dir=self.data_dir, **({"database_url": self.url} if self.url else {}))
        app = build(settings, create=False)
        old = int(count * old_share)

        async def go() -> tuple[float, range]:
            log = app.stores.log
            log.start(asyncio.get_running_loop())
            manage = app.management()
            ids = [(await manage.device(self.product_key, name_of(n))).id for n in range(devices)]
            payload = PAYLOAD.encode()
            now = int(time.time() * 1000)
            start_ms = now - OLD_DAYS * 86_400_000
            batch, in_flight = 2_000, 4
            started = time.monotonic()
            first_old = last_old = await log.last_seq() + 1
            pending: set[asyncio.Task] = set()
            for first in range(0, count, batch):
                msgs = []
                for i in range(first, min(first + batch, count)):
                    at = start_ms + i if i < old else now - (count - i)
                    n = i % devices
                    msgs.append(StoredMessage(i + 1, ids[n], self.product_key, name_of(n), "aliyun",
                                              f"/{self.product_key}/{name_of(n)}/user/fleet", payload, at,
                                              properties=(ValuesAt(at, {"temperature": i % 400 / 10}),)))
                pending.add(asyncio.create_task(log.append_many(tuple(msgs))))
                if first + batch >= old > first:
                    await asyncio.gather(*pending)
                    pending.clear()
                    last_old = await log.last_seq()
                if len(pending) >= in_flight:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
            await asyncio.gather(*pending)
            return time.monotonic() - started, range(first_old, last_old + 1 if old else first_old)

        try:
            return asyncio.run(go())
        finally:
            app.close()


# --- a small keep-alive HTTPS client --------------------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection (TLS or not), requests one after another."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext | None) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=context, limit=1 << 20)
        return cls(reader, writer)

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                          .encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if not status_line:
            raise BenchError("the server closed a keep-alive connection")
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 in ms of latencies given in seconds."""
    if len(samples) < 2:
        return {"p50_ms": samples[0] * 1e3 if samples else float("nan"), "p99_ms": float("nan")}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1e3, "p99_ms": cuts[98] * 1e3}


def tls_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


async def authenticate(port: int, context: ssl.SSLContext, product_key: str, numbers: range, pid: int,
                       concurrency: int = 64) -> tuple[dict[str, float], dict[int, str], list[tuple[int, int]]]:
    """/auth of each device in ``numbers`` over ``concurrency`` keep-alive connections: latency
    percentiles, the tokens, and (devices signed in, server RSS KiB) samples."""
    latencies: list[float] = []
    tokens: dict[int, str] = {}
    samples: list[tuple[int, int]] = [(0, rss_kb(pid))]
    every = max(1, len(numbers) // 20)
    todo = iter(numbers)

    async def worker() -> None:
        conn = await Conn.open(port, context)
        try:
            for n in todo:
                params = {"productKey": product_key, "deviceName": name_of(n), "clientId": f"c{n}",
                          "timestamp": str(int(time.time() * 1000))}
                sign = aliyun_sign(secret_of(n), params, "hmacsha256")
                body = json.dumps({**params, "signmethod": "hmacsha256", "sign": sign}).encode()
                started = time.perf_counter()
                status, reply = await conn.request("POST", "/auth", {"Content-Type": "application/json"}, body)
                latencies.append(time.perf_counter() - started)
                doc = json.loads(reply)
                if status != 200 or doc.get("code") != 0:
                    raise BenchError(f"/auth of {name_of(n)} failed: {status} {reply[:200]!r}")
                tokens[n] = doc["info"]["token"]
                if len(tokens) % every == 0:
                    samples.append((len(tokens), rss_kb(pid)))
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    samples.append((len(tokens), rss_kb(pid)))
    return percentiles(latencies), tokens, samples


def report_path(product_key: str, n: int) -> str:
    return f"/topic/{product_key}/{name_of(n)}/user/fleet"


async def active_latency(port: int, context: ssl.SSLContext, product_key: str, n: int, token: str,
                         count: int) -> dict[str, float]:
    """One device reporting ``count`` times in a row on its own keep-alive connection."""
    conn = await Conn.open(port, context)
    latencies = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            status, reply = await conn.request("POST", report_path(product_key, n),
                                               {"password": token, "Content-Type": "application/octet-stream"},
                                               PAYLOAD.encode())
            latencies.append(time.perf_counter() - started)
            if status != 200 or b'"code":0,' not in reply:
                raise BenchError(f"report failed: {status} {reply[:200]!r}")
    finally:
        conn.close()
    return percentiles(latencies)


async def hold_connections(port: int, context: ssl.SSLContext, product_key: str, tokens: dict[int, str],
                           count: int, pid: int, active: tuple[int, str], probes: int) -> dict[str, Any]:
    """Open ``count`` keep-alive TLS connections, one report on each, and keep them open: server RSS as they
    grow, then an active device's latency while all are open (and just before, for the A/B)."""
    before = await active_latency(port, context, product_key, *active, probes)
    rss0 = rss_kb(pid)
    conns: list[Conn] = []
    numbers = list(tokens)
    samples = [(0, rss0)]
    every = max(1, count // 20)
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with gate:
            conn = await Conn.open(port, context)
            n = numbers[i % len(numbers)]
            status, reply = await conn.request("POST", report_path(product_key, n),
                                               {"password": tokens[n], "Content-Type": "application/octet-stream"},
                                               PAYLOAD.encode())
            if status != 200:
                raise BenchError(f"report on connection {i} failed: {status} {reply[:200]!r}")
            conns.append(conn)
            if len(conns) % every == 0:
                samples.append((len(conns), rss_kb(pid)))

    started = time.monotonic()
    try:
        await asyncio.gather(*(one(i) for i in range(count)))
        opened_s = time.monotonic() - started
        await asyncio.sleep(1)
        rss1 = rss_kb(pid)
        samples.append((len(conns), rss1))
        during = await active_latency(port, context, product_key, *active, probes)
        still = sum(1 for c in conns if not c.reader.at_eof())
    finally:
        for conn in conns:
            conn.close()
    return {"connections": count, "open_s": opened_s, "still_open": still, "rss_before_kb": rss0, "rss_open_kb": rss1,
            "rss_per_conn_kb": (rss1 - rss0) / count, "active_idle": before, "active_with_open": during,
            "samples": samples}


# --- wrk and the management API ---------------------------------------------------------------------------

def settle(pid: int, limit: float = 60.0, idle_cores: float = 0.1) -> float:
    """Wait (up to ``limit`` s) until the server is idle; how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = tree_cpu(pid)[0]
        time.sleep(0.5)
        if (tree_cpu(pid)[0] - before) / 0.5 < idle_cores:
            break
    return time.monotonic() - started


def wrk_reports(port: int, product_key: str, tokens: dict[int, str], seconds: int, workdir: Path,
                pid: int | None = None, connections: int = 32) -> dict[str, float]:
    """wrk (one thread, ``connections`` keep-alive connections) reporting round robin over the devices; with
    the server's ``pid``, its CPU per report too (robust where req/s swings with the machine's other load)."""
    devices = workdir / "wrk-devices.tsv"
    devices.write_text("".join(f"{report_path(product_key, n)}\t{t}\n" for n, t in tokens.items()))
    cpu_before = tree_cpu(pid)[0] if pid else 0.0
    doc = wrk_script(port, LUA, {"BENCH_DEVICES": str(devices), "BENCH_BODY": PAYLOAD}, seconds, connections)
    figures = {"rps": doc["good"] / doc["seconds"], "p50_ms": doc["p50_us"] / 1e3, "p99_ms": doc["p99_us"] / 1e3,
               "devices": len(tokens)}
    if pid and doc["good"]:
        figures["cpu_us"] = (tree_cpu(pid)[0] - cpu_before) / doc["good"] * 1e6
    return figures


def query_latency(api_port: int, key: str, product_key: str, device: str, count: int) -> dict[str, dict[str, float]]:
    """`device history`, `device messages` and `messages` through the management API, ``count`` each."""
    base = f"http://{HOST}:{api_port}"
    kinds = {
        "history": f"/api/devices/{product_key}/{device}/history?property=temperature&limit=100",
        "device_messages": f"/api/devices/{product_key}/{device}/messages?limit=50",
        "messages": "/api/messages?limit=100",
    }
    figures = {}
    for kind, path in kinds.items():
        latencies = []
        for _ in range(count):
            request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as reply:
                doc = json.loads(reply.read())
            latencies.append(time.perf_counter() - started)
        items = doc if isinstance(doc, list) else doc.get("items", [])
        figures[kind] = {**percentiles(latencies), "items": float(len(items))}
    return figures


# --- retention under load ---------------------------------------------------------------------------------

def old_messages(old: range) -> str:
    """The query counting what is left of the old messages (counted: on PostgreSQL seq has gaps)."""
    return f"SELECT count(*) FROM messages WHERE seq >= {old.start} AND seq < {old.stop}"


def watch_retention(store: Store, port: int, tokens: dict[int, str], old: range, old_count: int, limit: int,
                    workdir: Path) -> dict[str, Any]:
    """Continuous reports (wrk, 32 connections) on a RETENTION_DAYS=1 server whose first retention pass
    (``retention_first_s`` after start) deletes the old messages: ingest and deletions per 1 s window.
    ``old_count`` is counted before that server starts: on a loaded machine its first pass may come before
    the watch does."""
    product_key = store.product_key
    remaining = old_messages(old)
    arrived = f"SELECT count(*) FROM messages WHERE seq > {int(store.sql('SELECT max(seq) FROM messages') or 0)}"
    samples: list[tuple[float, int, int]] = []  # (s since start, messages arrived since, old messages left)
    stop = threading.Event()
    devices = workdir / "wrk-devices.tsv"
    devices.write_text("".join(f"{report_path(product_key, n)}\t{t}\n" for n, t in tokens.items()))
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(1.0):
            try:
                left = int(store.sql(remaining))
                samples.append((time.monotonic() - started, int(store.sql(arrived) or 0), left))
                if left == 0:
                    stop.wait(5)  # a few windows after the deletion
                    stop.set()
            except (sqlite3.Error, OSError):
                continue

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    proc = subprocess.Popen(["wrk", "-t1", "-c32", f"-d{limit}s", "-s", str(LUA), f"https://{HOST}:{port}/"],
                            env={**os.environ, "BENCH_DEVICES": str(devices), "BENCH_BODY": PAYLOAD},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        stop.wait(limit)
    finally:
        stop.set()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        thread.join(timeout=30)
    rates = [(b[0], (b[1] - a[1]) / (b[0] - a[0]), (a[2] - b[2]) / (b[0] - a[0]))
             for a, b in zip(samples, samples[1:], strict=False)]
    before = [r for t, r, gone in rates if gone == 0 and t > 2 and all(d == 0 for _, _, d in rates if _ <= t)]
    deleting = [(t, r) for t, r, gone in rates if gone > 0]
    return {
        "old": old_count,
        "deleted": old_count - (samples[-1][2] if samples else old_count),
        "finished": bool(samples) and samples[-1][2] == 0,
        "ingest_before": statistics.median(before) if before else float("nan"),
        "ingest_deleting_median": statistics.median(r for _, r in deleting) if deleting else float("nan"),
        "ingest_deleting_min": min((r for _, r in deleting), default=float("nan")),
        "deleting_s": len(deleting),
        "series": rates,
    }


# --- one backend ------------------------------------------------------------------------------------------

def run_backend(backend: str, scale: Scale, workdir: Path, cert_files: tuple[Path, Path]) -> dict[str, Any]:
    data_dir = workdir / f"data-{backend}"
    data_dir.mkdir()
    for f in cert_files:
        shutil.copy2(f, data_dir / f.name)
    context = tls_context(cert_files[0])
    store = Store(backend, data_dir)
    out: dict[str, Any] = {"backend": backend}
    try:
        store.create()
        key = cli_json(data_dir, "apikey", "create", "--name", "fleet", "--role", "read", env=store.env())["key"]
        out["import_base_s"] = store.import_devices(0, scale.base)
        server = FleetServer(f"{backend}-a", store.url, {})
        print(f"{stamp()} [{backend}] A: {scale.base:,} devices, empty log", flush=True)
        with running(server, data_dir, workdir, []) as (port, pid):
            out["a"] = phase(store, server, port, pid, context, key, range(scale.base), scale, workdir)

        print(f"{stamp()} [{backend}] importing {scale.devices - scale.base:,} devices", flush=True)
        out["import_s"] = store.import_devices(scale.base, scale.devices)
        out["devices"] = int(store.sql("SELECT count(*) FROM devices"))
        store.checkpoint()
        size0, rows0 = store.size_bytes(), int(store.sql("SELECT count(*) FROM messages"))
        print(f"{stamp()} [{backend}] writing {scale.messages:,} messages", flush=True)
        out["fill_s"], old = store.fill(scale.messages, scale.base, scale.retention_share)
        store.checkpoint()
        out["messages"] = int(store.sql("SELECT count(*) FROM messages"))
        out["bytes_per_message"] = (store.size_bytes() - size0) / max(1, out["messages"] - rows0)
        out["store_bytes"] = store.size_bytes()

        print(f"{stamp()} [{backend}] B: {out['devices']:,} devices, {out['messages']:,} messages", flush=True)
        server = FleetServer(f"{backend}-b", store.url, {})
        with running(server, data_dir, workdir, []) as (port, pid):
            out["b"] = phase(store, server, port, pid, context, key, range(scale.devices - scale.authenticate,
                                                                             scale.devices), scale, workdir)
            tokens = out["b"].pop("tokens")
            active = next(iter(tokens.items()))
            print(f"{stamp()} [{backend}] {scale.connections:,} open connections", flush=True)
            out["connections"] = asyncio.run(hold_connections(port, context, store.product_key, tokens,
                                                              scale.connections, pid, active,
                                                              max(20, scale.queries)))
        print(f"{stamp()} [{backend}] C: retention under load", flush=True)
        old_count = int(store.sql(old_messages(old)))
        server = FleetServer(f"{backend}-c", store.url, {"THINGPORT_RETENTION_DAYS": "1",
                                                         "THINGPORT_RETENTION_EVERY_S": str(scale.retention_first_s)})
        with running(server, data_dir, workdir, []) as (port, pid):
            out["retention"] = watch_retention(store, port, dict(list(tokens.items())[:scale.base]), old,
                                               old_count, scale.retention_watch, workdir)
        out["a"].pop("tokens", None)
        return out
    finally:
        store.drop()
        shutil.rmtree(data_dir, ignore_errors=True)


def phase(store: Store, server: FleetServer, port: int, pid: int, context: ssl.SSLContext, key: str,
          numbers: range, scale: Scale, workdir: Path) -> dict[str, Any]:
    """RSS, auth of ``numbers``, report throughput over their tokens, query latency: one server's figures."""
    time.sleep(1)
    figures: dict[str, Any] = {"rss_start_kb": rss_kb(pid)}
    cpu_before = machine_busy()
    started = time.monotonic()
    figures["auth"], tokens, figures["rss_samples"] = asyncio.run(
        authenticate(port, context, store.product_key, numbers, pid))
    figures["auth_s"] = time.monotonic() - started
    figures["machine_busy_cores"] = (machine_busy() - cpu_before) / figures["auth_s"]
    figures["authenticated"] = len(tokens)
    figures["rss_after_auth_kb"] = rss_kb(pid)
    figures["settle_s"] = settle(pid)  # what signing in left to do (status messages, caches) is not the reports'
    # like for like with A: as many devices reporting in turn as A has; then every device signed in, twice (the
    # first pass is each device's first report: its throttle bucket and verified token are made then)
    same = dict(list(tokens.items())[:scale.base])
    figures["reports"] = wrk_reports(port, store.product_key, same, scale.seconds, workdir, pid)
    if len(tokens) > len(same):
        figures["reports_all_first"] = wrk_reports(port, store.product_key, tokens, scale.seconds, workdir, pid)
        figures["reports_all_again"] = wrk_reports(port, store.product_key, tokens, scale.seconds, workdir, pid)
    figures["queries"] = query_latency(server.api_port, key, store.product_key, name_of(0), scale.queries)
    figures["tokens"] = tokens
    return figures


# --- report -------------------------------------------------------------------------------------------------

def cpu(figures: dict[str, float]) -> str:
    return f"{figures['cpu_us']:.0f}" if "cpu_us" in figures else "-"


def ratio(b: float, a: float) -> str:
    return f"{b / a:.2f}" if a else "-"


def markdown(results: list[dict[str, Any]], scale: Scale, scale_name: str, info: dict[str, str],
             png: str | None) -> str:
    lines = [f"### Fleet run {info['date']} (scale {scale_name})", ""]
    lines += [f"- {k}: {v}" for k, v in info.items() if k != "date"]
    lines += [f"- scale: {scale.devices:,} devices registered ({scale.base:,} + one bulk import), "
              f"{scale.authenticate:,} "
              f"authenticate on B against {scale.base:,} on A, {scale.messages:,} messages written through "
              f"`SqlMessageLog.append_many` (2,000 a call, 4 in flight, server stopped), {scale.connections:,} "
              f"connections; wrk -t1 -c32 {scale.seconds} s per throughput figure", ""]
    lines += ["| | " + " | ".join(r["backend"] for r in results) + " |", "|---|" + "---|" * len(results)]

    def row(label: str, cell: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(r) for r in results) + " |")

    row("bulk import (`device import`), devices/s",
        lambda r: f"{r['devices'] - scale.base:,} in {r['import_s']:.1f} s = "
                  f"{(r['devices'] - scale.base) / r['import_s']:,.0f}/s")
    row("RSS at start, A / B (MiB)",
        lambda r: f"{r['a']['rss_start_kb'] / 1024:.0f} / {r['b']['rss_start_kb'] / 1024:.0f}")
    row("RSS after auth, A / B (MiB)",
        lambda r: f"{r['a']['rss_after_auth_kb'] / 1024:.0f} ({r['a']['authenticated']:,}) / "
                  f"{r['b']['rss_after_auth_kb'] / 1024:.0f} ({r['b']['authenticated']:,})")
    row("auth p50 / p99 ms, A -> B",
        lambda r: f"{r['a']['auth']['p50_ms']:.1f}/{r['a']['auth']['p99_ms']:.1f} -> "
                  f"{r['b']['auth']['p50_ms']:.1f}/{r['b']['auth']['p99_ms']:.1f}")
    row("auth/s (64 connections, Python client), A -> B",
        lambda r: f"{r['a']['authenticated'] / r['a']['auth_s']:,.0f} -> "
                  f"{r['b']['authenticated'] / r['b']['auth_s']:,.0f}")
    row(f"reports/s A -> B, {scale.base:,} devices in turn (**B/A**, target >= 0.9)",
        lambda r: f"{r['a']['reports']['rps']:,.0f} -> {r['b']['reports']['rps']:,.0f} "
                  f"(**{ratio(r['b']['reports']['rps'], r['a']['reports']['rps'])}**)")
    row("server CPU us/report A -> B (B/A by CPU)",
        lambda r: f"{cpu(r['a']['reports'])} -> {cpu(r['b']['reports'])} "
                  f"({ratio(r['a']['reports'].get('cpu_us', 0), r['b']['reports'].get('cpu_us', 0))})")
    row(f"B, all {scale.authenticate:,} signed-in devices in turn: reports/s, CPU us/report, p99 ms; "
        "first pass -> second",
        lambda r: " -> ".join(f"{p['rps']:,.0f}, {cpu(p)}, {p['p99_ms']:.0f}"
                              for p in (r['b'].get('reports_all_first'), r['b'].get('reports_all_again')) if p))
    row("B: s for the server to settle after signing in", lambda r: f"{r['b'].get('settle_s', float('nan')):.1f}")
    for kind in ("history", "device_messages", "messages"):
        row(f"`{kind}` p50/p99 ms, A -> B (p99 target < 50)",
            lambda r, k=kind: f"{r['a']['queries'][k]['p50_ms']:.1f}/{r['a']['queries'][k]['p99_ms']:.1f} -> "
                              f"{r['b']['queries'][k]['p50_ms']:.1f}/{r['b']['queries'][k]['p99_ms']:.1f}")
    row("messages written, rows/s",
        lambda r: f"{scale.messages:,} in {r['fill_s']:.0f} s = {scale.messages / r['fill_s']:,.0f}/s")
    row("bytes on disk per message (with history row)", lambda r: f"{r['bytes_per_message']:.0f}")
    row("store size (MiB)", lambda r: f"{r['store_bytes'] / 2**20:,.0f}")
    row("open connections: RSS per connection (KiB)",
        lambda r: f"{r['connections']['rss_per_conn_kb']:.1f} ({r['connections']['still_open']:,} of "
                  f"{r['connections']['connections']:,} open, opened in {r['connections']['open_s']:.0f} s)")
    row("active device p50/p99 ms, none -> all open",
        lambda r: f"{r['connections']['active_idle']['p50_ms']:.2f}/{r['connections']['active_idle']['p99_ms']:.2f} -> "
                  f"{r['connections']['active_with_open']['p50_ms']:.2f}/{r['connections']['active_with_open']['p99_ms']:.2f}")
    row("retention: ingest msgs/s before -> while deleting (median / worst 1 s)",
        lambda r: f"{r['retention']['ingest_before']:,.0f} -> {r['retention']['ingest_deleting_median']:,.0f} / "
                  f"{r['retention']['ingest_deleting_min']:,.0f}")
    row("retention: deleted, in s",
        lambda r: f"{r['retention']['deleted']:,} of {r['retention']['old']:,} in {r['retention']['deleting_s']:.0f} s"
                  + ("" if r['retention']['finished'] else " (not finished)"))
    if png:
        lines += ["", f"![fleet run]({png})"]
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], png: Path, title: str) -> str | None:
    """RSS against devices signed in and against open connections, and ingest per second through retention."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]')"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in results:
        for label, samples in (("A", r["a"]["rss_samples"]), ("B", r["b"]["rss_samples"])):
            axes[0].plot([n for n, _ in samples], [kb / 1024 for _, kb in samples], marker=".",
                         label=f"{r['backend']} {label}")
        conns = r["connections"]["samples"]
        axes[1].plot([n for n, _ in conns], [kb / 1024 for _, kb in conns], marker=".", label=r["backend"])
        series = r["retention"]["series"]
        axes[2].plot([t for t, _, _ in series], [rate for _, rate, _ in series], label=f"{r['backend']} ingest")
        axes[2].plot([t for t, _, d in series], [d for _, _, d in series], linestyle=":",
                     label=f"{r['backend']} deleted")
    axes[0].set(title="server RSS vs devices signed in", xlabel="devices authenticated", ylabel="MiB")
    axes[1].set(title="server RSS vs open keep-alive TLS connections", xlabel="connections", ylabel="MiB")
    axes[2].set(title="reports/s and deletions/s per second (retention)", xlabel="s since the server answered",
                ylabel="per s")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The fleet-sized benchmark (see bench/README.md).")
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    for name in ("devices", "authenticate", "messages", "connections", "seconds"):
        parser.add_argument(f"--{name}", type=int, default=None, help=f"override the scale's {name}")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here as JSON")
    parser.add_argument("--png", type=Path, default=None, help="write the chart here (e.g. docs/fleet.png)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs)")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    overrides = {k: getattr(args, k) for k in ("devices", "authenticate", "messages", "connections", "seconds")
                 if getattr(args, k) is not None}
    scale = Scale(**{**scale.__dict__, **overrides})
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(backends) - {"sqlite", "postgresql"} or not backends:
        parser.error("--backends takes sqlite and/or postgresql")
    if not scale.base < scale.devices or scale.authenticate > scale.devices - scale.base:
        parser.error("--devices must exceed the base fleet by at least --authenticate")
    if not shutil.which("wrk"):
        print("error: wrk is not installed; on Debian/Ubuntu: apt-get install -y wrk", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    limit = raise_fd_limit()
    if limit < scale.connections + 1000:
        parser.error(f"the file-descriptor limit ({limit}) is below --connections + 1000")
    workdir = Path(tempfile.mkdtemp(prefix="thingport-fleet-"))
    results = []
    now = datetime.datetime.now(datetime.UTC)
    try:
        files = certificate_for(load_settings(data_dir=workdir / "cert"))
        for backend in backends:
            results.append(run_backend(backend, scale, workdir, (files.cert, files.key)))
            if args.json:  # each backend's figures as soon as they are in (a long run may be cut short)
                args.json.write_text(json.dumps({"scale": scale.__dict__, "results": results}, indent=1))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    info = {"date": f"{now:%Y-%m-%d %H:%M} UTC", "commit": git_state(), "machine":
            f"{os.cpu_count()} cores, {platform_line()}; unpinned (server, wrk, client and PostgreSQL share them)",
            "data": filesystem_of(Path(tempfile.gettempdir())), "file-descriptor limit": str(limit)}
    note = plot(results, args.png, f"thingport fleet {now:%Y-%m-%d %H:%M} UTC") if args.png else None
    png_link = None
    if args.png and note is None:
        where = args.png.resolve()
        png_link = os.path.relpath(where, REPO) if where.is_relative_to(REPO) else str(args.png)
    print(markdown(results, scale, args.scale, info, png_link))
    if note:
        print(note)
    if args.json:
        args.json.write_text(json.dumps({"scale": scale.__dict__, "info": info, "results": results}, indent=1))
    return 0


def platform_line() -> str:
    import platform

    return f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"


if __name__ == "__main__":
    sys.exit(main())
