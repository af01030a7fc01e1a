"""uvicorn's httptools protocol with the bounds it lacks: a deadline for the request head and for the body,
a cap on the head's size, the URL's ``#fragment`` kept in the path, and reply heads that naive clients read.

Without them one client holds a connection forever (a TLS connection that never sends a request, a head or
a body sent a byte at a time: uvicorn arms its keep-alive timer only after a response) or makes the event
loop copy an unbounded header (httptools concatenates header pieces with no limit). And uvicorn drops a
``#fragment`` from the path, so ``/topic/pk/dn/user/a#b`` would be stored as ``user/a``; kept, the dialects
refuse it like any other character a topic may not have.

Constrained device HTTP clients (C over mbedTLS) find the body by a case-sensitive search for
``Content-Length: ``; uvicorn writes header names in lower case (its own 400 too), so every reply head
leaves here with its names in canonical case (``Content-Length``, ``Date``, ...).

Deadlines cost no timer per request: each connection holds one deadline (a float, or None while idle
between requests, where uvicorn's keep-alive timeout applies) and one sweeper per server closes the
connections past theirs every ``SWEEP_S``, and stops while the server has no connection.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

SWEEP_S = 0.5  # how late past its deadline a connection may be closed


def canonical_head(head: bytes) -> bytes:
    """A reply's status line and header lines with each header name in canonical case (``content-length``
    -> ``Content-Length``); values, and anything after the blank line, untouched. Names are HTTP tokens, so
    ``bytes.title`` is canonical case; a name already in it comes out the same."""
    lines = head.split(b"\r\n")
    for i in range(1, len(lines)):
        line = lines[i]
        if not line:  # the blank line: the body follows
            break
        name, colon, value = line.partition(b":")
        if colon:
            lines[i] = name.title() + colon + value
    return b"\r\n".join(lines)


_canonical_heads: dict[bytes, bytes] = {}  # heads seen lately: a server's replies differ in few values
_CANONICAL_HEADS_MAX = 512


def _canonical_head_memo(head: bytes) -> bytes:
    """``canonical_head`` at the cost of a dict look-up for a head seen lately (~50 ns, not ~1 us)."""
    done = _canonical_heads.get(head)
    if done is None:
        if len(_canonical_heads) >= _CANONICAL_HEADS_MAX:
            _canonical_heads.clear()
        done = _canonical_heads[head] = canonical_head(head)
    return done


def plain_reply(status: bytes, text: bytes) -> bytes:
    """The whole of a short text reply that ends the connection, in the framing devices read."""
    return (b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, len(text), text))


TOO_LARGE = plain_reply(b"431 Request Header Fields Too Large", b"request header fields too large")
_BLANK_LINES = re.compile(rb"[\r\n]*")  # what llhttp skips before a request line
_LAZY = -1  # (a body length) not read from the head yet: most requests never need it


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop the parser on a head found past the cap mid-read."""


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


_sweepers: weakref.WeakKeyDictionary[Any, _Sweeper] = weakref.WeakKeyDictionary()


def sweeper_for(loop: asyncio.AbstractEventLoop, server: Any, connections: set[Any]) -> _Sweeper:
    """The one sweeper of ``server`` (any object standing for one server), over its ``connections``."""
    sweeper = _sweepers.get(server)
    if sweeper is None:
        sweeper = _sweepers[server] = _Sweeper(loop, connections)
    return sweeper


class _Coalescing:
    """The transport as a response's cycle sees it: writes made in one turn of the event loop leave in one.

    uvicorn writes a response's head (``http.response.start``) and its body (``http.response.body``) with
    two ``write`` calls: over TLS two records and two sends, the largest part of a small reply's cost. The
    first write is held and sent with the next one, or at the end of the loop's turn if none comes (a
    streamed body, ``100 Continue``), so nothing is delayed past the turn it was written in.

    The cycle's writes up to its head (``100 Continue`` comes before it, the body after) leave through
    ``canonical_head``: the one place every reply head of the cycle passes, whatever sent it (the app,
    uvicorn's 500).
    """

    __slots__ = ("_transport", "_loop", "_held", "_head_due")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._head_due = True

    def write(self, data: bytes) -> None:
        if self._head_due:
            data = _canonical_head_memo(data)
            self._head_due = data.startswith(b"HTTP/1.1 1")  # an interim reply: the head is still to come
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


class HeadCap:
    """The exact cap on a request head's size, for an httptools protocol (a mixin: uvicorn's for the management
    API, ``device_protocol``'s for the device endpoint). The protocol gives ``limits``, ``headers`` (the current
    request's, lower-case names) and ``_refuse_head``; it calls ``_count_read`` first in ``data_received`` (and
    parses nothing when it says no), ``_head_begins``/``_head_ends``/``_message_ends`` from the parser's
    callbacks, and answers a parse stopped by ``HeadTooLarge`` with ``_refuse_head``."""

    limits: HttpLimits
    headers: list[tuple[bytes, bytes]]
    deadline: float | None
    loop: asyncio.AbstractEventLoop

    def _init_head_cap(self) -> None:
        self._refused = False
        self._head_bytes: int | None = 0  # bytes received for the current request head; None past it
        self._head_tail: bytes | None = None  # the head's last bytes so far; None while only blank lines came
        self._read: bytes | None = None  # the read being parsed
        self._completed = False  # a request ended in the read being parsed
        self._body_at = 0  # where in that read the current body begins (-1: not known, after a chunked body)
        self._body_len: int | None = _LAZY  # its body bytes from there (None: chunked)
        self._body_seen = 0  # body bytes that came in the read its head ended in
        self._body_left: int | None = None  # Content-Length bytes still to come after that read (None: chunked)

    def _refuse_head(self) -> None:
        raise NotImplementedError

    def _count_read(self, data: bytes) -> bool:
        """Count the head's bytes up to its blank line before the parser sees them, so the cap is exact
        whatever the reads' sizes (a head often comes in one read with its body). A request that begins
        after another in the same read (pipelining) is counted where it begins (``_head_begins``), found
        from where the one before began and its Content-Length. False: refused, parse nothing."""
        if self._refused:
            return False
        head = self._head_bytes
        if head is not None:
            if self.deadline is None:  # the first bytes of a later request on a kept-alive connection
                self.deadline = self.loop.time() + self.limits.header_timeout_s
            size = self._head_part(data, 0)
            head += size
            if head > self.limits.max_header_bytes:
                self._refused = True
                self._refuse_head()
                return False
            self._head_bytes = head
            self._body_at, self._body_len = size, _LAZY
        else:  # in a body
            left = self._body_left
            if left == _LAZY:
                left = _content_length(self.headers)
                if left is not None:
                    left -= self._body_seen
            self._body_at, self._body_len = 0, left
            self._body_left = left - len(data) if left is not None and left >= len(data) else None
        self._read, self._completed = data, False
        return True

    def _head_part(self, data: bytes, pos: int) -> int:
        """How many bytes of ``data`` from ``pos`` belong to the current head: up to its blank line, or all.

        llhttp skips blank lines before a request line and ends a head at the first CRLF CRLF after it
        (a bare LF there is an error), so the head's end is found by the same rule, across reads."""
        tail = self._head_tail
        start = pos
        if tail is None:  # nothing but blank lines before this read
            if data[pos] in b"\r\n":
                start = _BLANK_LINES.match(data, pos).end()  # type: ignore[union-attr]
                if start == len(data):
                    return start - pos
            tail = b""
        elif tail:
            straddling = (tail + data[pos:pos + 3]).find(b"\r\n\r\n")
            if straddling >= 0:
                return straddling + 4 - len(tail)
        found = data.find(b"\r\n\r\n", start)
        if found >= 0:
            return found + 4 - pos
        self._head_tail = (tail + data[max(start, len(data) - 3):])[-3:]
        return len(data) - pos

    def _head_begins(self) -> None:
        """From ``on_message_begin``, before the protocol resets ``headers``: counts the head of a request
        that begins after another one in the read being parsed, from the end of the one before (its body's
        start and length). After a chunked body that end is the parser's to know: every byte after the last
        known head counts (more than the head, never less)."""
        read = self._read
        if self._completed and read is not None:
            at, length = self._body_at, self._body_len
            if length == _LAZY:
                length = _content_length(self.headers)  # the previous request's
            if at < 0 or length is None:
                self._head_bytes = len(read) - max(at, 0)
                self._head_tail = bytes(read[-3:])
                self._body_at = -1
            else:
                start = at + length
                self._head_tail = None
                size = self._head_bytes = self._head_part(read, start)
                self._body_at = start + size
            if self._head_bytes > self.limits.max_header_bytes:
                self._refused = True
                raise HeadTooLarge  # the parser stops; the protocol answers 431 (``_refuse_head``)
        if self.deadline is None:  # a pipelined request whose head began in the previous one's last chunk
            self.deadline = self.loop.time() + self.limits.header_timeout_s

    def _head_ends(self) -> None:
        """From ``on_headers_complete``: the body's deadline starts."""
        self._head_bytes = None
        self._head_tail = None
        read = self._read
        if read is not None and self._body_at >= 0:
            self._body_seen, self._body_left = len(read) - self._body_at, _LAZY
        else:
            self._body_left = None
        self.deadline = self.loop.time() + self.limits.body_timeout_s

    def _message_ends(self) -> None:
        self._head_bytes = 0
        self._completed = True
        self.deadline = None


class BoundedHttpToolsProtocol(HeadCap, HttpToolsProtocol):
    """HttpToolsProtocol with ``limits`` (set on the subclass that ``bounded_protocol`` makes)."""

    limits = HttpLimits(header_timeout_s=10.0, body_timeout_s=60.0, max_header_bytes=64 * 1024)

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.deadline: float | None = None
        self._init_head_cap()
        self._sweeper = sweeper_for(self.loop, server_state, server_state.connections)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline = self.loop.time() + self.limits.header_timeout_s
        self._sweeper.wake()

    def data_received(self, data: bytes) -> None:
        if not self._count_read(data):
            return
        try:
            super().data_received(data)
        finally:
            self._read = None

    def _refuse_head(self) -> None:
        self._refused = True
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # never answer out of turn (pipelining)
            self.transport.write(TOO_LARGE)
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request it cannot parse, its names in canonical case; a 431 when the parse
        was stopped by a head past the cap."""
        if self._refused:
            self._refused = False  # (set by _head_begins, whose exception brought us here)
            self._refuse_head()
            return
        self.transport.write(plain_reply(b"400 Bad Request", msg.encode("ascii")))
        self.transport.close()

    def deadline_passed(self) -> None:
        """Abort rather than close: a peer that stalls would stall the TLS close_notify exchange too."""
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.abort()

    # parser callbacks

    def on_message_begin(self) -> None:
        self._head_begins()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_ends()
        url = self.url
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _Coalescing(self.transport, self.loop)  # type: ignore[assignment]
        if b"#" in url and "raw_path" in self.scope:  # (no raw_path: an upgrade, handed to another protocol)
            self._keep_fragment(url)

    def on_message_complete(self) -> None:
        self._message_ends()
        super().on_message_complete()

    def _keep_fragment(self, url: bytes) -> None:
        """Put the ``#fragment`` uvicorn parsed away back on the path (a request target has none: RFC 9112)."""
        fragment = url.partition(b"#")[2]
        scope = self.scope
        scope["raw_path"] = scope["raw_path"] + b"#" + fragment
        scope["path"] = scope["path"] + "#" + fragment.decode("latin-1")


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's length from a parsed head (llhttp has refused a bad or conflicting one); None when the
    body is chunked (or, were llhttp ever to pass one, the length unreadable: counted as after a chunked
    body). No Content-Length and no chunking: no body."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
        if name == b"transfer-encoding":
            return None
    return 0


def bounded_protocol(limits: HttpLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)`` for these limits."""
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})
