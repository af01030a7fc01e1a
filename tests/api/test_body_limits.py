"""The management API checks the key before it reads a body, and caps bodies: over raw sockets, so what
the server does before the client has finished sending is what is seen."""

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess, cli

CAP = 64 * 1024  # the server's THINGPORT_API_MAX_BODY_BYTES in these tests
IMPORT_CAP = 4 * CAP  # its THINGPORT_API_IMPORT_MAX_BODY_BYTES (device imports by admin keys)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("limits") / "data",
                         env={"THINGPORT_API_MAX_BODY_BYTES": str(CAP),
                              "THINGPORT_API_IMPORT_MAX_BODY_BYTES": str(IMPORT_CAP)}).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def admin_key(server: ServerProcess) -> str:
    return cli(server.data_dir, "apikey", "create", "--name", "limits-admin")["key"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.api_port), timeout=5)
    return sock


def read_reply(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one reply (it has a Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a reply: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ")[1]), json.loads(body[:length])


def head(path: str, key: str | None, extra: str) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n{auth}{extra}\r\n").encode()


def test_an_unauthenticated_huge_body_is_answered_401_before_it_is_sent(server: ServerProcess) -> None:
    assert server.proc is not None
    before = rss_kib(server.proc.pid)
    for key in (None, "tpk_not-a-key"):
        with connect(server) as sock:
            sock.sendall(head("/api/products", key, "Content-Length: 300000000\r\n") + b"x" * 1024)
            started = time.monotonic()
            status, doc = read_reply(sock)  # 299.99 MB still to send: the server did not wait for them
            assert status == 401 and doc["error"]["code"] == "unauthorized"
            assert time.monotonic() - started < 2
            sock.sendall(b"x" * (64 * 1024 * 1024))  # what the client goes on sending is dropped, not kept
    with connect(server) as sock:  # chunked: no length to judge by, still refused from the head
        sock.sendall(head("/api/devices", None, "Transfer-Encoding: chunked\r\n") + b"400\r\n" + b"y" * 1024 + b"\r\n")
        assert read_reply(sock)[0] == 401
    assert rss_kib(server.proc.pid) - before < 32 * 1024


def test_a_body_announced_over_the_cap_is_answered_413_from_the_head(server: ServerProcess, admin_key: str) -> None:
    with connect(server) as sock:
        sock.sendall(head("/api/products", admin_key, f"Content-Length: {CAP + 1}\r\n"))
        status, doc = read_reply(sock)  # not one body byte sent
        assert status == 413 and doc["error"]["code"] == "too_large" and str(CAP) in doc["error"]["message"]


def test_a_chunked_body_is_refused_413_as_soon_as_it_passes_the_cap(server: ServerProcess, admin_key: str) -> None:
    with connect(server) as sock:
        sock.sendall(head("/api/products", admin_key, "Transfer-Encoding: chunked\r\n"))
        sent = 0
        sock.settimeout(0.2)
        reply = b""
        while not reply and sent < 100 * CAP:
            sock.sendall(b"1000\r\n" + b"z" * 4096 + b"\r\n")
            sent += 4096
            try:
                reply = sock.recv(65536)
            except TimeoutError:
                continue
        assert reply.startswith(b"HTTP/1.1 413"), reply[:80]
        assert CAP < sent < 4 * CAP


def test_bodies_within_the_cap_work_chunked_or_not(server: ServerProcess, admin_key: str) -> None:
    body = json.dumps({"name": "chunky"}).encode()
    with connect(server) as sock:
        sock.sendall(head("/api/products", admin_key, "Transfer-Encoding: chunked\r\n")
                     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        status, doc = read_reply(sock)
        assert status == 201 and doc["name"] == "chunky"
        sock.sendall(head("/api/products", admin_key, f"Content-Length: {len(body)}\r\n") + body)
        assert read_reply(sock)[0] == 201
    # the open endpoints need no key; a keyed one without a body still says 401 rather than 404
    with connect(server) as sock:
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: api\r\n\r\n")
        assert read_reply(sock)[0] == 200
        sock.sendall(b"GET /api/no-such-thing HTTP/1.1\r\nHost: api\r\n\r\n")
        assert read_reply(sock)[0] == 401


def test_a_device_import_may_be_larger_for_an_admin_key_only(server: ServerProcess, admin_key: str) -> None:
    read_key = cli(server.data_dir, "apikey", "create", "--name", "limits-reader", "--role", "read")["key"]
    pk = cli(server.data_dir, "product", "create", "--name", "bulk")["productKey"]
    path = f"/api/products/{pk}/devices/import?format=csv"
    rows = (CAP * 2) // 14
    body = ("deviceName\n" + "".join(f"bulk-{i:08d}\n" for i in range(rows))).encode()
    assert CAP < len(body) < IMPORT_CAP
    with connect(server) as sock:
        sock.sendall(head(path, read_key, f"Content-Length: {len(body)}\r\n"))
        status, doc = read_reply(sock)  # the import cap is for admin keys: the reader gets the common one
        assert status == 413 and str(CAP) in doc["error"]["message"]
    with connect(server) as sock:
        sock.sendall(head(path, admin_key, f"Content-Length: {IMPORT_CAP + 1}\r\n"))
        status, doc = read_reply(sock)
        assert status == 413 and str(IMPORT_CAP) in doc["error"]["message"]
    with connect(server) as sock:
        sock.sendall(head(path, admin_key, f"Content-Length: {len(body)}\r\n") + body)
        status, doc = read_reply(sock)
        assert status == 200 and doc["imported"] == rows, doc.get("error")
    with connect(server) as sock:  # other paths keep the common cap, for admin keys too
        sock.sendall(head("/api/products", admin_key, f"Content-Length: {CAP + 1}\r\n"))
        assert read_reply(sock)[0] == 413
