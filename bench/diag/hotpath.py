"""Benchmark diagnostic: the device hot path in one process, for instruction counts (callgrind) and profiles.

The machine the bench runs on is shared, so wall and CPU time swing with other people's load; instructions
do not. This drives the real server of ``thingport serve`` (``runtime.bootstrap.build``, the device
endpoint's protocol, the dialects, the real SQLite group commit with fsync) through ``DeviceProtocol``
over an in-memory transport: 32 keep-alive connections, each sending its next request as soon as its
reply is written, as wrk does. No TLS and no socket: what is counted is thingport's request work, the
protocol's and the log writer's (its thread too), not the kernel's.

    python bench/diag/hotpath.py setup DIR             # provision DIR once (products, devices, models)
    python bench/diag/hotpath.py run DIR ROW COUNT     # ROW: topic, alink20, iotda-report, bare-raw
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p python bench/diag/hotpath.py run DIR topic 3000

Instructions per request: run twice (two COUNTs) and divide the difference of the totals by the
difference of the counts, so start-up and provisioning fall out (``measure`` does that).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvloop

BENCH_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH_DIR))

from run import ALINK20_BODY, IOTDA_MODEL, IOTDA_REPORT, TOPIC_PAYLOAD, TSL20, UNTHROTTLED, cli_json  # noqa: E402

from thingport.core.signing import aliyun_sign, huawei_password  # noqa: E402
from thingport.runtime.bootstrap import build  # noqa: E402
from thingport.runtime.device_protocol import DeviceProtocol, Endpoint  # noqa: E402
from thingport.runtime.device_server import endpoint_for  # noqa: E402
from thingport.settings import load_settings  # noqa: E402

CONNECTIONS = 32
ROWS = ("topic", "alink20", "iotda-report", "bare-raw")


def setup(data_dir: Path) -> None:
    """The bench's provisioning, through the CLI: a plain product, the 20-property TSL one, an IoTDA one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    devices: dict[str, Any] = {}
    for row, tsl in (("topic", None), ("alink20", TSL20)):
        model = []
        if tsl is not None:
            (data_dir / "tsl.json").write_text(json.dumps(tsl))
            model = ["--tsl", str(data_dir / "tsl.json")]
        product = cli_json(data_dir, "product", "create", "--name", f"hot-{row}", *model)
        devices[row] = cli_json(data_dir, "device", "create", "--product-key", product["productKey"],
                                "--name", "benchdev01")
    product = cli_json(data_dir, "product", "create", "--name", "hot-iotda")
    (data_dir / "iotda.json").write_text(json.dumps(IOTDA_MODEL))
    cli_json(data_dir, "product", "model", "import", "--product-key", product["productKey"],
             str(data_dir / "iotda.json"))
    devices["iotda-report"] = cli_json(data_dir, "device", "create", "--product-key", product["productKey"],
                                       "--name", "env-0001")
    (data_dir / "hotpath.json").write_text(json.dumps(devices))


class MemoryTransport(asyncio.Transport):
    """What DeviceProtocol writes to: each write is one whole reply (the protocol writes them whole)."""

    def __init__(self, on_reply: Any) -> None:
        super().__init__()
        self._on_reply = on_reply
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._on_reply(bytes(data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


class Client:
    """One keep-alive connection: sends ``request``, and the next as soon as a reply comes, ``count`` times."""

    def __init__(self, endpoint: Endpoint, request: bytes, count: int, expect: bytes, done: asyncio.Future) -> None:
        self.request, self.left, self.expect, self.done = request, count, expect, done
        self.loop = asyncio.get_running_loop()
        self.protocol: DeviceProtocol = endpoint.protocol()
        self.protocol.connection_made(MemoryTransport(self._reply))

    def start(self) -> None:
        self.loop.call_soon(self.protocol.data_received, self.request)

    def _reply(self, data: bytes) -> None:
        if self.expect not in data:
            raise SystemExit(f"unexpected reply: {data[:300]!r}")
        self.left -= 1
        if self.left:
            self.loop.call_soon(self.protocol.data_received, self.request)
        elif not self.done.done():
            self.done.set_result(None)


async def one(endpoint: Endpoint, request: bytes) -> bytes:
    replies: list[bytes] = []
    protocol = endpoint.protocol()
    protocol.connection_made(MemoryTransport(replies.append))
    protocol.data_received(request)
    for _ in range(1000):
        if replies:
            return replies[0]
        await asyncio.sleep(0.001)
    raise SystemExit("no reply")


async def drive(data_dir: Path, row: str, count: int) -> None:
    devices = json.loads((data_dir / "hotpath.json").read_text())
    os.environ.update(UNTHROTTLED)  # as the bench serves: the throttle's limits would be measured, not the server
    settings = load_settings(data_dir=data_dir, host="127.0.0.1", port=0)
    if row == "bare-raw":
        from bare_app import BareDialect  # the bench's do-nothing dialect

        from thingport.dialects.dialect import DialectTable

        app = None
        endpoint = endpoint_for(settings, DialectTable(None, {BareDialect: ("/topic/",)}))  # type: ignore[arg-type]
    else:
        app = build(settings)
        await app.start()
        endpoint = endpoint_for(settings, app.dialects)
    try:
        request, expect = await request_for(endpoint, row, devices)
        per_connection = max(1, count // CONNECTIONS)
        done = [asyncio.get_running_loop().create_future() for _ in range(CONNECTIONS)]
        clients = [Client(endpoint, request, per_connection, expect, d) for d in done]
        for client in clients:
            client.start()
        await asyncio.gather(*done)
    finally:
        if app is not None:
            await app.stop()


async def request_for(endpoint: Endpoint, row: str, devices: dict[str, Any]) -> tuple[bytes, bytes]:
    """The row's request with a fresh token (got through the endpoint), and what its good reply holds."""
    if row == "bare-raw":
        return request_bytes("POST", "/topic/x/y/user/bench", {"Content-Type": "application/octet-stream"},
                             TOPIC_PAYLOAD.encode()), b'"code":0,'
    if row in ("topic", "alink20"):
        device = devices[row]
        params = {"productKey": device["productKey"], "deviceName": device["deviceName"], "clientId": "hot-1"}
        sign = aliyun_sign(device["deviceSecret"], params, "hmacsha256")
        auth = json.dumps({**params, "signmethod": "hmacsha256", "sign": sign}).encode()
        reply = await one(endpoint, request_bytes("POST", "/auth", {"Content-Type": "application/json"}, auth))
        token = re.search(rb'"token":"([^"]+)"', reply)
        if token is None:
            raise SystemExit(f"/auth failed: {reply!r}")
        if row == "topic":
            path, body = f"/topic/{device['productKey']}/{device['deviceName']}/user/bench", TOPIC_PAYLOAD
        else:
            path = f"/topic/sys/{device['productKey']}/{device['deviceName']}/thing/event/property/post"
            body = ALINK20_BODY
        headers = {"password": token.group(1).decode(), "Content-Type": "application/octet-stream"}
        return request_bytes("POST", path, headers, body.encode()), b'"code":0,'
    device = devices["iotda-report"]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H")
    auth = json.dumps({"device_id": device["deviceId"], "sign_type": 0, "timestamp": stamp,
                       "password": huawei_password(device["deviceSecret"], stamp)}).encode()
    reply = await one(endpoint, request_bytes("POST", "/v5/device-auth", {"Content-Type": "application/json"}, auth))
    token = re.search(rb'"access_token":"([^"]+)"', reply)
    if token is None:
        raise SystemExit(f"/v5/device-auth failed: {reply!r}")
    headers = {"access_token": token.group(1).decode(), "Content-Type": "application/json"}
    path = f"/v5/devices/{device['deviceId']}/sys/properties/report"
    return request_bytes("POST", path, headers, IOTDA_REPORT.encode()), b'"message_id":'


def instructions(data_dir: Path, row: str, count: int) -> int:
    """Total instructions (every thread) of one ``run`` under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                        "run", str(data_dir), row, str(count)], check=True, capture_output=True)
        for line in out.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise SystemExit("no totals in the callgrind output")


def measure(data_dir: Path, rows: list[str], low: int, high: int) -> None:
    for row in rows:
        a, b = instructions(data_dir, row, low), instructions(data_dir, row, high)
        per = (b - a) / (high - low)
        print(f"{row}: {per:,.0f} instructions per request ({low} vs {high} requests)", flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup").add_argument("data_dir", type=Path)
    run = sub.add_parser("run")
    run.add_argument("data_dir", type=Path)
    run.add_argument("row", choices=ROWS)
    run.add_argument("count", type=int)
    measure_cmd = sub.add_parser("measure", help="instructions per request of each row, under callgrind")
    measure_cmd.add_argument("data_dir", type=Path)
    measure_cmd.add_argument("--rows", default=",".join(ROWS))
    measure_cmd.add_argument("--low", type=int, default=640)
    measure_cmd.add_argument("--high", type=int, default=2560)
    args = parser.parse_args(argv)
    if args.command == "setup":
        setup(args.data_dir)
    elif args.command == "run":
        uvloop.run(drive(args.data_dir, args.row, args.count))
    else:
        measure(args.data_dir, args.rows.split(","), args.low, args.high)


if __name__ == "__main__":
    main(sys.argv[1:])
