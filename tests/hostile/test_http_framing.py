"""Malformed HTTP framing over raw TLS sockets: Content-Length lies, smuggling shapes, broken request lines,
oversized and odd headers.

Acceptable answers: a closed connection, a 4xx from the HTTP layer (uvicorn's 400), or the protocol's own
error. Never a 5xx, never a hang past the socket timeout, never a stored message, and the server keeps
serving afterwards.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.hostile.common import (
    ALIYUN_INTERNAL,
    RawOutcome,
    db_state,
    good_aliyun_round_trip,
    good_huawei_round_trip,
    raw_exchange,
    responses,
    tls_context,
)
from tests.support import DeviceClient, ServerProcess

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def client(server: ServerProcess):  # type: ignore[no-untyped-def]
    c = server.client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def token(client: DeviceClient, bed: dict) -> str:
    a = bed["a"]
    return client.token(a["productKey"], a["deviceName"], a["deviceSecret"])


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


def assert_acceptable(outcome: RawOutcome) -> list[tuple[int, bytes]]:
    replies = responses(outcome.data)
    # answered and kept alive (keep-alive requests), or closed: both fine; silence until the timeout is a hang
    assert outcome.closed or replies, f"no answer and no close within {TIMEOUT} s: {outcome.data[:200]!r}"
    for status, body in replies:
        assert status < 500, (status, body)
        if status == 200 or (status == 404 and body.startswith(b'{"code"')):
            doc = json.loads(body)
            assert doc["code"] not in (0, ALIYUN_INTERNAL), doc
        elif body.startswith(b'{"error_code"'):
            assert json.loads(body)["error_code"] != "IOTDA.000001", body
    return replies


AUTH_BODY = b'{"productKey":"a1xxxxxxxxx","deviceName":"dev-x001","clientId":"c","sign":"00"}'
N = len(AUTH_BODY)

FRAMING_CASES = {
    # Content-Length lies
    "cl-shorter-than-body-keepalive": request(
        f"POST /auth HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: {N - 10}\n", AUTH_BODY
    ),
    "cl-shorter-than-body-close": request(
        "POST /auth HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 2\nConnection: close\n",
        b"{}" + AUTH_BODY,
    ),
    "cl-zero-with-body": request(
        "POST /auth HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 0\nConnection: close\n",
        AUTH_BODY,
    ),
    "cl-negative": request("POST /auth HTTP/1.1\nHost: x\nContent-Length: -1\n", AUTH_BODY),
    "cl-not-a-number": request("POST /auth HTTP/1.1\nHost: x\nContent-Length: ten\n", AUTH_BODY),
    "cl-plus-sign": request(f"POST /auth HTTP/1.1\nHost: x\nContent-Length: +{N}\n", AUTH_BODY),
    "cl-hex": request("POST /auth HTTP/1.1\nHost: x\nContent-Length: 0x10\n", AUTH_BODY),
    "cl-overflow": request("POST /auth HTTP/1.1\nHost: x\nContent-Length: 99999999999999999999999999\n", AUTH_BODY),
    "cl-huge-declared": request(
        "POST /auth HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 9999999999\n"
        "Connection: close\n",
        AUTH_BODY,
    ),
    "cl-twice-differing": request(f"POST /auth HTTP/1.1\nHost: x\nContent-Length: {N}\nContent-Length: 3\n", AUTH_BODY),
    "cl-list": request(f"POST /auth HTTP/1.1\nHost: x\nContent-Length: {N}, {N}\n", AUTH_BODY),
    "cl-space-before-colon": request("POST /auth HTTP/1.1\nHost: x\nContent-Length : 3\n", AUTH_BODY),
    # Transfer-Encoding
    "te-and-cl": request("POST /auth HTTP/1.1\nHost: x\nContent-Length: 4\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"),
    "te-bad-chunk-size": request(
        "POST /auth HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"zz\r\nabc\r\n0\r\n\r\n"
    ),
    "te-chunk-size-overflow": request(
        "POST /auth HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n", b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"
    ),
    "te-chunks-over-limit": request(
        "POST /auth HTTP/1.1\nHost: x\nContent-Type: application/json\nTransfer-Encoding: chunked\nConnection: close\n",
        b"".join(b"1000\r\n" + b"a" * 0x1000 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n",
    ),
    "te-gzip-chunked": request(
        "POST /auth HTTP/1.1\nHost: x\nTransfer-Encoding: gzip, chunked\nConnection: close\n", b"0\r\n\r\n"
    ),
    "te-chunked-identity": request(
        "POST /auth HTTP/1.1\nHost: x\nTransfer-Encoding: chunked, identity\nConnection: close\n", b"0\r\n\r\n"
    ),
    "te-obs-fold": request(
        "POST /auth HTTP/1.1\nHost: x\nTransfer-Encoding:\n chunked\nConnection: close\n", b"0\r\n\r\n"
    ),
    "te-chunk-extension": request(
        "POST /auth HTTP/1.1\nHost: x\nContent-Type: application/json\nTransfer-Encoding: chunked\nConnection: close\n",
        b"2;" + b"x" * 5000 + b"\r\n{}\r\n0\r\n\r\n",
    ),
    # request line
    "nul-in-path": b"POST /topic/a\x00b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "raw-utf8-path": "POST /topic/é/ü HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode(),
    "invalid-utf8-path": b"POST /v5/devices/\xff\xfe/sys/messages/up HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    "pct-invalid-utf8-path": (
        b"POST /v5/devices/%ff%fe/sys/messages/up HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ),
    "one-mb-url": (
        b"POST /topic/" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ),
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "http09": b"POST /auth\r\n\r\n",
    "http-1.2": request("POST /auth HTTP/1.2\nHost: x\nContent-Length: 0\nConnection: close\n"),
    "http-9.9": request("POST /auth HTTP/9.9\nHost: x\nContent-Length: 0\n"),
    "lower-case-method": request("post /auth HTTP/1.1\nHost: x\nContent-Length: 0\n"),
    "connect": request("CONNECT 127.0.0.1:22 HTTP/1.1\nHost: 127.0.0.1:22\n"),
    "options-asterisk": request("OPTIONS * HTTP/1.1\nHost: x\nConnection: close\n"),
    "absolute-form-other-host": request(
        "POST https://evil.example/auth HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 2\n"
        "Connection: close\n",
        b"{}",
    ),
    "garbage": b"\x16\x03\x01\x00\x05hello\r\n\r\n",
    # (empty lines before a request are skipped as RFC 9112 allows: the server then waits for the request
    # like for any slow client: see test_slow_clients.py)
    # headers
    "header-without-colon": request("POST /auth HTTP/1.1\nHost: x\nthis is not a header\nContent-Length: 0\n"),
    "header-name-with-space": request(
        "POST /auth HTTP/1.1\nHost: x\nContent Type: application/json\nContent-Length: 0\n"
    ),
    "nul-in-header-value": (
        b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\x00\r\nContent-Length: 0\r\n\r\n"
    ),
    "bare-lf-line-endings": b"POST /auth HTTP/1.1\nHost: x\nContent-Length: 0\nConnection: close\n\n",
    "bare-cr": b"POST /auth HTTP/1.1\rHost: x\rContent-Length: 0\r\r",
    "obs-fold-header": request(
        "POST /auth HTTP/1.1\nHost: x\nContent-Type: application/\n json\nContent-Length: 2\nConnection: close\n",
        b"{}",
    ),
    "non-latin-header-value": (
        b"POST /topic/a HTTP/1.1\r\nHost: x\r\npassword: \xff\xfe\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    ),
    "access-token-twice": request(
        "POST /v5/devices/x/sys/messages/up HTTP/1.1\nHost: x\naccess_token: a\naccess_token: b\nContent-Length: 0\n"
        "Connection: close\n"
    ),
    "one-mb-header": request(
        "POST /auth HTTP/1.1\nHost: x\nX-Big: " + "a" * 1_000_000 + "\nContent-Length: 0\nConnection: close\n"
    ),
    "twenty-thousand-headers": request("POST /auth HTTP/1.1\nHost: x\n" + "".join(f"X-H{i}: v\n" for i in range(20_000))
                                       + "Content-Length: 0\nConnection: close\n"),
    "expect-100-continue-huge": request(
        "POST /auth HTTP/1.1\nHost: x\nContent-Type: application/json\nExpect: 100-continue\n"
        "Content-Length: 999999999\nConnection: close\n"
    ),
    "upgrade-websocket": request(
        "POST /auth HTTP/1.1\nHost: x\nConnection: Upgrade\nUpgrade: websocket\nContent-Length: 0\n"
    ),
    "upgrade-h2c": request(
        "POST /auth HTTP/1.1\nHost: x\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c\n"
        "HTTP2-Settings: AAMAAABkAAQAAP__\nContent-Length: 0\n"
    ),
    # pipelining: many bad requests in one write
    "pipelined-100": b"".join(
        request("POST /auth HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 2\n", b"{}")
        for _ in range(100)
    ) + request("POST /auth HTTP/1.1\nHost: x\nContent-Length: 0\nConnection: close\n"),
}


@pytest.mark.parametrize("name", list(FRAMING_CASES))
def test_malformed_framing_gets_a_4xx_or_a_close_never_a_5xx_or_a_hang(
    server: ServerProcess, bed: dict, name: str
) -> None:
    before = db_state(server.data_dir)
    outcome = raw_exchange(server.port, FRAMING_CASES[name], timeout=TIMEOUT)
    replies = assert_acceptable(outcome)
    if name == "pipelined-100":
        assert len(replies) == 101 and all(json.loads(b)["code"] == 10001 for _, b in replies[:100])
    assert db_state(server.data_dir) == before


def test_smuggling_shapes_with_a_valid_token_store_nothing(server: ServerProcess, bed: dict, token: str,
                                                           client: DeviceClient) -> None:
    """Framing that a front proxy and the server could read differently: refused outright, nothing stored."""
    a = bed["a"]
    topic = f"/topic/{a['productKey']}/{a['deviceName']}/user/update"
    head = f"POST {topic} HTTP/1.1\nHost: x\npassword: {token}\nContent-Type: application/octet-stream\n"
    cases = [
        request(head + "Content-Length: 5\nTransfer-Encoding: chunked\n", b"5\r\nhello\r\n0\r\n\r\n"),
        request(head + "Content-Length: 5\nContent-Length: 6\n", b"hello!"),
        request(head + "Transfer-Encoding: chunked\nTransfer-Encoding: identity\n", b"5\r\nhello\r\n0\r\n\r\n"),
        request(head + "Content-Length : 5\n", b"hello"),
        request(head + "Transfer-Encoding : chunked\n", b"5\r\nhello\r\n0\r\n\r\n"),
    ]
    before = db_state(server.data_dir)
    for data in cases:
        outcome = raw_exchange(server.port, data, timeout=TIMEOUT)
        assert_acceptable(outcome)
        assert db_state(server.data_dir) == before, data[:200]
    good_aliyun_round_trip(client, a)


def test_body_shorter_than_content_length_then_disconnect_is_dropped_not_stored(
    server: ServerProcess, bed: dict, token: str
) -> None:
    """A device that dies mid-body (EOF before Content-Length bytes) must not leave a truncated message."""
    a = bed["a"]
    before = db_state(server.data_dir)
    raw = request(f"POST /topic/{a['productKey']}/{a['deviceName']}/user/update HTTP/1.1\nHost: x\npassword: {token}\n"
                  "Content-Type: application/octet-stream\nContent-Length: 100\n", b"only ten b")
    sock = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT))
    try:
        sock.sendall(raw)
        time.sleep(0.2)
        sock.unwrap().close()  # close_notify, then FIN: the device is gone
    except OSError:
        sock.close()
    time.sleep(0.5)
    assert db_state(server.data_dir) == before  # observed: one more message, payload b"only ten b"


@pytest.mark.parametrize("coding", ["xchunked", "gzip", "identity"])
def test_a_request_the_http_layer_refuses_stores_nothing(server: ServerProcess, bed: dict, token: str,
                                                         coding: str) -> None:
    a = bed["a"]
    raw = request(f"POST /topic/{a['productKey']}/{a['deviceName']}/user/update HTTP/1.1\nHost: x\npassword: {token}\n"
                  f"Content-Type: application/octet-stream\nTransfer-Encoding: {coding}\n", b"5\r\nhello\r\n0\r\n\r\n")
    before = db_state(server.data_dir)
    outcome = raw_exchange(server.port, raw, timeout=TIMEOUT)
    assert outcome.status == 400
    time.sleep(0.3)
    assert db_state(server.data_dir) == before  # observed: one more message, an empty payload


def test_server_keeps_serving_both_dialects_after_the_framing_cases(client: DeviceClient, bed: dict) -> None:
    good_aliyun_round_trip(client, bed["a"])
    good_huawei_round_trip(client, bed["h"])


OVERSIZED_HEADER_MB = 8
MAX_HEADER_BYTES = 64 * 1024  # settings.max_header_bytes, the default


def test_oversized_request_headers_are_refused_by_the_http_layer(server: ServerProcess) -> None:
    """httptools has no header-size limit (it concatenates header pieces, quadratically): runtime/bounded_http.py
    counts the head's bytes and answers 431 once they pass the cap, without reading the rest."""
    raw = request("POST /auth HTTP/1.1\nHost: x\nX-Big: " + "a" * (OVERSIZED_HEADER_MB << 20)
                  + "\nContent-Type: application/json\nContent-Length: 2\nConnection: close\n", b"{}")
    outcome = raw_exchange(server.port, raw, timeout=30)
    assert not outcome.timed_out
    assert outcome.status == 431, outcome.data[:200]
    assert outcome.closed
    assert outcome.seconds < 5, f"took {outcome.seconds:.1f} s: the header was read whole"


@pytest.mark.parametrize("shape", ["one-header", "many-headers", "url"])
def test_a_head_just_under_the_cap_is_served(server: ServerProcess, shape: str) -> None:
    room = MAX_HEADER_BYTES - 1024
    head = {
        "one-header": "POST /auth HTTP/1.1\nHost: x\nX-Big: " + "a" * room + "\n",
        "many-headers": (
            "POST /auth HTTP/1.1\nHost: x\n" + "".join(f"X-H{i:04d}: {'v' * 90}\n" for i in range(room // 100))
        ),
        "url": "POST /auth?" + "q" * room + " HTTP/1.1\nHost: x\n",
    }[shape]
    raw = request(head + "Content-Type: application/json\nContent-Length: 2\nConnection: close\n", b"{}")
    outcome = raw_exchange(server.port, raw, timeout=TIMEOUT)
    assert outcome.status == 200, outcome.data[:200]
    assert json.loads(outcome.body)["code"] == 10001  # the dialect answered: the HTTP layer let it through


def test_server_keeps_serving_after_oversized_heads(client: DeviceClient, bed: dict) -> None:
    good_aliyun_round_trip(client, bed["a"])
