"""A TCP proxy the tests control: put it between a sink and its broker, then cut or stall the link.

It runs its own asyncio loop in a daemon thread (so it keeps working whatever the test's loop is doing) on
plain non-blocking sockets that it owns from accept() to close(), so a cut can never miss one.

- ``cut()``: reset every proxied connection (both sides) and stop listening: new connections are refused.
- ``stall()``: keep connections open but forward nothing, and accept new ones that go nowhere: a hung broker.
- ``restore()``: listen again on the same port and forward again (stalled bytes flow on).
- ``trickle(True)``: pass what the server sends on in pieces of 1-7 bytes, a moment apart, so the client
  reads frames cut at every possible place.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

T = TypeVar("T")


class _Link:
    """One proxied connection: the client's socket, the upstream one, the two pumps between them."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        """Reset both sockets (their pumps must be finished: no socket operation may be pending on them)."""
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    # linger 0: close with a reset, as a dropped link looks to both ends
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(OSError):
                    sock.close()


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port  # the real port once started
        self.accepted = 0  # connections accepted since start
        self.held = 0  # bytes from clients that a stall kept from the target (a test waits for a batch sent)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._listener: socket.socket | None = None
        self._flowing: asyncio.Event | None = None
        self._trickle = False
        self._links: set[_Link] = set()

    # -- control (from any thread but the proxy's) ---------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        self._call(self._start())
        return self

    def cut(self) -> None:
        """Close all connections and refuse new ones."""
        self._call(self._cut())

    def stall(self) -> None:
        """Stop forwarding bytes, on open connections and new ones alike (they are accepted)."""
        self._call(self._set_flowing(False))

    def restore(self) -> None:
        """Listen again (same port) and forward again."""
        self._call(self._restore())

    def trickle(self, on: bool) -> None:
        """Forward the server's bytes in tiny pieces (or normally again)."""
        self._trickle = on

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        return self._call(self._count())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(5)

    # -- inside the proxy's loop ---------------------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._listen()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # SO_REUSEADDR: the port can be taken again at once after cut(), TIME_WAIT or not
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener, self._on_acceptable, listener)

    def _on_acceptable(self, listener: socket.socket) -> None:
        # accept() right here, synchronously: an accepted socket is a link before anything else can run
        for _ in range(128):
            try:
                client, _ = listener.accept()
            except OSError:  # BlockingIOError: nothing more to accept now
                return
            self.accepted += 1
            client.setblocking(False)
            link = _Link(client)
            self._links.add(link)
            self._spawn(link, self._connect(link))

    async def _count(self) -> int:
        return len(self._links)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _restore(self) -> None:
        await self._set_flowing(True)
        if self._listener is None:
            for attempt in range(50):
                try:
                    self._listen()
                    return
                except OSError:
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.1)

    async def _cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener)
        tasks: set[asyncio.Task[None]] = set()
        links, self._links = self._links, set()
        for link in links:
            tasks |= link.tasks
            for task in link.tasks:
                task.cancel()
        if tasks:  # let the cancelled socket operations unregister before their sockets close
            await asyncio.wait(tasks, timeout=2)
        for link in links:
            link.close()
        if listener is not None:
            listener.close()  # from here on, connecting is refused

    def _spawn(self, link: _Link, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)

    async def _drop(self, link: _Link) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        others = {task for task in link.tasks if task is not asyncio.current_task()}
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=2)
        link.close()

    async def _connect(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        link.upstream = upstream
        try:
            await loop.sock_connect(upstream, self.target)
        except OSError:
            await self._drop(link)
            return
        for sock in (link.client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._spawn(link, self._pump(link, link.client, upstream))
        self._spawn(link, self._pump(link, upstream, link.client))

    async def _pump(self, link: _Link, src: socket.socket, dst: socket.socket) -> None:
        assert self._flowing is not None
        loop = asyncio.get_running_loop()
        try:
            while data := await loop.sock_recv(src, 65536):
                if not self._flowing.is_set() and src is link.client:
                    self.held += len(data)
                await self._flowing.wait()
                if self._trickle and src is link.upstream:
                    start, size = 0, 1
                    while start < len(data):
                        await loop.sock_sendall(dst, data[start : start + size])
                        await asyncio.sleep(0.0005)
                        start, size = start + size, size % 7 + 1
                else:
                    await loop.sock_sendall(dst, data)
        except OSError:
            pass
        # one side ended: end the whole link (a proxy that half-closes would confuse the tests)
        await self._drop(link)
