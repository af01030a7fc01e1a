"""Shared pieces of the hostile-input suite: the protocols' error tables (written from the README and the
specs, not imported from src), state snapshots read straight from SQLite, request helpers, a test bed.

Every hostile request must get the protocol's own error and leave the server's state as it was:
* Alibaba: HTTP 200, ``{"code": N, "message": "<platform text>[: detail]"}`` with N from the table;
* IoTDA: its HTTP status and ``{"error_code", "error_msg"}`` from the table;
* never a 5xx, never the internal-error rows (10000, 500 IOTDA.000001) for bad input;
* a 400 ``Invalid HTTP request received.`` from the HTTP layer (uvicorn) is fine for broken framing.
"""

from __future__ import annotations

import datetime
import json
import socket
import sqlite3
import ssl
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import DeviceClient, Reply, ServerProcess, cli
from thingport.core.signing import aliyun_sign, huawei_password

# --- the protocols' error tables ---------------------------------------------------------------

ALIYUN_MESSAGES = {
    10000: "common error",
    10001: "param error",
    20000: "auth check error",
    20001: "token is expired",
    20002: "token is null",
    20003: "check token error",
    20004: "update session error",
    30001: "publish message error",
    40000: "request too many",
}
ALIYUN_INTERNAL = 10000

# (HTTP status, error_code) rows of spec/huawei-https.md; 404 + IOTDA.000006 is thingport's "no such API"
IOTDA_ROWS = {
    (400, "IOTDA.000006"),
    (401, "IOTDA.000002"),
    (403, "IOTDA.000004"),
    (403, "IOTDA.021101"),
    (403, "IOTDA.021102"),
    (400, "IOTDA.021104"),
    (403, "IOTDA.021103"),
    (403, "IOTDA.021105"),
    (404, "IOTDA.000006"),
}
IOTDA_INTERNAL = (500, "IOTDA.000001")


def http_layer_refusal(reply: Reply) -> bool:
    """uvicorn's own 400 for framing it could not parse (acceptable for malformed HTTP)."""
    return reply.status == 400 and reply.headers.get("content-type", "").startswith("text/plain")


def assert_aliyun_error(reply: Reply, expected: set[int] | frozenset[int] | None = None,
                        http_layer_ok: bool = False) -> int:
    """An Alibaba protocol error (never success, never 10000); returns the code (0 for an HTTP-layer 400)."""
    if http_layer_ok and http_layer_refusal(reply):
        return 0
    assert reply.status == 200, (reply.status, reply.raw[:300])
    assert int(reply.headers["content-length"]) == len(reply.raw)
    assert "transfer-encoding" not in reply.headers
    doc = json.loads(reply.raw)
    assert isinstance(doc, dict) and set(doc) == {"code", "message"}, doc
    code = doc["code"]
    assert code != ALIYUN_INTERNAL, f"internal error for bad input: {doc}"
    assert code in ALIYUN_MESSAGES, doc
    text = ALIYUN_MESSAGES[code]
    assert doc["message"] == text or doc["message"].startswith(text + ": "), doc
    if expected is not None:
        assert code in expected, (doc, expected)
    return code


def assert_iotda_error(reply: Reply, expected: set[tuple[int, str]] | None = None,
                       http_layer_ok: bool = False) -> tuple[int, str]:
    """An IoTDA protocol error (never 2xx, never 5xx); returns (status, error_code)."""
    if http_layer_ok and http_layer_refusal(reply):
        return (400, "")
    assert reply.status < 500, (reply.status, reply.raw[:300])
    assert reply.status != 200, reply.raw[:300]
    assert int(reply.headers["content-length"]) == len(reply.raw)
    doc = json.loads(reply.raw)
    assert isinstance(doc, dict) and set(doc) == {"error_code", "error_msg"}, doc
    row = (reply.status, doc["error_code"])
    assert row != IOTDA_INTERNAL and row in IOTDA_ROWS, (row, doc)
    assert isinstance(doc["error_msg"], str) and doc["error_msg"], doc
    if expected is not None:
        assert row in expected, (row, doc, expected)
    return row


# --- state ------------------------------------------------------------------------------------

def db_state(data_dir: Path) -> dict[str, Any]:
    """What a bad request must not change, read from the database opened read-only."""
    uri = f"file:{data_dir / 'thingport.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        return {
            "messages": conn.execute("SELECT count(*), coalesce(max(seq), 0) FROM messages").fetchone(),
            # values in history (a row holds every value one message gave at one time)
            "history": conn.execute("SELECT count(*) FROM history, json_each(history.samples)").fetchone(),
            "latest": conn.execute("SELECT * FROM latest_values ORDER BY device_id, identifier").fetchall(),
            # enabled, token epoch, last auth/client/source, last seen, IoTDA token times
            "devices": conn.execute("SELECT * FROM devices ORDER BY id").fetchall(),
        }


def device_row_id(data_dir: Path, product_key: str, device_name: str) -> int:
    uri = f"file:{data_dir / 'thingport.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        return conn.execute("SELECT id FROM devices WHERE product_key = ? AND device_name = ?",
                            (product_key, device_name)).fetchone()[0]


def status_of(server: ServerProcess, device: dict) -> dict:
    """``device status --json`` through the CLI (what an operator sees)."""
    return cli(server.data_dir, "device", "status", "--product-key", device["productKey"],
               "--name", device["deviceName"])


# --- requests ---------------------------------------------------------------------------------

def hour(offset_hours: int = 0) -> str:
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=offset_hours)
    return at.strftime("%Y%m%d%H")


def aliyun_auth_doc(device: dict, timestamp_ms: int | None = None, method: str = "hmacsha256",
                    client_id: str = "hostile-1") -> dict:
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    params = {"productKey": device["productKey"], "deviceName": device["deviceName"], "clientId": client_id,
              "timestamp": str(ts)}
    return {**params, "signmethod": method, "sign": aliyun_sign(device["deviceSecret"], params, method)}


def hw_auth_doc(device: dict, sign_type: int = 0, timestamp: str | None = None) -> dict:
    ts = timestamp or hour()
    return {"device_id": device["deviceId"], "sign_type": sign_type, "timestamp": ts,
            "password": huawei_password(device["deviceSecret"], ts)}


def hw_token(client: DeviceClient, device: dict) -> str:
    reply = client.post_json("/v5/device-auth", hw_auth_doc(device))
    assert reply.status == 200, reply.raw
    return reply.json["access_token"]


def hw_post(client: DeviceClient, device_id: str, what: str, body: bytes, token: str | None,
            content_type: str = "application/json") -> Reply:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["access_token"] = token
    return client.request("POST", f"/v5/devices/{device_id}/sys/{what}", body, headers)


def good_aliyun_round_trip(client: DeviceClient, device: dict) -> None:
    """The server still serves: a fresh auth and a report of the device succeed."""
    token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
    reply = client.publish(f"/{device['productKey']}/{device['deviceName']}/user/alive", b"ok", token)
    assert reply.status == 200 and reply.json["code"] == 0, reply.raw


def good_huawei_round_trip(client: DeviceClient, device: dict) -> None:
    token = hw_token(client, device)
    reply = hw_post(client, device["deviceId"], "messages/up", b'{"content":"alive"}', token)
    assert reply.status == 200 and isinstance(reply.json["message_id"], int), reply.raw


# --- raw sockets ------------------------------------------------------------------------------

def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class RawOutcome:
    """What the server did with raw bytes: its reply (possibly empty), whether it closed, how long it took."""

    data: bytes
    closed: bool
    timed_out: bool
    seconds: float
    send_error: str | None = None

    @property
    def status(self) -> int | None:
        if not self.data.startswith(b"HTTP/1."):
            return None
        return int(self.data.split(b" ", 2)[1])

    @property
    def body(self) -> bytes:
        return self.data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.data else b""


def responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of every complete HTTP/1.x response in ``data`` (bodies by Content-Length)."""
    out = []
    while data.startswith(b"HTTP/1.") and b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            break
        out.append((status, rest[:length]))
        data = rest[length:]
    return out


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, chunk: int = 1 << 16, settle: float = 0.5) -> RawOutcome:
    """Send ``data`` over a fresh TLS connection and read until the server closes, ``timeout`` passes, or
    (after at least one complete response) nothing more arrives for ``settle`` seconds (a kept-alive connection)."""
    started = time.monotonic()
    sock = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout))
    out = b""
    send_error = None
    try:
        try:
            for i in range(0, len(data), chunk):
                sock.sendall(data[i:i + chunk])
        except OSError as exc:  # the server closed on us mid-request: an answer too
            send_error = repr(exc)
        while True:
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                return RawOutcome(out, False, True, time.monotonic() - started, send_error)
            answered = bool(responses(out))
            sock.settimeout(min(remaining, settle) if answered else remaining)
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                return RawOutcome(out, False, not answered, time.monotonic() - started, send_error)
            except OSError:
                return RawOutcome(out, True, False, time.monotonic() - started, send_error)
            if not piece:
                return RawOutcome(out, True, False, time.monotonic() - started, send_error)
            out += piece
    finally:
        sock.close()


# --- the test bed -----------------------------------------------------------------------------

TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {},
    "properties": [
        {"identifier": "temperature", "name": "t", "accessMode": "r",
         "dataType": {"type": "int", "specs": {"min": "-10", "max": "50"}}},
        {"identifier": "humidity", "name": "h", "accessMode": "r",
         "dataType": {"type": "double", "specs": {"min": "0", "max": "100"}}},
        {"identifier": "mode", "name": "m", "accessMode": "rw",
         "dataType": {"type": "enum", "specs": {"0": "a", "1": "b"}}},
        {"identifier": "on", "name": "o", "accessMode": "rw",
         "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
        {"identifier": "label", "name": "l", "accessMode": "rw",
         "dataType": {"type": "text", "specs": {"length": "8"}}},
        {"identifier": "stamp", "name": "s", "accessMode": "r", "dataType": {"type": "date", "specs": {}}},
        {"identifier": "cfg", "name": "c", "accessMode": "rw", "dataType": {"type": "struct", "specs": [
            {"identifier": "a", "name": "a", "dataType": {"type": "int", "specs": {"min": "0", "max": "9"}}},
            {"identifier": "b", "name": "b", "dataType": {"type": "text", "specs": {"length": "4"}}},
        ]}},
        {"identifier": "arr", "name": "r", "accessMode": "r", "dataType": {"type": "array", "specs": {
            "size": "3", "item": {"type": "int"}}}},
    ],
    "events": [
        {"identifier": "alarm", "name": "alarm", "type": "alert", "outputData": [
            {"identifier": "level", "name": "level", "dataType": {"type": "int", "specs": {"min": "1", "max": "3"}}}]},
    ],
    "services": [],
}

HUAWEI_MODEL = {
    "services": [
        {"service_id": "Environment", "service_type": "Environment", "properties": [
            {"property_name": "temperature", "data_type": "int", "required": False, "min": "-10", "max": "50",
             "method": "R"},
            {"property_name": "humidity", "data_type": "decimal", "required": False, "min": "0", "max": "100",
             "method": "R"},
        ]},
    ],
}


def provision(server: ServerProcess, tmp: Path) -> dict[str, Any]:
    """Products and devices for the hostile tests:

    a, b: two devices of one TSL-modelled product (b is "another device" for a);
    c: a device of another (schemaless) product (another tenant's device);
    h: a device created by its IoTDA device_id in a product with an IoTDA model;
    gw, child: a gateway and its sub-device (schemaless).
    """
    data = server.data_dir
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "tsl.json").write_text(json.dumps(TSL))
    (tmp / "hw.json").write_text(json.dumps(HUAWEI_MODEL))
    tsl_product = cli(data, "product", "create", "--name", "hostile-tsl", "--tsl", str(tmp / "tsl.json"))
    pk = tsl_product["productKey"]
    a = cli(data, "device", "create", "--product-key", pk, "--name", "dev-a001")
    b = cli(data, "device", "create", "--product-key", pk, "--name", "dev-b002")
    other = cli(data, "product", "create", "--name", "hostile-other")
    c = cli(data, "device", "create", "--product-key", other["productKey"], "--name", "dev-c003")
    hw_product = cli(data, "product", "create", "--name", "hostile-hw")
    cli(data, "product", "model", "import", "--product-key", hw_product["productKey"], str(tmp / "hw.json"))
    h = cli(data, "device", "create", "--product-key", hw_product["productKey"],
            "--device-id", f"{hw_product['productKey']}_node-h004")
    gw_product = cli(data, "product", "create", "--name", "hostile-gw", "--node-type", "gateway")
    gw = cli(data, "device", "create", "--product-key", gw_product["productKey"], "--name", "gw-0001")
    child = cli(data, "device", "create", "--product-key", other["productKey"], "--name", "child-01",
                "--gateway", f"{gw['productKey']}/{gw['deviceName']}")
    return {"a": a, "b": b, "c": c, "h": h, "gw": gw, "child": child}
