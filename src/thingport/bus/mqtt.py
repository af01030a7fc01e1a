"""MQTT sink: QoS 1 publishing to any MQTT 3.1.1 broker (paho-mqtt driven by the asyncio loop).

Every delivery is published at QoS 1, not retained, to the topic ``<topic_prefix>/productKey/deviceId/kind``.
A batch is confirmed when the broker sent a PUBACK for every one of its messages.

Options (all optional):

``host``
    Broker host; default ``127.0.0.1``.
``port``
    Broker port; default 1883 (plain TCP; TLS is not supported yet).
``username``, ``password``
    Credentials for the CONNECT packet; default none (anonymous). ``password`` needs ``username``.
``topic_prefix``
    First topic levels; default ``thingport`` (no wildcards ``+``/``#``, no empty level).
``client_id``
    MQTT client id; default ``thingport-<12 random hex digits>``, generated once per sink: a reconnect
    uses the same id, so the broker drops the sink's previous (possibly half-open) connection. Two sinks
    must not share one (each would disconnect the other).
``max_in_flight``
    Most QoS 1 messages sent and awaiting their PUBACK at once; default 1000. A larger batch streams through
    this window, in order. Some brokers cap it lower (AWS IoT: 100); the broker's cap wins.
``timeout``
    Seconds, default 10: the bound on one ``open`` or one ``publish`` (connecting included).

Pipelining: ``publish`` hands the batch's messages to paho in order (paho numbers and sends each at once),
keeping at most ``max_in_flight`` unacknowledged: past the window, message i waits for the PUBACK of message
i - window. Then it waits for the PUBACKs of the rest together. The window is kept here, not by paho: paho's
own limit rescans every outstanding message on each PUBACK, which made a batch of n cost O(n^2).
A lost connection fails every outstanding message at once (paho's disconnect callback), and the batch
fails with SinkError; so do a refused publish and the timeout. The session is clean (no broker-side queue
of our unacked messages survives a reconnect): the forwarder offers the whole batch again, so a subscriber
can see duplicates (at least once), and the next ``open``/``publish`` connects afresh with a new paho client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from thingport.extras import missing_extra

try:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
except ImportError as exc:  # an optional backend
    raise missing_extra("mqtt", exc) from None

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

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883
DEFAULT_TOPIC_PREFIX = "thingport"
DEFAULT_MAX_IN_FLIGHT = 1000
KEEPALIVE = 30  # seconds between PINGREQs on an idle connection
_CLOSE_GRACE = 1.0


def _fail(option: str, message: str) -> SinkConfigError:
    return option_error("mqtt", option, message)


class _Lost(Exception):
    """The MQTT connection ended."""


class _Connection:
    """One paho client, one TCP connection, driven by the running asyncio loop (add_reader / add_writer).

    paho's connect() blocks on the TCP handshake, so it runs in an executor thread; every other paho call
    happens on the loop thread.
    """

    def __init__(self, sink: MqttSink) -> None:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=sink.client_id,
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        if sink.username is not None:
            client.username_pw_set(sink.username, sink.password)
        client.max_inflight_messages_set(0)  # unlimited: the sink keeps the window (see publish)
        client.max_queued_messages_set(0)  # no limit on paho's queue behind the in-flight window
        client.connect_timeout = sink.timeout
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        self.client = client
        self.connected: asyncio.Future[None] = self.loop.create_future()
        self.lost: asyncio.Future[None] = self.loop.create_future()  # exception set: why it ended
        self.pending: dict[int, asyncio.Future[None]] = {}
        self._sock: socket.socket | None = None
        self._misc: asyncio.Task[None] | None = None
        self._aborted = False

    # paho callbacks (loop thread, except the socket ones during connect(): executor thread)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self.connected.done():
            return
        if reason == 0:
            self.connected.set_result(None)
        else:
            self.connected.set_exception(_Lost(f"broker refused the connection: {reason}"))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._lose(_Lost(f"disconnected ({reason})"))

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        fut = self.pending.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _threadsafe(self, fn: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._threadsafe(self._attach, sock)

    def _attach(self, sock: socket.socket) -> None:
        if self._aborted:  # connect() finished in its thread after we gave up on it
            with contextlib.suppress(OSError):
                sock.close()
            return
        self._sock = sock
        self.loop.add_reader(sock, self._readable)
        self._misc = self.loop.create_task(self._misc_loop())

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._threadsafe(self._detach, sock)

    def _detach(self, sock: socket.socket) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(sock)
            self.loop.remove_writer(sock)
        if self._misc is not None:
            self._misc.cancel()
        self._lose(_Lost("connection closed"))

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._threadsafe(self._want_write, sock)

    def _want_write(self, sock: socket.socket) -> None:
        if not self._aborted and sock.fileno() >= 0:
            self.loop.add_writer(sock, self._writable)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._threadsafe(self._no_write, sock)

    def _no_write(self, sock: socket.socket) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_writer(sock)

    def _readable(self) -> None:
        try:
            rc = self.client.loop_read()
        except Exception as exc:  # noqa: BLE001 - a broken socket surfaces here, as any exception
            rc = None
            self._lose(_Lost(f"read failed: {exc!r}"))
            self.abort()
        if rc not in (None, paho.MQTT_ERR_SUCCESS) and not self.lost.done():
            self._lose(_Lost(f"read failed: {paho.error_string(rc)}"))
            self.abort()

    def _writable(self) -> None:
        try:
            rc = self.client.loop_write()
        except Exception as exc:  # noqa: BLE001 - as in _readable
            rc = None
            self._lose(_Lost(f"write failed: {exc!r}"))
            self.abort()
        if rc not in (None, paho.MQTT_ERR_SUCCESS) and not self.lost.done():
            self._lose(_Lost(f"write failed: {paho.error_string(rc)}"))
            self.abort()

    async def _misc_loop(self) -> None:
        # keepalive pings, and paho's own check that the broker answers them
        while self.client.loop_misc() == paho.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1)
        self._lose(_Lost("keepalive failed"))

    def _lose(self, exc: _Lost) -> None:
        """The connection is over: fail everything waiting on it."""
        if not self.lost.done():
            self.lost.set_exception(exc)
            self.lost.exception()  # mark retrieved
        if not self.connected.done():
            self.connected.set_exception(exc)
            self.connected.exception()
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: a batch that failed half-way never awaits the rest

    # used by the sink

    async def connect(self, host: str, port: int) -> None:
        attempt = self.loop.run_in_executor(None, self.client.connect, host, port, KEEPALIVE)
        try:
            rc = await attempt
            if rc != paho.MQTT_ERR_SUCCESS:
                raise _Lost(f"connect failed: {paho.error_string(rc)}")
            await asyncio.shield(self.connected)  # the CONNACK
        except BaseException:
            self.abort()
            raise

    def publish(self, topic: str, body: bytes) -> asyncio.Future[None]:
        if self.lost.done():
            raise self.lost.exception() or _Lost("connection closed")
        info = self.client.publish(topic, body, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise _Lost(f"publish refused: {paho.error_string(info.rc)}")
        fut = self.loop.create_future()
        if info.is_published():
            fut.set_result(None)
        else:
            self.pending[info.mid] = fut
        return fut

    def abort(self) -> None:
        """Drop the connection now, without a DISCONNECT packet."""
        self._aborted = True
        self._lose(_Lost("connection aborted"))
        if self._misc is not None:
            self._misc.cancel()
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock)
                self.loop.remove_writer(sock)
            with contextlib.suppress(OSError):
                sock.close()

    async def disconnect(self) -> None:
        """Send DISCONNECT (bounded wait), then make sure the socket is closed."""
        if not self.lost.done() and self._sock is not None:
            with contextlib.suppress(Exception):
                self.client.disconnect()
                await asyncio.wait({self.lost}, timeout=_CLOSE_GRACE)
        self.abort()


@dataclass(frozen=True)
class MqttOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = secret(None)
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    client_id: str | None = None  # default: thingport-<12 random hex digits>, once per sink
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    timeout: float = DEFAULT_TIMEOUT


class MqttSink(ConnectedSink):
    kind = "mqtt"
    options_type = MqttOptions

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        host = self.options.get("host", DEFAULT_HOST)
        if not isinstance(host, str) or not host or any(c.isspace() for c in host) or "/" in host:
            raise _fail("host", f"must be a host name or address, got {host!r}")
        port = self.options.get("port", DEFAULT_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _fail("port", f"must be an integer from 1 to 65535, got {port!r}")
        username = text_option(self.options.get("username"))
        if username is not None and (not isinstance(username, str) or not username):
            raise _fail("username", f"must be a non-empty string, got {username!r}")
        password = text_option(self.options.get("password"))
        if password is not None and not isinstance(password, str):
            raise _fail("password", "must be a string")
        if password is not None and username is None:
            raise _fail("password", "needs 'username' too")
        prefix = text_option(self.options.get("topic_prefix", DEFAULT_TOPIC_PREFIX))
        if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "+#\0") or "" in prefix.split("/"):
            raise _fail("topic_prefix", f"must be topic levels without '+', '#' or empty levels, got {prefix!r}")
        client_id = text_option(self.options.get("client_id"))
        if client_id is None:
            client_id = f"thingport-{secrets.token_hex(6)}"
        elif not isinstance(client_id, str) or not client_id or len(client_id.encode()) > 65535:
            raise _fail("client_id", f"must be a non-empty string, got {client_id!r}")
        window = self.options.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT)
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 65535:
            raise _fail("max_in_flight", f"must be an integer from 1 to 65535, got {window!r}")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.topic_prefix = prefix
        self.client_id = client_id
        self.max_in_flight = window
        self.timeout = timeout_option("mqtt", self.options)
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    def _error(self, what: str, exc: BaseException | None = None) -> SinkError:
        where = f"mqtt {self.host}:{self.port} ({self.client_id}): {what}"
        if exc is None:
            return SinkError(where)
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SinkError(f"{where}: {detail}")

    async def _connect(self) -> None:
        await self._connection()

    async def _connection(self) -> _Connection:
        """The live connection, made first when there is none (or the last one was lost)."""
        conn = self._conn
        if conn is not None and not conn.lost.done():
            return conn
        self._drop()
        conn = _Connection(self)
        self._conn = conn
        await conn.connect(self.host, self.port)
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.lost.done():
                conn.abort()
            else:
                task = asyncio.get_running_loop().create_task(conn.disconnect())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def publish(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    conn = await self._connection()
                    prefix, window = self.topic_prefix, self.max_in_flight
                    acks: list[asyncio.Future[None]] = []
                    for i, d in enumerate(batch):
                        if i >= window:  # (window <= 65535 also keeps the 16-bit packet ids unique)
                            await acks[i - window]
                        acks.append(conn.publish(d.route("/", prefix), d.body))
                    results = await asyncio.gather(*acks, return_exceptions=True)
                    failed = [r for r in results if isinstance(r, BaseException)]
                    if failed:
                        raise self._error(
                            f"{len(failed)} of {len(batch)} deliveries not acknowledged", failed[0]
                        ) from failed[0]
            except SinkError:
                self._drop()
                raise
            except TimeoutError as exc:
                self._drop()
                raise self._error(f"no PUBACK for the batch of {len(batch)} within {self.timeout:g} s", exc) from exc
            except Exception as exc:
                self._drop()
                raise self._error("publish failed", exc) from exc
            except BaseException:
                self._drop()
                raise

    async def close(self) -> None:
        try:
            async with self._lock:
                self._drop()
                if self._closing:
                    await asyncio.wait(set(self._closing), timeout=_CLOSE_GRACE + 0.5)
        except BaseException as exc:  # close never raises; a cancellation still propagates
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.debug("mqtt sink close: %r", exc)
