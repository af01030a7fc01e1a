"""What alarm definitions cost ingest, and whether the evaluator keeps up: the real server (SQLite, one
process) under wrk property reports from many devices, with no alarm definitions, then with 10 on the
product (every report moves all 10; each device raises each alarm once), then with none again; after each
load, how long until the evaluator has judged the whole log (its cursor reaches the log's end).

    .venv/bin/python -m bench.alarms [--seconds 10] [--devices 50] [--connections 16]

Prints one Markdown table. Compare the rows with each other (one run, one machine), not with other runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from bench.run import UNTHROTTLED, wrk_script
from thingport.core.signing import aliyun_sign
from thingport.store.sqlite_db import db_path

HOST = "127.0.0.1"
LUA = Path(__file__).resolve().parent / "fleet_report.lua"
PROPERTIES = 10
TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "placeholder"},
    "properties": [{"identifier": f"p{i}", "name": f"P{i}", "accessMode": "r", "required": False,
                    "dataType": {"type": "int", "specs": {"min": "0", "max": "100", "step": "1"}}}
                   for i in range(PROPERTIES)],
    "events": [], "services": [],
}
BODY = json.dumps({"id": "1", "version": "1.0", "params": {f"p{i}": 50 for i in range(PROPERTIES)}})


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def thingport(data_dir: Path, *args: str) -> object:
    out = subprocess.run([sys.executable, "-m", "thingport", *args, "--data-dir", str(data_dir), "--json"],
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def token(port: int, cert: Path, pk: str, dn: str, secret: str) -> str:
    import http.client
    import ssl

    params = {"productKey": pk, "deviceName": dn, "clientId": dn, "timestamp": str(int(time.time() * 1000))}
    sign = aliyun_sign(secret, params, "hmacsha256")
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    conn = http.client.HTTPSConnection(HOST, port, context=context, timeout=10)
    conn.request("POST", "/auth", json.dumps({**params, "signmethod": "hmacsha256", "sign": sign}),
                 {"Content-Type": "application/json"})
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return str(doc["info"]["token"])


def wrk(port: int, devices: Path, seconds: int, connections: int) -> dict[str, float]:
    doc = wrk_script(port, LUA, {"BENCH_DEVICES": str(devices), "BENCH_BODY": BODY}, seconds, connections)
    return {"rps": doc["good"] / doc["seconds"], "p50_ms": doc["p50_us"] / 1e3, "p99_ms": doc["p99_us"] / 1e3}


def catch_up_s(data_dir: Path, stopped: float, timeout: float = 60.0) -> float:
    """Seconds from the end of the load until the evaluator's cursor is at the log's last message."""
    with closing(sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True, timeout=5)) as conn:
        last = conn.execute("SELECT max(seq) FROM messages WHERE kind <> 'alarm'").fetchone()[0]
        while time.monotonic() - stopped < timeout:
            if conn.execute("SELECT cursor FROM alarm_cursor").fetchone()[0] >= last:
                return time.monotonic() - stopped
            time.sleep(0.01)
    return float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-alarms-") as tmp:
        data_dir = Path(tmp) / "data"
        tsl = Path(tmp) / "tsl.json"
        tsl.write_text(json.dumps(TSL))
        pk = thingport(data_dir, "product", "create", "--name", "bench", "--tsl", str(tsl))["productKey"]  # type: ignore[index]
        devices = [thingport(data_dir, "device", "create", "--product-key", pk, "--name", f"bench-{n:04d}")
                   for n in range(args.devices)]
        port = free_port()
        env = {**os.environ, **UNTHROTTLED, "THINGPORT_LOG_LEVEL": "warning"}
        server = subprocess.Popen([sys.executable, "-m", "thingport", "serve", "--host", HOST, "--port", str(port),
                                   "--api-port", str(free_port()), "--data-dir", str(data_dir)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            cert = data_dir / "tls-cert.pem"
            deadline = time.monotonic() + 30
            while True:
                try:
                    tokens = [token(port, cert, pk, d["deviceName"], d["deviceSecret"]) for d in devices]  # type: ignore[index]
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            table = Path(tmp) / "devices.tsv"
            table.write_text("".join(f"/topic/sys/{pk}/{d['deviceName']}/thing/event/property/post\t{t}\n"  # type: ignore[index]
                                     for d, t in zip(devices, tokens, strict=True)))
            rows = []
            for label, define in (("no alarm definitions", False), ("10 alarm definitions", True),
                                  ("none again", None)):
                if define:
                    for i in range(PROPERTIES):
                        thingport(data_dir, "alarm", "define", "--product-key", pk, "--name", f"a{i}",
                                  "--severity", "minor", "--when", f"p{i} > {40 + i}",
                                  "--clear-when", f"p{i} < {30 + i}", *(["--for", "1m"] if i % 2 else []))
                elif define is None:
                    for i in range(PROPERTIES):
                        thingport(data_dir, "alarm", "delete-definition", "--product-key", pk, "--name", f"a{i}")
                time.sleep(2)  # the evaluator has loaded them
                result = wrk(port, table, args.seconds, args.connections)
                result["catch_up_s"] = catch_up_s(data_dir, time.monotonic())
                rows.append((label, result))
            alarms = thingport(data_dir, "alarm", "list", "--state", "active", "--state", "cleared", "--limit", "1000")
        finally:
            server.terminate()
            server.wait(20)
    print(f"| load ({args.devices} devices, {args.connections} connections, {args.seconds} s) | reports/s | p50 ms |"
          " p99 ms | evaluator caught up after the load |")
    print("|---|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['catch_up_s']:.2f} s |")
    print(f"\nalarms raised: {len(alarms)}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
