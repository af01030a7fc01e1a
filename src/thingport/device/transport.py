"""The two transports that drive the protocol's flows: one over ``httpx.Client``, one over
``httpx.AsyncClient``. They only send requests, sleep and turn network failures into
:class:`TransportError`; every decision is the flow's (``protocol.py``).

Connections are kept alive (one TLS handshake for many reports) and TLS is always verified: against
the system's trust store by default, or only against ``ca_file`` (e.g. thingport's self-signed
``tls-cert.pem``).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from typing import Any, Self, TypeVar

import httpx

from thingport import __version__
from thingport.device.errors import TransportError
from thingport.device.protocol import AuthLock, Flow, Request, Response, Sleep

T = TypeVar("T")

USER_AGENT = f"thingport-device/{__version__}"


def tls_context(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """Verification against the system trust store, or only against ``ca_file`` when given."""
    return ssl.create_default_context(cafile=os.fspath(ca_file) if ca_file is not None else None)


def _client_options(endpoint: str, ca_file: str | os.PathLike[str] | None, timeout: float) -> dict[str, Any]:
    return {"base_url": endpoint, "verify": tls_context(ca_file), "timeout": timeout,
            "headers": {"User-Agent": USER_AGENT}, "follow_redirects": False}


def _response(reply: httpx.Response) -> Response:
    return Response(reply.status_code, reply.content)


class SyncTransport:
    """Drives flows with blocking I/O on one keep-alive ``httpx.Client``."""

    def __init__(self, endpoint: str, *, ca_file: str | os.PathLike[str] | None = None, timeout: float = 10) -> None:
        self._client = httpx.Client(**_client_options(endpoint, ca_file, timeout))
        self._auth_lock = threading.Lock()

    def send(self, request: Request) -> Response:
        try:
            reply = self._client.request(request.method, request.path, headers=request.headers, content=request.body)
        except httpx.TransportError as exc:
            raise TransportError.from_exception(exc) from exc
        return _response(reply)

    def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its result, feeding it replies and transport errors."""
        reply: Response | None = None
        error: TransportError | None = None
        locked = False
        try:
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(reply)
                except StopIteration as done:
                    result: T = done.value
                    return result
                reply = error = None
                if step is AuthLock.ACQUIRE:
                    self._auth_lock.acquire()
                    locked = True
                elif step is AuthLock.RELEASE:
                    self._auth_lock.release()
                    locked = False
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                else:
                    try:
                        reply = self.send(step)
                    except TransportError as exc:
                        error = exc
        finally:
            if locked:
                self._auth_lock.release()
            flow.close()

    def close(self) -> None:
        self._client.close()


class AsyncTransport:
    """Drives flows with asyncio on one keep-alive ``httpx.AsyncClient``."""

    def __init__(self, endpoint: str, *, ca_file: str | os.PathLike[str] | None = None, timeout: float = 10) -> None:
        self._client = httpx.AsyncClient(**_client_options(endpoint, ca_file, timeout))
        self._auth_lock = asyncio.Lock()

    async def send(self, request: Request) -> Response:
        try:
            reply = await self._client.request(request.method, request.path, headers=request.headers,
                                               content=request.body)
        except httpx.TransportError as exc:
            raise TransportError.from_exception(exc) from exc
        return _response(reply)

    async def run(self, flow: Flow[T]) -> T:
        """Run ``flow`` to its result, feeding it replies and transport errors."""
        reply: Response | None = None
        error: TransportError | None = None
        locked = False
        try:
            while True:
                try:
                    step = flow.throw(error) if error is not None else flow.send(reply)
                except StopIteration as done:
                    result: T = done.value
                    return result
                reply = error = None
                if step is AuthLock.ACQUIRE:
                    await self._auth_lock.acquire()
                    locked = True
                elif step is AuthLock.RELEASE:
                    self._auth_lock.release()
                    locked = False
                elif isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                else:
                    try:
                        reply = await self.send(step)
                    except TransportError as exc:
                        error = exc
        finally:
            if locked:
                self._auth_lock.release()
            flow.close()

    async def close(self) -> None:
        await self._client.aclose()


TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)  # the flavour a device class is built on


class SyncClient:
    """What every blocking device class shares: its transport, ``close`` and ``with``."""

    _transport_class = SyncTransport
    _transport: SyncTransport

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """What every asyncio device class shares: its transport, ``close`` and ``async with``."""

    _transport_class = AsyncTransport
    _transport: AsyncTransport

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
