"""NATS sink: JetStream publishing with acks (nats-py).

Every delivery is published to the subject ``<subject_prefix>.productKey.deviceId.kind`` with the header
``Nats-Msg-Id: <message id>``: within the stream's duplicate window (2 minutes by default) JetStream stores a
retried delivery once, so a batch offered again after a lost ack does not duplicate what was stored.
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

Pipelining: ``publish`` sends each delivery of the batch in order with ``publish_async`` (which returns
once the message is buffered, not acked) and only then waits for all the acks together. The batch
succeeds when every ack arrived and none was an error. A JetStream error, a lost connection (noticed at
once through the client's disconnect callback) or the timeout fails it with SinkError; the connection is
then closed, and the next ``open``/``publish`` connects afresh (the client's own background reconnect is
off: reconnecting is this sink's business, at the forwarder's pace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from thingport.bus.base import (
    ConnectedSink,
    Delivery,
    SinkConfigError,
    SinkError,
    option_error,
    text_option,
    timeout_option,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_STREAM = "THINGPORT"
DEFAULT_SUBJECT_PREFIX = "thingport"
DEFAULT_MAX_IN_FLIGHT = 1000
_OPTIONS = ("url", "stream", "subject_prefix", "max_in_flight", "timeout")
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,255}$")
_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
_CLOSE_GRACE = 1.0


def _fail(option: str, message: str) -> SinkConfigError:
    return option_error("nats", option, message)


def redact(url: str) -> str:
    """The URL(s) without passwords or tokens, for messages."""
    shown = []
    for one in url.split(","):
        try:
            parts = urlsplit(one.strip())
            if "@" in parts.netloc:
                parts = parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1])
            shown.append(urlunsplit(parts))
        except ValueError:
            shown.append("<unparsable url>")
    return ",".join(shown)


class NatsSink(ConnectedSink):
    kind = "nats"

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        for name in self.options:
            if name not in _OPTIONS:
                raise _fail(name, f"is unknown (known options: {', '.join(_OPTIONS)})")
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
            reconnect_time_wait=0.1,
            connect_timeout=self.timeout,
            error_cb=on_error,
            disconnected_cb=on_gone,
            closed_cb=on_gone,
        )
        # publish() keeps at most max_in_flight outstanding itself, so nats-py's own limit (whose wait turns
        # a cancellation into TooManyStalledMsgsError) is never reached
        js = nc.jetstream(timeout=self.timeout, publish_async_max_pending=2 * self.max_in_flight)
        try:
            await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(name=self.stream, subjects=[f"{self.subject_prefix}.>"])
            except nats.js.errors.BadRequestError as exc:
                # created meanwhile by someone else: fine; anything else (overlapping subjects...) is an error
                if "already in use" not in str(exc) and "exists" not in str(exc):
                    raise
        self._js = js

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
            acks: list[asyncio.Future[Any]] = []
            try:
                async with asyncio.timeout(self.timeout):
                    await self._connect()
                    js, lost = self._js, self._lost
                    assert js is not None and lost is not None
                    prefix, window = self.subject_prefix, self.max_in_flight
                    for i, d in enumerate(batch):
                        if i >= window:  # sliding window: the ack from `window` messages back must be in
                            await self._settle(acks[i - window], lost, len(batch))
                        # returns once the message is buffered for sending, not acked
                        acks.append(
                            await js.publish_async(
                                d.route(".", prefix),
                                d.body,
                                headers={"Nats-Msg-Id": str(d.message_id)},
                                stream=self.stream,
                            )
                        )
                    everything = asyncio.gather(*acks, return_exceptions=True)
                    await asyncio.wait((everything, lost), return_when=asyncio.FIRST_COMPLETED)
                    if not everything.done():
                        everything.cancel()
                        everything.add_done_callback(_retrieve)
                        raise self._error(f"connection lost before the batch of {len(batch)} was acked")
                    results = everything.result()
            except SinkError:
                self._abandon(acks)
                raise
            except TimeoutError as exc:
                self._abandon(acks)
                raise self._error(f"no ack for the batch of {len(batch)} within {self.timeout:g} s", exc) from exc
            except Exception as exc:
                self._abandon(acks)
                raise self._error("publish failed", exc) from exc
            except BaseException:
                self._abandon(acks)
                raise
            failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
            if failed:
                first, exc = failed[0]
                self._abandon(acks)
                raise self._error(
                    f"{len(failed)} of {len(batch)} deliveries not acked (first: seq {batch[first].seq})", exc
                ) from exc

    async def _settle(self, ack: asyncio.Future[Any], lost: asyncio.Future[None], size: int) -> None:
        """Wait for one ack (or the connection's end); a failed ack fails the batch at once."""
        if not ack.done():
            await asyncio.wait((ack, lost), return_when=asyncio.FIRST_COMPLETED)
        if not ack.done():
            raise self._error(f"connection lost before the batch of {size} was acked")
        if ack.exception() is not None:
            raise self._error(f"a delivery of the batch of {size} was not acked", ack.exception())

    def _abandon(self, acks: list[asyncio.Future[Any]]) -> None:
        for ack in acks:
            if not ack.done():
                ack.cancel()
            elif not ack.cancelled():
                ack.exception()  # retrieved: no "exception was never retrieved" noise
        self._drop()

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


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen (no "exception was never retrieved" at exit)."""
    if not future.cancelled():
        future.exception()


async def _close_quietly(nc: NatsClient) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(nc.close(), _CLOSE_GRACE)
