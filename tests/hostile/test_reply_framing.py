"""Every kind of reply the device endpoint gives, read off a TLS socket the way a small C device client reads
it: find the status line, search case-sensitively for ``Content-Length: `` (one space), read exactly that many
body bytes. No chunked decoding, no case folding: a lower-case or missing name, a ``Transfer-Encoding``, or a
body not where the length says fails here as it fails on the device.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.hostile.common import aliyun_auth_doc, hw_auth_doc, tls_context
from tests.support import ServerProcess, ThreadServer, cli, free_port
from thingport.core.tokens import TokenClaims, TokenCodec
from thingport.store.keys import KeyRing

TIMEOUT = 5.0
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [A-Z][A-Za-z ]*")
CANONICAL_NAME = re.compile(rb"[A-Z][a-z0-9]*(-[A-Z][a-z0-9]*)*")  # Content-Length, Date, Retry-After, ...


@dataclass
class NaiveReply:
    status: int
    head: bytes  # status line and header lines, as received
    body: bytes
    closed: bool  # the server closed the connection after the reply

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def naive_read(sock: socket.socket) -> NaiveReply:
    """Read one reply as a device's C client does (strstr for the blank line and for ``Content-Length: ``),
    and hold it to the framing such a client needs."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        assert piece, f"closed before the end of the head: {data!r}"
        data += piece
    end = data.index(b"\r\n\r\n")
    head, data = data[:end], data[end + 4 :]
    lines = head.split(b"\r\n")
    status = STATUS_LINE.fullmatch(lines[0])
    assert status, f"status line {lines[0]!r}"
    assert b"ransfer-" not in head.lower(), head  # no Transfer-Encoding, in any case
    for line in lines[1:]:
        name, sep, value = line.partition(b": ")
        assert sep and CANONICAL_NAME.fullmatch(name), f"header line not 'Name: value' in canonical case: {line!r}"
        assert value == value.strip(), line
    at = head.find(b"\r\nContent-Length: ")
    assert at >= 0, f"no 'Content-Length: ' in {head!r}"
    length = int(head[at + 18 :].split(b"\r\n", 1)[0])
    while len(data) < length:
        piece = sock.recv(4096)
        assert piece, "closed before Content-Length bytes of body"
        data += piece
    body, rest = data[:length], data[length:]
    assert rest == b"", f"bytes after the body: {rest!r}"
    closed = False
    if b"\r\nConnection: close" in head:
        sock.settimeout(2.0)
        try:
            closed = sock.recv(1) == b""
        except (ConnectionError, OSError):
            closed = True
    return NaiveReply(int(status[1]), head, body, closed)


def naive_exchange(port: int, request: bytes) -> NaiveReply:
    """One request on a fresh TLS connection, its reply read the naive way."""
    sock = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
    try:
        try:
            sock.sendall(request)
        except OSError:
            pass  # refused before the end of the request (431): its answer is read all the same
        return naive_read(sock)
    finally:
        sock.close()


def http(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    version: str = "HTTP/1.1",
    length: int | None = None,
) -> bytes:
    """A request as a device writes it (keep-alive unless it says otherwise)."""
    lines = [f"{method} {path} {version}", "Host: iot.example"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body) if length is None else length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_post(path: str, doc: Any, headers: dict[str, str] | None = None, version: str = "HTTP/1.1") -> bytes:
    return http(
        "POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})}, version
    )


def assert_aliyun(reply: NaiveReply, code: int) -> dict:
    assert reply.status == 200, reply
    assert b"\r\nContent-Type: application/json" in reply.head
    doc = reply.json
    assert doc["code"] == code, doc
    return doc


def assert_iotda(reply: NaiveReply, status: int, error_code: str) -> None:
    assert reply.status == status, reply
    assert b"\r\nContent-Type: application/json" in reply.head
    assert reply.json["error_code"] == error_code, reply.json


@pytest.fixture(scope="module")
def tokens(server: ServerProcess, bed: dict) -> dict[str, str]:
    a, h, gw = bed["a"], bed["h"], bed["gw"]
    aliyun = naive_exchange(server.port, json_post("/auth", aliyun_auth_doc(a)))
    huawei = naive_exchange(server.port, json_post("/v5/device-auth", hw_auth_doc(h)))
    gateway = naive_exchange(server.port, json_post("/v5/device-auth", hw_auth_doc(gw)))
    return {
        "a": assert_aliyun(aliyun, 0)["info"]["token"],
        "h": huawei.json["access_token"],
        "gw": gateway.json["access_token"],
    }


def expired(server: ServerProcess, token: str) -> str:
    """An authentic token past its validity: re-issued with the server's key and an expiry in the past."""
    codec = TokenCodec(KeyRing(server.data_dir).token_key)
    claims = codec.verify(token, time.time())
    return codec.issue(
        TokenClaims(claims.dialect, claims.device_id, claims.epoch, claims.issued_ms, int(time.time()) - 1)
    )


def aliyun_cases(server: ServerProcess, bed: dict, tokens: dict[str, str]) -> dict[str, tuple[bytes, int]]:
    """Name -> (request, the Alibaba code it gets): success and every code a request can reach over the wire
    (20004 and 10000 need a failing store: test_store_failures_are_framed_too)."""
    a, c = bed["a"], bed["c"]
    pk, dn, token = a["productKey"], a["deviceName"], tokens["a"]
    raw = f"/topic/{pk}/{dn}/user/update"
    octets = {"Content-Type": "application/octet-stream", "password": token}
    alink = json.dumps({"id": "1", "version": "1.0", "params": {"temperature": 21}}).encode()
    bad_sign = {**aliyun_auth_doc(a), "sign": "0" * 64}
    return {
        "auth-success": (json_post("/auth", aliyun_auth_doc(a)), 0),
        "auth-http10": (json_post("/auth", aliyun_auth_doc(a), version="HTTP/1.0"), 0),
        "auth-connection-close": (json_post("/auth", aliyun_auth_doc(a), {"Connection": "close"}), 0),
        "raw-report-success": (http("POST", raw, b"\x00\x01 payload", octets), 0),
        "raw-report-http10": (http("POST", raw, b"hello", octets, version="HTTP/1.0"), 0),
        "alink-property-post-success": (
            http("POST", f"/topic/sys/{pk}/{dn}/thing/event/property/post", alink, octets),
            0,
        ),
        "10001-bad-json": (http("POST", "/auth", b"{not json", {"Content-Type": "application/json"}), 10001),
        "10001-not-post": (http("GET", "/auth"), 10001),
        "10001-query-on-topic": (http("POST", raw + "?a=1", b"x", octets), 10001),
        "10001-wrong-content-type": (http("POST", raw, b"x", {**octets, "Content-Type": "text/plain"}), 10001),
        "10001-body-too-large": (http("POST", raw, b"", octets, length=128 * 1024 + 1), 10001),
        "20000-bad-sign": (json_post("/auth", bad_sign), 20000),
        "20001-token-expired": (http("POST", raw, b"x", {**octets, "password": expired(server, token)}), 20001),
        "20002-token-null": (http("POST", raw, b"x", {"Content-Type": "application/octet-stream"}), 20002),
        "20003-token-forged": (http("POST", raw, b"x", {**octets, "password": token[:-4] + "AAAA"}), 20003),
        "30001-topic-not-allowed": (
            http("POST", f"/topic/{c['productKey']}/{c['deviceName']}/user/update", b"x", octets),
            30001,
        ),
    }


def iotda_cases(server: ServerProcess, bed: dict, tokens: dict[str, str]) -> dict[str, tuple[bytes, int, str]]:
    """Name -> (request, status, error_code or "" for success): success and every row a request can reach."""
    h, gw = bed["h"], bed["gw"]
    did, token = h["deviceId"], tokens["h"]
    sys = f"/v5/devices/{did}/sys"
    with_token = {"Content-Type": "application/json", "access_token": token}
    report = json.dumps({"services": [{"service_id": "Environment", "properties": {"temperature": 20}}]}).encode()
    sub = f"/v5/devices/{gw['deviceId']}/sys/gateway/sub-devices/properties/report"
    gw_token = {"Content-Type": "application/json", "access_token": tokens["gw"]}
    ghost = json.dumps({"devices": [{"device_id": "ghost_device", "services": []}]}).encode()
    many = json.dumps({"devices": [{"device_id": f"ghost_{i}", "services": []} for i in range(51)]}).encode()
    return {
        "auth-success": (json_post("/v5/device-auth", hw_auth_doc(h)), 200, ""),
        "messages-up-success": (http("POST", f"{sys}/messages/up", b'{"content":"hi"}', with_token), 200, ""),
        "properties-report-success": (http("POST", f"{sys}/properties/report", report, with_token), 200, ""),
        "messages-up-http10": (
            http("POST", f"{sys}/messages/up", b'{"content":"hi"}', with_token, "HTTP/1.0"),
            200,
            "",
        ),
        "000006-bad-json": (http("POST", f"{sys}/properties/report", b"{not json", with_token), 400, "IOTDA.000006"),
        "000002-bad-password": (
            json_post("/v5/device-auth", {**hw_auth_doc(h), "password": "0" * 64}),
            401,
            "IOTDA.000002",
        ),
        "000004-no-token": (
            http("POST", f"{sys}/messages/up", b"{}", {"Content-Type": "application/json"}),
            403,
            "IOTDA.000004",
        ),
        "000004-token-expired": (
            http("POST", f"{sys}/messages/up", b"{}", {**with_token, "access_token": expired(server, token)}),
            403,
            "IOTDA.000004",
        ),
        "021105-body-too-large": (
            http("POST", f"{sys}/messages/up", b"", with_token, length=1024 * 1024 + 1),
            403,
            "IOTDA.021105",
        ),
        "021104-not-a-child": (http("POST", sub, ghost, gw_token), 400, "IOTDA.021104"),
        "021103-too-many-children": (http("POST", sub, many, gw_token), 403, "IOTDA.021103"),
        "000006-no-such-api": (http("POST", f"{sys}/nothing/here", b"{}", with_token), 404, "IOTDA.000006"),
    }


ALIYUN_NAMES = [
    "auth-success",
    "auth-http10",
    "auth-connection-close",
    "raw-report-success",
    "raw-report-http10",
    "alink-property-post-success",
    "10001-bad-json",
    "10001-not-post",
    "10001-query-on-topic",
    "10001-wrong-content-type",
    "10001-body-too-large",
    "20000-bad-sign",
    "20001-token-expired",
    "20002-token-null",
    "20003-token-forged",
    "30001-topic-not-allowed",
]
IOTDA_NAMES = [
    "auth-success",
    "messages-up-success",
    "properties-report-success",
    "messages-up-http10",
    "000006-bad-json",
    "000002-bad-password",
    "000004-no-token",
    "000004-token-expired",
    "021105-body-too-large",
    "021104-not-a-child",
    "021103-too-many-children",
    "000006-no-such-api",
]


@pytest.mark.parametrize("name", ALIYUN_NAMES)
def test_alibaba_replies_read_the_naive_way(
    server: ServerProcess, bed: dict, tokens: dict[str, str], name: str
) -> None:
    request, code = aliyun_cases(server, bed, tokens)[name]
    reply = naive_exchange(server.port, request)
    assert_aliyun(reply, code)
    if b" HTTP/1.0\r\n" in request.split(b"\r\n\r\n")[0] + b"\r\n" or "close" in name:
        assert b"\r\nConnection: close" in reply.head and reply.closed  # what a 1.0 client waits for


@pytest.mark.parametrize("name", IOTDA_NAMES)
def test_iotda_replies_read_the_naive_way(server: ServerProcess, bed: dict, tokens: dict[str, str], name: str) -> None:
    request, status, error_code = iotda_cases(server, bed, tokens)[name]
    reply = naive_exchange(server.port, request)
    if error_code:
        assert_iotda(reply, status, error_code)
    else:
        assert reply.status == 200 and b"\r\nContent-Type: application/json" in reply.head, reply
        assert "error_code" not in reply.json
    if "http10" in name:
        assert b"\r\nConnection: close" in reply.head and reply.closed


def test_keep_alive_replies_follow_one_another_on_one_connection(
    server: ServerProcess, bed: dict, tokens: dict[str, str]
) -> None:
    """A device that keeps its connection reads each reply by its length, the next one right after it."""
    a = bed["a"]
    octets = {"Content-Type": "application/octet-stream", "password": tokens["a"]}
    sock = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT))
    try:
        for i in range(3):
            sock.sendall(http("POST", f"/topic/{a['productKey']}/{a['deviceName']}/user/update", b"n%d" % i, octets))
            reply = naive_read(sock)
            assert assert_aliyun(reply, 0) and not reply.closed
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (http("POST", "/no/such/endpoint", b"{}", {"Content-Type": "application/json"}), 404),
        (http("POST", "/no/such/endpoint", b"{}", {"Content-Type": "application/json"}, "HTTP/1.0"), 404),
        (b"POST /auth HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 * 1024) + b"\r\nContent-Length: 0\r\n\r\n", 431),
        (b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"\x16\x03\x01 not http\r\n\r\n", 400),
    ],
    ids=["404", "404-http10", "431", "400-parser-smuggling", "400-parser-garbage"],
)
def test_http_layer_replies_read_the_naive_way(server: ServerProcess, request_bytes: bytes, status: int) -> None:
    reply = naive_exchange(server.port, request_bytes)
    assert reply.status == status, reply
    if status == 404:
        assert reply.json["code"] == 10001 and b"\r\nContent-Type: application/json" in reply.head
        if b"HTTP/1.0" in request_bytes:
            assert reply.closed
    else:  # the HTTP layer ends the connection after such a request
        assert b"\r\nConnection: close" in reply.head and reply.closed and reply.body


# --- replies only a server set up for them gives --------------------------------------------------------------


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict, dict]]:
    """Two reports per device, three for the instance: the rate-limit replies of both dialects."""
    data_dir = tmp_path_factory.mktemp("throttled") / "data"
    product = cli(data_dir, "product", "create", "--name", "p")
    a = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-a")
    b = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-b")
    env = {
        "THINGPORT_DEVICE_REPORT_RATE": "0.01",
        "THINGPORT_DEVICE_REPORT_BURST": "2",
        "THINGPORT_INSTANCE_REPORT_RATE": "0.01",
        "THINGPORT_INSTANCE_REPORT_BURST": "3",
    }
    srv = ServerProcess(data_dir, env).start()
    try:
        yield srv, a, b
    finally:
        srv.stop()


def test_rate_limit_replies_read_the_naive_way(throttled: tuple[ServerProcess, dict, dict]) -> None:
    srv, a, b = throttled
    ta = assert_aliyun(naive_exchange(srv.port, json_post("/auth", aliyun_auth_doc(a))), 0)["info"]["token"]
    tb = naive_exchange(srv.port, json_post("/v5/device-auth", hw_auth_doc(b))).json["access_token"]
    topic = f"/topic/{a['productKey']}/{a['deviceName']}/user/update"
    octets = {"Content-Type": "application/octet-stream", "password": ta}
    assert [
        assert_aliyun(naive_exchange(srv.port, http("POST", topic, b"x", octets)), 0)["code"] for _ in range(2)
    ] == [0, 0]
    assert_aliyun(naive_exchange(srv.port, http("POST", topic, b"x", octets)), 40000)  # the device's budget
    up = f"/v5/devices/{b['deviceId']}/sys/messages/up"
    hw = {"Content-Type": "application/json", "access_token": tb}
    assert naive_exchange(srv.port, http("POST", up, b"{}", hw)).status == 200  # the instance's third
    assert_iotda(naive_exchange(srv.port, http("POST", up, b"{}", hw)), 403, "IOTDA.021102")
    throttled_device = naive_exchange(srv.port, http("POST", up, b"{}", hw))
    assert throttled_device.status == 403 and throttled_device.json["error_code"].startswith("IOTDA.0211")


def test_device_throttle_reply_of_iotda_reads_the_naive_way(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    product = cli(data_dir, "product", "create", "--name", "p")
    d = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-d")
    srv = ServerProcess(
        data_dir, {"THINGPORT_DEVICE_REPORT_RATE": "0.01", "THINGPORT_DEVICE_REPORT_BURST": "1"}
    ).start()
    try:
        token = naive_exchange(srv.port, json_post("/v5/device-auth", hw_auth_doc(d))).json["access_token"]
        up = http(
            "POST",
            f"/v5/devices/{d['deviceId']}/sys/messages/up",
            b"{}",
            {"Content-Type": "application/json", "access_token": token},
        )
        assert naive_exchange(srv.port, up).status == 200
        assert_iotda(naive_exchange(srv.port, up), 403, "IOTDA.021101")
    finally:
        srv.stop()


def test_store_failures_are_framed_too(tmp_path: Path) -> None:
    """20004, 10000 and IoTDA's 500: a store that fails, in the server's own process."""
    from tests.dialects.test_aliyun_faults import _FailingLog, provision
    from thingport.runtime.bootstrap import Overrides, build
    from thingport.settings import load_settings
    from thingport.store.sql_log import SqlMessageLog

    data_dir = tmp_path / "data"
    device = provision(data_dir)
    settings = load_settings(data_dir=data_dir, host="127.0.0.1", port=free_port(), log_level="critical")
    logs: list[_FailingLog] = []

    def failing_log(*parts):  # type: ignore[no-untyped-def]
        logs.append(_FailingLog(SqlMessageLog(*parts)))
        return logs[-1]

    with ThreadServer(build(settings, Overrides(message_log=failing_log))) as srv:
        failing = logs[0]
        pk, dn = device["productKey"], device["deviceName"]
        token = assert_aliyun(naive_exchange(srv.port, json_post("/auth", aliyun_auth_doc(device))), 0)["info"]["token"]
        failing.fail_sessions = True
        assert_aliyun(naive_exchange(srv.port, json_post("/auth", aliyun_auth_doc(device))), 20004)
        failing.fail_sessions, failing.crash = False, True
        octets = {"Content-Type": "application/octet-stream", "password": token}
        assert_aliyun(naive_exchange(srv.port, http("POST", f"/topic/{pk}/{dn}/user/t", b"x", octets)), 10000)


class _BrokenDialect:
    def __init__(self, ingest: Any) -> None:
        pass

    async def __call__(self, request: Any) -> Any:
        raise RuntimeError("broken on purpose")


def test_the_endpoints_own_500_is_framed_too(tmp_path: Path) -> None:
    """A dialect that fails instead of answering gets the endpoint's own 500, framed like every reply, and
    the connection closes (what state the failure left is unknown)."""
    from thingport.dialects.dialect import DialectTable
    from thingport.settings import load_settings

    async def nothing() -> None:
        pass

    settings = load_settings(data_dir=tmp_path / "data", host="127.0.0.1", port=free_port(), log_level="critical")
    app = SimpleNamespace(settings=settings, dialects=DialectTable(None, {_BrokenDialect: ("/auth",)}),  # type: ignore[arg-type]
                          start=nothing, stop=nothing)
    with ThreadServer(app) as srv:
        reply = naive_exchange(srv.port, http("POST", "/auth", b"{}"))
    assert reply.status == 500 and json.loads(reply.body)["code"] == 10000 and reply.closed
