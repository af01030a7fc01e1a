"""Slow clients (slowloris): connections that never finish their request must be cut off by timeouts, and
must not starve other devices while they are connected.

What the server has:
* keep-alive timeout (``KEEP_ALIVE_S``, uvicorn ``timeout_keep_alive``): armed after a response, it closes
  idle keep-alive connections;
* request-head deadline (``HEADER_TIMEOUT_S``): from the TLS connection (or a later request's first byte)
  to the end of the request head, so a connection that never sends a request is cut off too;
* body deadline (``BODY_TIMEOUT_S``): from the end of the head to the end of the body
  (both in ``thingport.runtime.bounded_http``, checked every 0.5 s);
* TLS handshake timeout: uvloop's built-in 60 s (not configurable through uvicorn or thingport);
* no cap on concurrent connections (uvicorn ``limit_concurrency`` is unset): each is bounded in time.

This module runs its own server with all three timeouts at 2 s so the bounds below stay short.
"""

from __future__ import annotations

import json
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.hostile.common import good_aliyun_round_trip, provision, tls_context
from tests.support import ServerProcess

KEEP_ALIVE_S = 2
HEAD_AND_BODY_TIMEOUT_S = 2
GRACE_S = 3.0                       # how much later than the keep-alive timeout a cut-off may come
BOUND_S = KEEP_ALIVE_S + GRACE_S    # what "cut off by a timeout" means in this module
PER_KIND = 20                       # slow connections of each kind held open during the module
HANDSHAKE_TIMEOUT_S = 60            # uvloop's SSL_HANDSHAKE_TIMEOUT
SLOW = os.environ.get("THINGPORT_SLOW_TESTS") == "1"


@dataclass
class SlowClient:
    kind: str
    started: float
    closed_after: float | None = None
    error: str | None = None
    sock: socket.socket | None = field(default=None, repr=False)


class SlowWorld:
    """PER_KIND connections of each kind, each watched (and fed, for the tricklers) by one thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.clients: list[SlowClient] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> SlowWorld:
        kinds: dict[str, Callable[[], tuple[socket.socket, bytes | None, float]]] = {
            # (socket, what to trickle one byte at a time or None, seconds between bytes)
            "tcp-only": lambda: (self._tcp(), None, 0),
            "partial-client-hello": lambda: (self._partial_hello(), None, 0),
            "tls-idle": lambda: (self._tls(), None, 0),
            "slow-headers": lambda: (self._tls(), b"POST /auth HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000, 0.25),
            "slow-body": lambda: (
                self._tls_with(
                    b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"
                ),
                b" " * 4000,
                0.5,
            ),
            "stalled-body": lambda: (
                self._tls_with(
                    b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
                ),
                None,
                0,
            ),
            "idle-after-response": lambda: (self._after_response(), None, 0),
        }
        for kind, connect in kinds.items():
            for _ in range(PER_KIND):
                sock, trickle, every = connect()
                client = SlowClient(kind, time.monotonic(), sock=sock)
                self.clients.append(client)
                thread = threading.Thread(target=self._watch, args=(client, trickle, every), daemon=True)
                self.threads.append(thread)
                thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        for client in self.clients:
            if client.sock is not None:
                client.sock.close()

    def of(self, kind: str) -> list[SlowClient]:
        return [c for c in self.clients if c.kind == kind]

    def wait_for(self, kind: str, bound: float) -> list[SlowClient]:
        """The clients of ``kind`` once all were cut off or ``bound`` seconds passed since they connected."""
        clients = self.of(kind)
        deadline = max(c.started for c in clients) + bound
        while time.monotonic() < deadline and any(c.closed_after is None for c in clients):
            time.sleep(0.05)
        return clients

    # --- connections ---

    def _tcp(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def _partial_hello(self) -> socket.socket:
        sock = self._tcp()
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")  # a TLS record header and the first byte of a ClientHello
        return sock

    def _tls(self) -> ssl.SSLSocket:
        return tls_context().wrap_socket(self._tcp())

    def _tls_with(self, data: bytes) -> ssl.SSLSocket:
        sock = self._tls()
        sock.sendall(data)
        return sock

    def _after_response(self) -> ssl.SSLSocket:
        sock = self._tls_with(b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"}"):
            data += sock.recv(4096)
        return sock

    def _watch(self, client: SlowClient, trickle: bytes | None, every: float) -> None:
        sock = client.sock
        assert sock is not None
        sent = 0
        next_byte = time.monotonic()
        while not self.stop.is_set():
            try:
                pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
                readable, _, _ = select.select([sock], [], [], 0.05) if not pending else ([sock], [], [])
                if readable:
                    sock.setblocking(False)
                    try:
                        data = sock.recv(4096)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        data = None
                    finally:
                        sock.setblocking(True)
                    if data == b"":
                        client.closed_after = time.monotonic() - client.started
                        return
                if trickle is not None and sent < len(trickle) and time.monotonic() >= next_byte:
                    sock.sendall(trickle[sent:sent + 1])
                    sent += 1
                    next_byte = time.monotonic() + every
            except OSError as exc:  # reset / broken pipe: the server cut it off
                client.closed_after = time.monotonic() - client.started
                client.error = repr(exc)
                return


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict]]:
    data = tmp_path_factory.mktemp("slow") / "data"
    server = ServerProcess(data, {"THINGPORT_KEEP_ALIVE_S": str(KEEP_ALIVE_S),
                                  "THINGPORT_HEADER_TIMEOUT_S": str(HEAD_AND_BODY_TIMEOUT_S),
                                  "THINGPORT_BODY_TIMEOUT_S": str(HEAD_AND_BODY_TIMEOUT_S)}).start()
    try:
        yield server, provision(server, Path(str(data) + "-bed"))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def world(slow_server: tuple[ServerProcess, dict]) -> Iterator[SlowWorld]:
    w = SlowWorld(slow_server[0].port).start()
    try:
        yield w
    finally:
        w.close()


def test_devices_are_served_quickly_while_slow_clients_hold_connections(
    slow_server: tuple[ServerProcess, dict], world: SlowWorld
) -> None:
    server, bed = slow_server
    assert len(world.clients) == 7 * PER_KIND
    client = server.client()
    try:
        worst = 0.0
        for _ in range(10):  # a fresh connection each time: accept + handshake + auth + report
            started = time.monotonic()
            good_aliyun_round_trip(client, bed["a"])
            client.close()
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.1)
        assert worst < 1.0, f"a normal device waited {worst:.2f} s beside {len(world.clients)} slow connections"
    finally:
        client.close()


def test_idle_keep_alive_connections_are_closed_after_keep_alive_s(world: SlowWorld) -> None:
    clients = world.wait_for("idle-after-response", BOUND_S)
    assert all(c.closed_after is not None and c.closed_after < BOUND_S for c in clients), clients[:3]


def assert_cut_off_by_the_deadline(clients: list[SlowClient]) -> None:
    """Every client was cut off after the deadline (not before: it is a deadline, not a refusal) and within
    ``BOUND_S`` of connecting."""
    open_ = [c for c in clients if c.closed_after is None]
    assert not open_, f"{len(open_)} still open after {BOUND_S} s"
    early = [c for c in clients if c.closed_after is not None and c.closed_after < HEAD_AND_BODY_TIMEOUT_S - 0.1]
    assert not early, f"cut off before the {HEAD_AND_BODY_TIMEOUT_S} s deadline: {early[:3]}"


def test_tls_connection_that_never_sends_a_request_is_cut_off(world: SlowWorld) -> None:
    assert_cut_off_by_the_deadline(world.wait_for("tls-idle", BOUND_S))


def test_headers_sent_a_byte_at_a_time_are_cut_off(world: SlowWorld) -> None:
    assert_cut_off_by_the_deadline(world.wait_for("slow-headers", BOUND_S))


@pytest.mark.parametrize("kind", ["slow-body", "stalled-body"])
def test_bodies_that_trickle_or_stall_are_cut_off(world: SlowWorld, kind: str) -> None:
    assert_cut_off_by_the_deadline(world.wait_for(kind, BOUND_S))


def _read_reply(sock: ssl.SSLSocket) -> bytes:
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"}")):
        piece = sock.recv(4096)
        assert piece, f"the server closed the connection: {data!r}"
        data += piece
    return data


def test_a_slow_device_within_the_deadlines_is_served_on_a_long_kept_alive_connection(
    slow_server: tuple[ServerProcess, dict]
) -> None:
    """The deadlines bound each request, not the connection: a device that sends its head and body in pieces
    (each part well inside its deadline) is answered, and a second request on the same connection, 3 s after
    it opened, is answered too."""
    server, bed = slow_server
    a = bed["a"]
    client = server.client()
    token = client.token(a["productKey"], a["deviceName"], a["deviceSecret"])
    client.close()
    body = b'{"reading":1}'
    head = (f"POST /topic/{a['productKey']}/{a['deviceName']}/user/slow HTTP/1.1\r\nHost: x\r\npassword: {token}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10))
    try:
        for piece in (head[:20], head[20:60], head[60:]):
            sock.sendall(piece)
            time.sleep(0.6)  # the head takes 1.2 s (deadline 2 s) ...
        for piece in (body[:5], body[5:]):
            sock.sendall(piece)
            time.sleep(0.6)  # ... and the body 1.2 s more (deadline 2 s from the end of the head)
        first = _read_reply(sock)
        time.sleep(0.8)  # idle between requests (keep-alive 2 s)
        sock.sendall(head + body)
        second = _read_reply(sock)
    finally:
        sock.close()
    for reply in (first, second):
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["code"] == 0, reply


@pytest.mark.skipif(not SLOW, reason="waits ~60 s for uvloop's TLS handshake timeout: set THINGPORT_SLOW_TESTS=1")
@pytest.mark.parametrize("kind", ["tcp-only", "partial-client-hello"])
def test_half_open_tls_handshakes_are_cut_off_by_the_handshake_timeout(world: SlowWorld, kind: str) -> None:
    clients = world.wait_for(kind, HANDSHAKE_TIMEOUT_S + GRACE_S)
    assert all(c.closed_after is not None for c in clients), f"still open after {HANDSHAKE_TIMEOUT_S + GRACE_S} s"
