"""NATS sink: JetStream publishing with acks (nats-py).

Every delivery is published to the subject ``<subject_prefix>.productKey.deviceId.kind`` with the header
``Nats-Msg-Id: <message id>`` (a rule's output: ``<message id>:<rule>``): within the stream's duplicate
window (2 minutes by default) JetStream stores a retried delivery once, so a batch offered again after a
lost ack does not duplicate what was stored.
Every publish also carries ``Nats-Expected-Stream: <stream>``, so an ack from any other stream is an error.

Options (all optional):

``url``
    Server URL, ``nats://`` or ``tls://`` (several, comma-separated, for a cluster); default
    ``nats://127.0.0.1:4222``. Credentials in the URL (``nats://user:pass@host``) are used and never shown.
``stream``
    JetStream stream name; default ``THINGPORT``. Created on open when missing, with the subjects
    ``<subject_prefix>.>`` and the server's default limits; an existing stream is used as it is.
``subject_prefix``
    First subject tokens; default ``thingport`` (dot-separated tokens, no wildcards or spaces).
``max_in_flight``
    Most publishes awaiting their ack at once; default 1000. A larger batch streams through this window.
``timeout``
    Seconds, default 10: the bound on one ``open`` or one ``publish`` (connecting, stream check included).

Pipelining: ``publish`` sends the batch's messages in order with a reply subject ``<inbox>.<n>`` each (``n``
numbers this connection's deliveries) and one subscription to ``<inbox>.*`` collects the acks, counted off by
``n``: no future, semaphore or random token per message (nats-py's ``publish_async`` spends ~20 us on
those per message, more than the rest of forwarding). At most ``max_in_flight`` await their ack at once.
The batch succeeds when every ack arrived and none was an error. A JetStream error, a lost connection
(noticed at once through the client's disconnect callback) or the timeout fails it with SinkError; the
connection is then closed, and the next ``open``/``publish`` connects afresh (the client's own background
reconnect is off: reconnecting is this sink's business, at the forwarder's pace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from thingport.extras import missing_extra

try:
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
except ImportError as exc:  # an optional backend
    raise missing_extra("nats", exc) from None

from thingport.bus.base import (
    DEFAULT_TIMEOUT,
    ConnectedSink,
    Delivery,
    SinkConfigError,
    SinkError,
    option_error,
    text_option,
    timeout_option,
)
from thingport.bus.options import secret
from thingport.urls import redact

log = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "THINGPORT"
DEFAULT_SUBJECT_PREFIX = "thingport"
DEFAULT_MAX_IN_FLIGHT = 1000
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
_CLOSE_GRACE = 1.0
_decode_ack = msgspec.json.Decoder().decode


class _Acks:
    """The deliveries of one batch still awaiting their JetStream ack, by delivery number."""

    __slots__ = ("done", "pending", "room", "sealed", "window")

    def __init__(self, window: int) -> None:
        self.pending: set[int] = set()
        self.window = window
        self.sealed = False  # every delivery of the batch is sent
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.room: asyncio.Future[None] | None = None  # a sender waiting for the window to open

    def acked(self, n: int) -> None:
        self.pending.discard(n)
        if self.room is not None and len(self.pending) < self.window and not self.room.done():
            self.room.set_result(None)
        if self.sealed and not self.pending and not self.done.done():
            self.done.set_result(None)

    def failed(self, error: SinkError) -> None:
        if not self.done.done():
            self.done.set_exception(error)
        if self.room is not None and not self.room.done():
            self.room.set_result(None)  # wakes the sender, who finds the batch failed

    def seal(self) -> None:
        self.sealed = True
        self.acked(-1)


def _fail(option: str, message: str) -> SinkConfigError:
    return option_error("nats", option, message)


@dataclass(frozen=True)
class NatsOptions:
    url: str = secret(DEFAULT_URL)  # may carry credentials
    stream: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    timeout: float = DEFAULT_TIMEOUT


class NatsSink(ConnectedSink):
    kind = "nats"
    options_type = NatsOptions

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        url = self.options.get("url", DEFAULT_URL)
        if not isinstance(url, str) or not url.strip():
            raise _fail("url", f"must be a non-empty string, got {url!r}")
        servers = [s.strip() for s in url.split(",")]
        for server in servers:
            try:
                parts = urlsplit(server)
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError as exc:
                raise _fail("url", f"is not a valid URL: {exc}") from None
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise _fail("url", f"must be nats://host[:port] or tls://host[:port], got {redact(server)!r}")
        stream = text_option(self.options.get("stream", DEFAULT_STREAM))
        if not isinstance(stream, str) or not _STREAM_NAME.match(stream):
            raise _fail("stream", f"must be 1-255 of letters, digits, '-', '_', got {stream!r}")
        prefix = text_option(self.options.get("subject_prefix", DEFAULT_SUBJECT_PREFIX))
        if not isinstance(prefix, str) or not all(_SUBJECT_TOKEN.match(t) for t in prefix.split(".")):
            raise _fail("subject_prefix", f"must be dot-separated tokens of letters, digits, '-', '_', got {prefix!r}")
        window = self.options.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT)
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 100_000:
            raise _fail("max_in_flight", f"must be an integer from 1 to 100000, got {window!r}")
        self.url = url
        self.servers = servers
        self.stream = stream
        self.subject_prefix = prefix
        self.max_in_flight = window
        self.timeout = timeout_option("nats", self.options)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._lost: asyncio.Future[None] | None = None  # done when the current connection went away
        self._inbox = ""  # the current connection's reply subjects are <inbox>.<delivery number>
        self._delivered = 0  # deliveries numbered on the current connection
        self._acks: _Acks | None = None  # the batch in flight
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    # -- connection ---------------------------------------------------------------------------------------

    def _is_open(self) -> bool:
        return (
            self._js is not None
            and self._nc is not None
            and self._nc.is_connected
            and self._lost is not None
            and not self._lost.done()
        )

    async def _connect(self) -> None:
        if self._is_open():
            return
        self._drop()
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_gone() -> None:
            if not lost.done():
                lost.set_result(None)

        async def on_error(exc: Exception) -> None:
            log.debug("nats sink %s: %r", redact(self.url), exc)

        self._lost = lost
        nc = NatsClient()
        self._nc = nc  # before connecting: a connect cut short by the timeout is closed by _drop too
        await nc.connect(
            servers=self.servers,
            name="thingport",
            allow_reconnect=False,
            # nats-py's first connect walks the server list until every server is discarded: with 1, each is
            # tried twice, 0.1 s apart (0 would mean "forever")
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,  # type: ignore[arg-type]  # nats-py annotates int; it sleeps any float
            connect_timeout=self.timeout,  # type: ignore[arg-type]  # likewise: a float for asyncio.wait_for
            error_cb=on_error,
            disconnected_cb=on_gone,
            closed_cb=on_gone,
        )
        js = nc.jetstream(timeout=self.timeout)
        try:
            await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(name=self.stream, subjects=[f"{self.subject_prefix}.>"])
            except nats.js.errors.BadRequestError as exc:
                # created meanwhile by someone else: fine; anything else (overlapping subjects...) is an error
                if "already in use" not in str(exc) and "exists" not in str(exc):
                    raise
        self._inbox, self._delivered = nc.new_inbox(), 0
        await nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
        self._js = js

    async def _on_ack(self, msg: Msg) -> None:
        """One JetStream ack (or error) for the delivery numbered by the reply subject's last token."""
        acks = self._acks
        if acks is None or not msg.subject.startswith(self._inbox):
            return  # the ack of a batch given up on
        try:
            n = int(msg.subject[len(self._inbox) + 1 :])
        except ValueError:
            return
        if n not in acks.pending:
            return
        if msg.headers and msg.headers.get("Status") == "503":
            acks.failed(self._error(f"delivery {n} not acked: no stream takes its subject (no responders)"))
            return
        try:
            reply = _decode_ack(msg.data)
        except msgspec.DecodeError:
            reply = {"error": {"description": f"unreadable ack {msg.data[:100]!r}"}}
        if not isinstance(reply, dict) or "error" in reply:
            error = reply.get("error") if isinstance(reply, dict) else reply
            acks.failed(self._error(f"delivery {n} not acked: JetStream error {error}"))
        else:
            acks.acked(n)

    def _drop(self) -> None:
        """Forget the current connection; it closes in the background, bounded by _CLOSE_GRACE."""
        nc, self._nc, self._js, self._lost = self._nc, None, None, None
        if nc is not None and not nc.is_closed:
            task = asyncio.get_running_loop().create_task(_close_quietly(nc))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _error(self, what: str, exc: BaseException | None = None) -> SinkError:
        where = f"nats {redact(self.url)} stream {self.stream!r}: {what}"
        if exc is None:
            return SinkError(where)
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SinkError(f"{where}: {detail}")

    # -- publishing ---------------------------------------------------------------------------------------

    async def publish(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    await self._connect()
                    nc, lost = self._nc, self._lost
                    assert nc is not None and lost is not None
                    acks = self._acks = _Acks(self.max_in_flight)
                    prefix, inbox, stream = self.subject_prefix, self._inbox, self.stream
                    for d in batch:
                        if len(acks.pending) >= acks.window:  # the window is full: wait for an ack
                            acks.room = asyncio.get_running_loop().create_future()
                            await asyncio.wait((acks.room, lost), return_when=asyncio.FIRST_COMPLETED)
                            self._check(acks, lost, len(batch))
                        n = self._delivered = self._delivered + 1
                        acks.pending.add(n)
                        await nc.publish(
                            d.route(".", prefix), d.body, reply=f"{inbox}.{n}",
                            headers={"Nats-Msg-Id": d.dedup, "Nats-Expected-Stream": stream},
                        )
                    acks.seal()
                    await asyncio.wait((acks.done, lost), return_when=asyncio.FIRST_COMPLETED)
                    self._check(acks, lost, len(batch))
            except SinkError:
                self._drop()
                raise
            except TimeoutError as exc:
                self._drop()
                raise self._error(f"no ack for the batch of {len(batch)} within {self.timeout:g} s", exc) from exc
            except Exception as exc:
                self._drop()
                raise self._error("publish failed", exc) from exc
            except BaseException:
                self._drop()
                raise
            finally:
                in_flight, self._acks = self._acks, None  # None when the connect failed before the batch began
                if in_flight is not None and not in_flight.done.done():
                    in_flight.done.cancel()
                elif in_flight is not None and not in_flight.done.cancelled():
                    in_flight.done.exception()  # retrieved, whichever way this ended

    def _check(self, acks: _Acks, lost: asyncio.Future[None], size: int) -> None:
        """Raise if the batch failed (an error ack) or, not yet all acked, the connection went away."""
        if acks.done.done():
            acks.done.result()
        elif lost.done():
            raise self._error(f"connection lost before the batch of {size} was acked")

    async def close(self) -> None:
        try:
            async with self._lock:
                self._drop()
                if self._closing:
                    await asyncio.wait(set(self._closing), timeout=_CLOSE_GRACE + 0.5)
        except BaseException as exc:  # close never raises; a cancellation still propagates
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.debug("nats sink close: %r", exc)


async def _close_quietly(nc: NatsClient) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(nc.close(), _CLOSE_GRACE)
