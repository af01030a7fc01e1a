"""CPU of the PostgreSQL log writer's batch, by batch size: what a batch costs fixed and per message.

    .venv/bin/python -m bench.commit_path [--durability fsync|os] [--sizes 1,8,16] [--messages 3000]
    PYTHONPATH=/tmp/old/src .venv/bin/python -m bench.commit_path     # the same for an older tree (A/B)

The writer's batch (``SqlMessageLog._write_batch``: the transaction that stores a batch) is called directly,
on this thread, against a fresh database on ``bench.run.PG_ADMIN_URL``'s server with 256 devices, each batch's
messages spread over them. Client CPU is this thread's (psycopg and the batch's Python), backend CPU the
connection's PostgreSQL process (``/proc``, so the server must be on this machine). Two processes of
thingport split one load into batches half as big: the fixed part of a batch is what they pay twice.
"""

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import psycopg

from bench.run import PG_ADMIN_URL, drop_database
from thingport.core.model import StoredMessage
from thingport.store import pg_schema
from thingport.store.executor import DbExecutor
from thingport.store.postgres_db import PostgresDatabase
from thingport.store.sql_log import SqlMessageLog

DEVICES = 256
PAYLOAD = b'{"id":"1024","temperature":21.5,"humidity":48.2,"voltage":3.31,"rssi":-67,"ts":1700000000000}'


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a local process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def provision(url: str) -> None:
    pg_schema.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO products (product_key, name, node_type, created_ms) VALUES ('pk', 'p', 'device', 0)")
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO devices (id, product_key, device_name, secret_sealed, created_ms, device_id)"
                " VALUES (%s, 'pk', %s, '\\x00', 0, %s)",
                [(i, f"dev{i}", f"iot{i}") for i in range(1, DEVICES + 1)])


def measure(url: str, durability: str, sizes: list[int], messages: int) -> None:
    writer = PostgresDatabase(url, durability)  # type: ignore[arg-type]
    reader = DbExecutor(PostgresDatabase(url), "bench-reader")
    log = SqlMessageLog(writer, reader)
    pid = writer.raw.info.backend_pid
    message_id = 0
    try:
        for size in sizes:
            batches = max(1, messages // size)
            client0, backend0, wall0 = time.thread_time(), backend_cpu_s(pid), time.perf_counter()
            for _ in range(batches):
                batch = []
                for _ in range(size):
                    message_id += 1
                    device = message_id * 7 % DEVICES + 1
                    batch.append(StoredMessage(message_id, device, "pk", f"dev{device}", "aliyun",
                                               f"/pk/dev{device}/user/bench", PAYLOAD, message_id))
                log._write_batch(batch)  # noqa: SLF001 - the transaction itself, without the writer thread
            client = (time.thread_time() - client0) / batches
            backend = (backend_cpu_s(pid) - backend0) / batches
            wall = (time.perf_counter() - wall0) / batches
            print(f"{durability} batch {size:3d}: client {client * 1e6:6.0f} us + backend {backend * 1e6:6.0f} us"
                  f" a batch = {(client + backend) / size * 1e6:5.0f} us a message (wall {wall * 1e6:.0f} us)",
                  flush=True)
        stored = writer.execute("SELECT count(*) FROM messages").fetchone()[0]
        print(f"{stored} messages stored", flush=True)
    finally:
        writer.close()
        reader.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durability", choices=("fsync", "os"), default="fsync")
    parser.add_argument("--sizes", default="1,8,16", help="comma-separated batch sizes [1,8,16]")
    parser.add_argument("--messages", type=int, default=3000, help="messages per batch size [3000]")
    args = parser.parse_args(argv)
    name = f"bench_commit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        provision(url)
        measure(url, args.durability, [int(size) for size in args.sizes.split(",")], args.messages)
    finally:
        drop_database(name)


if __name__ == "__main__":
    main(sys.argv[1:])
