"""The test proxy itself: forwards, cuts (refusing), stalls, restores on the same port; and require_service."""

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.bus.services import require_service
from tests.bus.tcp_proxy import TcpProxy
from tests.support import wait_until


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # connections the tests reset on purpose


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(*echo) as p:
        yield p


def connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=2)


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_forwards_both_ways(proxy: TcpProxy) -> None:
    payload = bytes(range(256)) * 1000  # 256 kB: more than one read
    with connect(proxy) as a, connect(proxy) as b:
        assert roundtrip(a, payload) == payload
        assert roundtrip(b, b"second connection") == b"second connection"
        wait_until(lambda: proxy.connections, "two links", 2.0, accept=lambda links: links == 2)
    wait_until(lambda: proxy.connections, "no links: a client closing ends its link", 2.0,
               accept=lambda links: links == 0)
    assert proxy.accepted == 2


def test_cut_closes_connections_and_refuses_new_ones(proxy: TcpProxy) -> None:
    sock = connect(proxy)
    assert roundtrip(sock, b"ping") == b"ping"
    proxy.cut()
    with sock:
        try:
            sock.sendall(b"after the cut")
            assert sock.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass  # aborted: a reset is what a cut looks like
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    assert proxy.connections == 0


def test_restore_listens_again_on_the_same_port(proxy: TcpProxy) -> None:
    port = proxy.port
    proxy.cut()
    proxy.restore()
    assert proxy.port == port
    with connect(proxy) as sock:
        assert roundtrip(sock, b"back") == b"back"
    proxy.restore()  # restoring a working proxy changes nothing
    with connect(proxy) as sock:
        assert roundtrip(sock, b"still") == b"still"


def test_stall_forwards_nothing_until_restored(proxy: TcpProxy) -> None:
    with connect(proxy) as old:
        assert roundtrip(old, b"warm") == b"warm"
        proxy.stall()
        old.sendall(b"held")
        with connect(proxy) as new:  # a stalled proxy still accepts
            new.sendall(b"also held")
            for sock in (old, new):
                sock.settimeout(0.3)
                with pytest.raises(TimeoutError):
                    sock.recv(100)
            proxy.restore()
            for sock, expected in ((old, b"held"), (new, b"also held")):
                sock.settimeout(2)
                got = b""
                while len(got) < len(expected):
                    got += sock.recv(100)
                assert got == expected


def test_unreachable_target_closes_the_client() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # closed again below: nothing listens there
    with TcpProxy("127.0.0.1", dead_port) as proxy:
        try:
            with connect(proxy) as sock:
                assert sock.recv(10) == b""
        except ConnectionResetError:
            pass  # reset (possibly before connect() even returned): closed either way
        wait_until(lambda: proxy.connections, "no links", 2.0, accept=lambda links: links == 0)
        assert proxy.accepted == 1


def test_close_stops_everything(echo: tuple[str, int]) -> None:
    proxy = TcpProxy(*echo).start()
    sock = connect(proxy)
    proxy.close()
    with sock:
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    proxy.close()  # twice is fine


def test_require_service_skips_locally_and_fails_in_ci(proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    require_service("Echo", proxy.host, proxy.port)  # reachable: nothing happens
    proxy.cut()
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"Echo is not reachable at 127.0.0.1:{proxy.port}"):
        require_service("Echo", proxy.host, proxy.port)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Echo is not reachable"):
        require_service("Echo", proxy.host, proxy.port)


def test_trickle_passes_the_server_bytes_intact_in_pieces(proxy: TcpProxy) -> None:
    proxy.trickle(True)
    with connect(proxy) as sock:
        data = bytes(range(256)) * 4
        sock.sendall(data)
        pieces: list[bytes] = []
        while sum(map(len, pieces)) < len(data):
            chunk = sock.recv(65536)
            assert chunk, "the proxy closed the connection"
            pieces.append(chunk)
        assert b"".join(pieces) == data
        assert len(pieces) > 50 and max(map(len, pieces)) < 100  # arrived cut up, not in one read
        proxy.trickle(False)
        assert roundtrip(sock, b"again") == b"again"
