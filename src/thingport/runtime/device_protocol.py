"""The device endpoint's HTTP/1.1: httptools over uvloop, one task per request, no ASGI.

Why a protocol of its own: uvicorn's ASGI request cycle (scope and message dicts, header checks, an Event and a
keep-alive timer per request) measured ~22 us of the ~80 us a durable report cost, against ~9 us for the same
request on a bare httptools protocol (issue 20). The management API stays on uvicorn (ASGI, FastAPI).

Kept from the uvicorn path, and tested as raw bytes off a socket (tests/hostile/): the deadlines for the head,
the body and an idle keep-alive connection (one sweeper per server, no timer per request); the exact cap on
the head (``bounded_http.HeadCap``); pipelined requests answered in order; ``100 Continue`` when a body is
awaited; HTTP/1.0 and ``Connection: close`` answered with ``Connection: close`` and a close; flow control
(no reading while replies back up); X-Forwarded-For from trusted proxies; a graceful stop. Every reply is
written whole in one write, with Content-Length and header names in canonical case (what naive device HTTP
clients read: no chunked bodies, a case-sensitive ``Content-Length: ``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httptools

from thingport.dialects.dialect import DialectTable
from thingport.dialects.http import ClientDisconnected, Reply, too_large
from thingport.runtime.bounded_http import TOO_LARGE, HeadCap, HeadTooLarge, HttpLimits, plain_reply, sweeper_for

log = logging.getLogger(__name__)

_NOT_FOUND: Reply = (404, b'{"code":10001,"message":"param error: no such endpoint"}')
_INTERNAL: Reply = (500, b'{"code":10000,"message":"common error: internal error"}')


class TrustedProxies:
    """Which peers may tell the device's address in X-Forwarded-For (``forwarded_allow_ips``: addresses,
    networks, or ``*``). The device is the last address such a chain names that is not a trusted proxy."""

    def __init__(self, allowed: str | None) -> None:
        names = [name.strip() for name in (allowed or "").split(",") if name.strip()]
        self.any = "*" in names
        self._networks = []
        self._literals = set()
        for name in names:
            try:
                self._networks.append(ipaddress.ip_network(name, strict=False))
            except ValueError:
                self._literals.add(name)
        self.enabled = bool(names)

    def trusts(self, host: str) -> bool:
        if self.any or host in self._literals:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client(self, peer: str, forwarded_for: bytes | None) -> str:
        if forwarded_for is None or not self.trusts(peer):
            return peer
        hosts = [host.strip() for host in forwarded_for.decode("latin-1").split(",") if host.strip()]
        if not hosts:
            return peer
        if self.any:
            return _host_of(hosts[0])
        for host in reversed(hosts):
            if not self.trusts(_host_of(host)):
                return _host_of(host)
        return _host_of(hosts[0])


def _host_of(host_port: str) -> str:
    if host_port.startswith("["):  # [v6]:port
        return host_port[1:].partition("]")[0]
    if host_port.count(":") == 1:  # v4:port
        return host_port.partition(":")[0]
    return host_port


class Endpoint:
    """What one device endpoint shares between its connections: the dialects, the limits, the connections
    (for the sweeper and a graceful stop) and the requests in flight."""

    def __init__(self, dialects: DialectTable, limits: HttpLimits, keep_alive_s: float, max_body_bytes: int,
                 proxies: TrustedProxies) -> None:
        self.dialects = dialects
        self.limits = limits
        self.keep_alive_s = keep_alive_s
        self.max_body_bytes = max_body_bytes  # buffered per request at most: no dialect reads more
        self.proxies = proxies
        self.connections: set[DeviceProtocol] = set()
        self.in_flight = 0
        self.stopping = False
        self.idle = asyncio.Event()  # set while no request is in flight
        self.idle.set()

    def protocol(self) -> DeviceProtocol:
        return DeviceProtocol(self)


_REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


class _Date:
    """The Date header's value, formatted once a second."""

    second = 0
    value = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True).encode("ascii")
        return cls.value


def reply_bytes(status: int, body: bytes, close: bool) -> bytes:
    """One whole JSON reply: status line, Content-Type, Content-Length, Date (and Connection: close), body."""
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\n%s\r\n%s" % (
        status, _REASONS.get(status, b""), len(body), _Date.now(), b"Connection: close\r\n" if close else b"",
        body)


class Request:
    """One request (``dialects.http.DeviceRequest``); its body arrives through the connection that parsed it."""

    __slots__ = ("method", "path", "raw_path", "query", "headers", "client", "keep_alive", "_connection",
                 "_parts", "_size", "_complete", "_gone", "_waiter", "_continue", "answered")

    def __init__(self, connection: DeviceProtocol, method: bytes, path: str, raw_path: bytes, query: bytes,
                 headers: dict[bytes, bytes], client: str, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.query = query
        self.headers = headers
        self.client = client
        self.keep_alive = keep_alive
        self._connection = connection
        self._parts: list[bytes] = []
        self._size = 0
        self._complete = False
        self._gone = False
        self._waiter: asyncio.Future[None] | None = None
        self._continue = headers.get(b"expect", b"").lower() == b"100-continue"
        self.answered = False

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        while not self._complete:
            if self._gone:
                raise ClientDisconnected
            if self._size > limit:
                raise too_large(limit)
            if self._continue:
                self._continue = False
                self._connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._waiter = self._connection.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._size > limit:
            raise too_large(limit)
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def add(self, chunk: bytes, cap: int) -> None:
        self._size += len(chunk)
        if self._size <= cap and not self.answered:  # past the cap no dialect takes it: counted, not kept
            self._parts.append(chunk)
        self._wake()

    def complete(self) -> None:
        self._complete = True
        self._wake()

    def gone(self) -> None:
        self._gone = True
        self._wake()


class DeviceProtocol(HeadCap, asyncio.Protocol):
    """One device connection."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.limits = endpoint.limits
        self.loop = asyncio.get_running_loop()
        self.deadline: float | None = None
        self._init_head_cap()
        self._sweeper = sweeper_for(self.loop, endpoint, endpoint.connections)
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self._url = b""
        self._parsing: Request | None = None  # the request whose head or body the parser is in
        self._current: Request | None = None  # the request being answered
        self._queued: deque[Request] = deque()  # pipelined requests after it
        self._final: bytes | None = None  # written after the current reply, then the connection closes
        self._closing = False  # close after the current reply
        self._stopped = False  # parse no more (an upgrade, an error)
        self._idle = False  # the deadline is the keep-alive one
        self._read_paused = False
        self._write_paused = False

    # connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.endpoint.connections.add(self)
        self.deadline = self.loop.time() + self.limits.header_timeout_s
        self._sweeper.wake()
        if self.endpoint.stopping:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint.connections.discard(self)
        self.deadline = None
        for request in (self._current, *self._queued, self._parsing):
            if request is not None:
                request.gone()
        self._queued.clear()

    def eof_received(self) -> bool | None:
        return None  # close: a half-closed device gets no more answers than those already due

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return
        if self._idle:
            self._idle = False
            self.deadline = None
        if not self._count_read(data):
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._upgrade_refused()
        except httptools.HttpParserError as exc:
            if self._refused or isinstance(exc.__context__, HeadTooLarge):
                self._refused = True
                self._refuse_head()
            else:
                self._end_with(plain_reply(b"400 Bad Request", b"Invalid HTTP request received."))
        finally:
            self._read = None

    def _refuse_head(self) -> None:
        self._end_with(TOO_LARGE)

    def _end_with(self, final: bytes) -> None:
        """Answer ``final`` (a whole reply) once the replies due before it are written, then close."""
        self._stopped = True
        if self._parsing is not None:  # a body cut short by the error: never taken for a whole one
            self._parsing.gone()
            self._parsing = None
        if self._current is None:
            if not self.transport.is_closing():
                self.transport.write(final)
                self.transport.close()
        else:
            self._final = final
            self._closing = True
            self._queued.clear()

    def _upgrade_refused(self) -> None:
        """An ``Upgrade`` request (WebSocket, h2c): answered as a plain request, with whatever body came,
        and then the connection closes (the bytes after the head belong to a protocol spoken nowhere here)."""
        self._stopped = True
        self._closing = True
        request = self._parsing
        if request is not None:
            request.keep_alive = False
            request.complete()

    def deadline_passed(self) -> None:
        """Close an idle keep-alive connection; abort one past a head or body deadline (a peer that stalls
        would stall the TLS close_notify exchange too)."""
        self.deadline = None
        if self.transport.is_closing():
            return
        if self._idle:
            self.transport.close()
        else:
            self.transport.abort()

    def shutdown(self) -> None:
        """A graceful stop: close now when idle, else after the reply due."""
        if self._current is None:
            if not self.transport.is_closing():
                self.transport.close()
        else:
            self._closing = True

    # flow control

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        pause = self._write_paused or bool(self._queued)
        if pause != self._read_paused and not self.transport.is_closing():
            self._read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    # parser callbacks

    def on_message_begin(self) -> None:
        self._head_begins()
        self.headers = []
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self._head_ends()
        parser = self.parser
        url = self._url
        parsed = httptools.parse_url(url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        if b"#" in url:  # kept, so the dialects refuse it (a request target has none: RFC 9112)
            fragment = url.partition(b"#")[2]
            raw_path += b"#" + fragment
            path += "#" + fragment.decode("latin-1")
        headers = dict(self.headers)
        proxies = self.endpoint.proxies
        client = proxies.client(self.peer, headers.get(b"x-forwarded-for")) if proxies.enabled else self.peer
        keep_alive = parser.get_http_version() == "1.1" and parser.should_keep_alive()
        request = Request(self, parser.get_method(), path, raw_path, parsed.query or b"", headers, client,
                          keep_alive)
        self._parsing = request
        if self._current is None:
            self._start(request)
        else:
            self._queued.append(request)
            self._update_reading()

    def on_body(self, body: bytes) -> None:
        request = self._parsing
        if request is not None:
            request.add(body, self.endpoint.max_body_bytes)

    def on_message_complete(self) -> None:
        self._message_ends()
        request = self._parsing
        if request is not None:
            self._parsing = None
            request.complete()

    # answering

    def _start(self, request: Request) -> None:
        self._current = request
        dialect = self.endpoint.dialects.find(request.path)
        if dialect is None:
            self._answer(request, _NOT_FOUND)
            return
        endpoint = self.endpoint
        endpoint.in_flight += 1
        endpoint.idle.clear()
        self.loop.create_task(self._serve(dialect, request))

    async def _serve(self, dialect: Any, request: Request) -> None:
        try:
            reply = await dialect(request)
        except Exception:  # a dialect answers its own errors: this is a bug, still answered, then closed
            log.exception("unexpected error on %s", request.path)
            reply = _INTERNAL
            self._closing = True
        finally:
            endpoint = self.endpoint
            endpoint.in_flight -= 1
            if not endpoint.in_flight:
                endpoint.idle.set()
        self._answer(request, reply)

    def _answer(self, request: Request, reply: Reply | None) -> None:
        request.answered = True
        self._current = None
        transport = self.transport
        if transport.is_closing():
            return
        if reply is None:  # the body never came whole: nothing to answer but what ends the connection
            if self._final is not None:
                transport.write(self._final)
            transport.close()
            return
        close = self._closing or not request.keep_alive or self.endpoint.stopping
        status, body = reply
        if self._final is not None:
            transport.write(reply_bytes(status, body, False) + self._final)
            transport.close()
            return
        transport.write(reply_bytes(status, body, close))
        if close:
            transport.close()
            return
        if self._queued:
            self._start(self._queued.popleft())
            self._update_reading()
        elif self.deadline is None and self._parsing is None:
            self._idle = True
            self.deadline = self.loop.time() + self.endpoint.keep_alive_s


def close_all(connections: Iterable[DeviceProtocol]) -> None:
    for connection in list(connections):
        connection.shutdown()
