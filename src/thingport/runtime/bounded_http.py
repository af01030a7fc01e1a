"""uvicorn's httptools protocol with the bounds it lacks: a deadline for the request head and for the body,
a cap on the head's size, and the URL's ``#fragment`` kept in the path.

Without them one client holds a connection forever (a TLS connection that never sends a request, a head or
a body sent a byte at a time: uvicorn arms its keep-alive timer only after a response) or makes the event
loop copy an unbounded header (httptools concatenates header pieces with no limit). And uvicorn drops a
``#fragment`` from the path, so ``/topic/pk/dn/user/a#b`` would be stored as ``user/a``; kept, the dialects
refuse it like any other character a topic may not have.

Deadlines cost no timer per request: each connection holds one deadline (a float, or None while idle
between requests, where uvicorn's keep-alive timeout applies) and one sweeper per server closes the
connections past theirs every ``SWEEP_S``, and stops while the server has no connection.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

SWEEP_S = 0.5  # how late past its deadline a connection may be closed

_TOO_LARGE_BODY = b"request header fields too large"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout_s: float  # from the connection (or a later request's first byte) to the end of its head
    body_timeout_s: float  # from the end of the head to the end of the body
    max_header_bytes: int  # request line and headers together


class _Sweeper:
    """Closes the connections of one server whose deadline has passed, checked every ``SWEEP_S``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        self._loop = loop
        self._connections = connections
        self._timer: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(SWEEP_S, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = self._loop.time()
        for connection in list(self._connections):
            deadline = getattr(connection, "deadline", None)
            if deadline is not None and deadline <= now:
                connection.deadline_passed()
        if self._connections:
            self.wake()


_sweepers: weakref.WeakKeyDictionary[ServerState, _Sweeper] = weakref.WeakKeyDictionary()


class _Coalescing:
    """The transport as a response's cycle sees it: writes made in one turn of the event loop leave in one.

    uvicorn writes a response's head (``http.response.start``) and its body (``http.response.body``) with
    two ``write`` calls: over TLS two records and two sends, the largest part of a small reply's cost. The
    first write is held and sent with the next one, or at the end of the loop's turn if none comes (a
    streamed body, ``100 Continue``), so nothing is delayed past the turn it was written in.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with ``limits`` (set on the subclass that ``bounded_protocol`` makes)."""

    limits = HttpLimits(header_timeout_s=10.0, body_timeout_s=60.0, max_header_bytes=64 * 1024)

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.deadline: float | None = None
        self._head_bytes: int | None = 0  # bytes received for the current request head; None past it
        self._refused = False
        sweeper = _sweepers.get(server_state)
        if sweeper is None:
            sweeper = _sweepers[server_state] = _Sweeper(self.loop, server_state.connections)
        self._sweeper = sweeper

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline = self.loop.time() + self.limits.header_timeout_s
        self._sweeper.wake()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # parse no more
        if self._head_bytes is not None:
            self._head_bytes += len(data)
            if self.deadline is None:  # the first bytes of a later request on a kept-alive connection
                self.deadline = self.loop.time() + self.limits.header_timeout_s
        super().data_received(data)
        # checked after parsing: a chunk that completes the head may carry the body too
        if self._head_bytes is not None and self._head_bytes > self.limits.max_header_bytes:
            self._refuse_head()

    def _refuse_head(self) -> None:
        self._refused = True
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # never answer out of turn (pipelining)
            self.transport.write(_TOO_LARGE)
        self.transport.close()

    def deadline_passed(self) -> None:
        """Abort rather than close: a peer that stalls would stall the TLS close_notify exchange too."""
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.abort()

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.deadline is None:  # a pipelined request whose head began in the previous one's last chunk
            self.deadline = self.loop.time() + self.limits.header_timeout_s

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self.deadline = self.loop.time() + self.limits.body_timeout_s
        url = self.url
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _Coalescing(self.transport, self.loop)  # type: ignore[assignment]
        if b"#" in url and "raw_path" in self.scope:  # (no raw_path: an upgrade, handed to another protocol)
            self._keep_fragment(url)

    def on_message_complete(self) -> None:
        self._head_bytes = 0
        self.deadline = None
        super().on_message_complete()

    def _keep_fragment(self, url: bytes) -> None:
        """Put the ``#fragment`` uvicorn parsed away back on the path (a request target has none: RFC 9112)."""
        fragment = url.partition(b"#")[2]
        scope = self.scope
        scope["raw_path"] = scope["raw_path"] + b"#" + fragment
        scope["path"] = scope["path"] + "#" + fragment.decode("latin-1")


def bounded_protocol(limits: HttpLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for these limits."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
