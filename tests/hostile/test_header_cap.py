"""The cap on a request's head (``MAX_HEADER_BYTES``: request line, headers and the blank line) is exact,
whatever the reads' sizes: a head one byte over it gets 431 and nothing of it is stored, sent in one write
with its body or a byte at a time; a head of exactly the cap is served. Most tests use a small cap to stay
fast; one uses the default 64 KB.
"""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.hostile.common import provision, raw_exchange, responses, tls_context
from tests.hostile.conftest import HOSTILE_ENV
from tests.support import DeviceClient, ServerProcess

CAP = 2048
TIMEOUT = 10.0
SETTLE_S = 0.5  # long enough for a report that got through to be committed (group commit: milliseconds)


def payload() -> bytes:
    """A body no other request sends: what is stored of one request can be told apart from the others'
    (a request refused with the connection may leave the one before it in flight, stored a little later)."""
    return b"cap-" + secrets.token_hex(8).encode()


def stored(data_dir: Path, body: bytes) -> int:
    """How many messages carry ``body``, read from the database opened read-only."""
    with closing(sqlite3.connect(f"file:{data_dir / 'thingport.db'}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute("SELECT count(*) FROM messages WHERE payload = ?", (body,)).fetchone()[0]


def assert_never_stored(data_dir: Path, body: bytes) -> None:
    time.sleep(SETTLE_S)
    assert stored(data_dir, body) == 0


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("cap") / "data", {**HOSTILE_ENV, "THINGPORT_MAX_HEADER_BYTES": str(CAP)}
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def small_device(small: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    a = provision(small, tmp_path_factory.mktemp("cap-bed"))["a"]
    client = small.client()
    try:
        return a, client.token(a["productKey"], a["deviceName"], a["deviceSecret"])
    finally:
        client.close()


def report(device: dict, token: str, head_bytes: int, body: bytes = b"stored?", close: bool = False) -> bytes:
    """A valid report whose head (up to and including its blank line) is exactly ``head_bytes`` long."""
    head = (
        f"POST /topic/{device['productKey']}/{device['deviceName']}/user/update HTTP/1.1\r\nHost: x\r\n"
        f"password: {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
        + ("Connection: close\r\n" if close else "")
    )
    pad_line = "X-Pad: \r\n"
    missing = head_bytes - len(head) - len(pad_line) - 2
    assert missing >= 0
    head += f"X-Pad: {'p' * missing}\r\n\r\n"
    assert len(head) == head_bytes
    return head.encode() + body


def byte_by_byte(port: int, data: bytes) -> bytes:
    """Send ``data`` one byte per TLS record (stopping when the server closes) and read what comes back."""
    sock = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = b""
    try:
        try:
            for i in range(len(data)):
                sock.sendall(data[i : i + 1])
        except OSError:
            pass  # closed on us mid-head: the answer is what it sent before
        deadline = time.monotonic() + TIMEOUT
        return read_rest(sock, out, lambda got: time.monotonic() >= deadline or bool(responses(got)))
    finally:
        sock.close()


def read_rest(sock: socket.socket, out: bytes, done: Callable[[bytes], bool] = lambda got: False) -> bytes:
    """``out`` and what ``sock`` sends after it, until ``done(what came)``, the close or an error."""
    while not done(out):
        try:
            piece = sock.recv(65536)
        except OSError:
            break
        if not piece:
            break
        out += piece
    return out


def status_and_code(data: bytes) -> tuple[int, int | None]:
    (status, body), *_ = responses(data)
    return status, json.loads(body)["code"] if status == 200 else None


@pytest.mark.parametrize("over", [1, 2, 100, CAP])
def test_a_head_over_the_cap_in_one_write_with_its_body_is_refused(
    small: ServerProcess, small_device: tuple[dict, str], over: int
) -> None:
    device, token = small_device
    body = payload()
    outcome = raw_exchange(small.port, report(device, token, CAP + over, body), timeout=TIMEOUT)
    assert outcome.status == 431 and outcome.closed, outcome.data[:200]
    assert_never_stored(small.data_dir, body)  # observed before the fix: 200, code 0, the message stored


def test_a_head_over_the_cap_sent_byte_by_byte_is_refused(small: ServerProcess, small_device: tuple[dict, str]) -> None:
    device, token = small_device
    body = payload()
    assert status_and_code(byte_by_byte(small.port, report(device, token, CAP + 1, body))) == (431, None)
    assert_never_stored(small.data_dir, body)


@pytest.mark.parametrize("send", ["one-write", "byte-by-byte"])
def test_a_head_of_exactly_the_cap_is_served(small: ServerProcess, small_device: tuple[dict, str], send: str) -> None:
    device, token = small_device
    body = payload()
    data = report(device, token, CAP, body)
    replied = (
        raw_exchange(small.port, data, timeout=TIMEOUT).data if send == "one-write" else byte_by_byte(small.port, data)
    )
    assert status_and_code(replied) == (200, 0) and stored(small.data_dir, body) == 1


def test_blank_lines_before_a_request_count_toward_its_head(
    small: ServerProcess, small_device: tuple[dict, str]
) -> None:
    """llhttp skips them; they are still bytes the server had to read for this head."""
    device, token = small_device
    body = payload()
    outcome = raw_exchange(small.port, b"\r\n" * 4 + report(device, token, CAP - 7, body), timeout=TIMEOUT)
    assert outcome.status == 431
    assert_never_stored(small.data_dir, body)
    assert status_and_code(raw_exchange(small.port, b"\r\n" * 4 + report(device, token, CAP - 8)).data) == (200, 0)


def test_a_pipelined_head_over_the_cap_is_refused_after_a_good_request(
    small: ServerProcess, small_device: tuple[dict, str]
) -> None:
    """The second request's head starts mid-read, after the first one's body: counted from there."""
    device, token = small_device
    second = payload()
    outcome = raw_exchange(
        small.port, report(device, token, 300, payload()) + report(device, token, CAP + 1, second), timeout=TIMEOUT
    )
    assert outcome.closed and all(
        status != 200 or json.loads(body)["code"] == 0 for status, body in responses(outcome.data)
    )
    assert_never_stored(small.data_dir, second)
    # and a pipelined head of exactly the cap is served after it
    second = payload()
    outcome = raw_exchange(
        small.port,
        report(device, token, 300, payload()) + report(device, token, CAP, second, close=True),
        timeout=TIMEOUT,
    )
    assert outcome.closed  # (after the second reply: both read whatever the time between them)
    assert stored(small.data_dir, second) == 1
    assert [status_and_code(b"HTTP/1." + r) for r in outcome.data.split(b"HTTP/1.")[1:]] == [(200, 0), (200, 0)]


def in_two_reads(port: int, first: bytes, second: bytes) -> bytes:
    """``first``, a pause (so the server reads it on its own), then ``second``; what comes back by the close
    or the timeout."""
    sock = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT))
    out = b""
    try:
        sock.sendall(first)
        time.sleep(0.3)
        try:
            sock.sendall(second)
        except OSError:
            pass
        sock.settimeout(TIMEOUT)  # until the close (the second request asks for one, or is refused)
        return read_rest(sock, out)
    finally:
        sock.close()


@pytest.mark.parametrize("second_head", [CAP, CAP + 1])
def test_a_pipelined_head_after_a_body_spread_over_reads_is_counted_exactly(
    small: ServerProcess, small_device: tuple[dict, str], second_head: int
) -> None:
    """The first body ends in a later read than its head; the next head starts in that read, after it."""
    device, token = small_device
    body = payload()
    first = report(device, token, 300, b"0123456789" * 50)
    replied = in_two_reads(small.port, first[:400], first[400:] + report(device, token, second_head, body, close=True))
    codes = [json.loads(reply)["code"] if status == 200 else status for status, reply in responses(replied)]
    if second_head == CAP:
        assert codes == [0, 0] and stored(small.data_dir, body) == 1
    else:
        assert 0 not in codes[1:]
        assert_never_stored(small.data_dir, body)


def test_a_pipelined_head_after_a_chunked_body_is_held_to_the_cap(
    small: ServerProcess, small_device: tuple[dict, str]
) -> None:
    """Where a chunked body ends only the parser knows: a head after one in the same read is counted from the
    start of the read (more than it is, never less), so an over-cap head never gets through."""
    device, token = small_device
    chunked = (
        f"POST /topic/{device['productKey']}/{device['deviceName']}/user/update HTTP/1.1\r\nHost: x\r\n"
        f"password: {token}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nfirst\r\n0\r\n\r\n"
    ).encode()
    second = payload()
    outcome = raw_exchange(small.port, chunked + report(device, token, CAP + 1, second), timeout=TIMEOUT)
    assert outcome.closed
    assert_never_stored(small.data_dir, second)


def test_the_default_64_kb_cap_holds_for_a_head_sent_in_one_write(
    server: ServerProcess, bed: dict, client: DeviceClient
) -> None:
    """The report that got through before: a 66 KB head and its body in one write, answered 200, stored."""
    a = bed["a"]
    token = client.token(a["productKey"], a["deviceName"], a["deviceSecret"])
    for size in (64 * 1024 + 1, 66 * 1024, 100 * 1024):
        body = payload()
        outcome = raw_exchange(server.port, report(a, token, size, body), timeout=TIMEOUT)
        assert outcome.status == 431 and outcome.closed, outcome.data[:200]
        assert_never_stored(server.data_dir, body)
    body = payload()
    assert status_and_code(raw_exchange(server.port, report(a, token, 64 * 1024, body)).data) == (200, 0)
    assert stored(server.data_dir, body) == 1


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[DeviceClient]:
    c = server.client()
    yield c
    c.close()
