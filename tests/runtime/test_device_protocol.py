"""The device endpoint's own HTTP protocol, on a real socket: ordering, 100-continue, a client gone mid-body,
a graceful stop and X-Forwarded-For. (The hostile suite, tests/hostile/, covers framing, caps and deadlines.)"""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvloop

from thingport.dialects.dialect import DialectTable
from thingport.dialects.http import ClientDisconnected, DeviceRequest, Reply
from thingport.runtime.device_protocol import TrustedProxies
from thingport.runtime.device_server import DeviceServer, endpoint_for
from thingport.settings import load_settings


class Scripted:
    """A dialect whose answer a test decides: ``hold`` paths wait for ``release``; every request is logged."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes | str]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    def __call__(self, ingest: Any) -> "Scripted":  # the DialectTable's factory
        return self

    async def handle(self, request: DeviceRequest) -> Reply | None:
        self.started.set()
        if request.path.startswith("/hold"):
            await self.release.wait()
        try:
            body = await request.body(1000)
        except ClientDisconnected:
            self.seen.append((request.path, "gone"))
            return None
        self.seen.append((request.path, body))
        return 200, b'{"path":"%s","client":"%s"}' % (request.path.encode(), request.client.encode())


def serve(test: Callable[[DeviceServer, Scripted], Awaitable[None]], tmp_path: Path, **settings: Any) -> None:
    async def run() -> None:
        scripted = Scripted()

        class Table(DialectTable):
            def find(self, path: str) -> Any:
                return scripted.handle

        config = load_settings(data_dir=tmp_path, host="127.0.0.1", port=0, tls_offload=True, **settings)
        server = DeviceServer(config, endpoint_for(config, Table(None, {})), None)  # type: ignore[arg-type]
        await server.start()
        try:
            await asyncio.wait_for(test(server, scripted), 10)
        finally:
            await server.stop()

    uvloop.run(run())


def post(path: str, body: bytes = b"{}", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


async def read_reply(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    return head, await reader.readexactly(length)


def test_pipelined_requests_are_answered_in_order_even_when_the_first_is_slow(tmp_path: Path) -> None:
    async def test(server: DeviceServer, scripted: Scripted) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(post("/hold/1") + post("/b/2") + post("/c/3"))
        await scripted.started.wait()
        await asyncio.sleep(0.05)
        assert scripted.seen == []  # nothing after the held one started: answers go out in order
        scripted.release.set()
        paths = [(await read_reply(reader))[1] for _ in range(3)]
        assert [p.split(b'"')[3] for p in paths] == [b"/hold/1", b"/b/2", b"/c/3"]
        writer.close()

    serve(test, tmp_path)


def test_a_body_awaited_after_expect_100_continue_gets_100_continue_first(tmp_path: Path) -> None:
    async def test(server: DeviceServer, scripted: Scripted) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        head, _ = await read_reply(reader)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert scripted.seen == [("/a", b"hello")]
        writer.close()

    serve(test, tmp_path)


def test_a_client_gone_mid_body_is_never_taken_for_a_whole_request(tmp_path: Path) -> None:
    async def test(server: DeviceServer, scripted: Scripted) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
        await scripted.started.wait()
        writer.close()
        for _ in range(100):
            if scripted.seen:
                break
            await asyncio.sleep(0.01)
        assert scripted.seen == [("/a", "gone")]

    serve(test, tmp_path)


def test_a_stopping_server_answers_the_request_in_flight_then_closes_and_takes_no_more(tmp_path: Path) -> None:
    async def test(server: DeviceServer, scripted: Scripted) -> None:
        port = server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        idle_reader, _idle = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/hold/1"))
        await scripted.started.wait()
        stopping = asyncio.ensure_future(server.stop())
        await asyncio.sleep(0.05)
        assert await idle_reader.read() == b""  # an idle connection is closed at once
        scripted.release.set()
        head, body = await read_reply(reader)
        assert b"\r\nConnection: close\r\n" in head and b"/hold/1" in body
        assert await reader.read() == b""
        await stopping
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)

    serve(test, tmp_path, shutdown_grace_s=5)


def test_the_device_address_comes_from_x_forwarded_for_only_through_a_trusted_proxy(tmp_path: Path) -> None:
    async def test(server: DeviceServer, scripted: Scripted) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(post("/a", extra="X-Forwarded-For: 203.0.113.9, 127.0.0.1\r\n"))
        _, body = await read_reply(reader)
        assert b'"client":"203.0.113.9"' in body
        writer.close()

    serve(test, tmp_path, forwarded_allow_ips="127.0.0.1")

    async def untrusted(server: DeviceServer, scripted: Scripted) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(post("/a", extra="X-Forwarded-For: 203.0.113.9\r\n"))
        _, body = await read_reply(reader)
        assert b'"client":"127.0.0.1"' in body
        writer.close()

    serve(untrusted, tmp_path / "b", forwarded_allow_ips="192.0.2.1")


def test_trusted_proxies_name_the_last_untrusted_address_of_the_chain() -> None:
    proxies = TrustedProxies("10.0.0.0/8, 192.0.2.1")
    assert proxies.client("10.0.0.1", b"203.0.113.9, 198.51.100.7, 10.1.2.3") == "198.51.100.7"
    assert proxies.client("10.0.0.1", b"203.0.113.9:4711") == "203.0.113.9"
    assert proxies.client("10.0.0.1", b"[2001:db8::1]:4711") == "2001:db8::1"
    assert proxies.client("192.0.2.1", b"10.0.0.5, 10.0.0.6") == "10.0.0.5"  # all trusted: the first
    assert proxies.client("198.51.100.1", b"203.0.113.9") == "198.51.100.1"  # not from a proxy: ignored
    assert proxies.client("10.0.0.1", None) == "10.0.0.1"
    everyone = TrustedProxies("*")
    assert everyone.client("198.51.100.1", b"203.0.113.9, 10.0.0.1") == "203.0.113.9"
    assert not TrustedProxies(None).enabled
