"""The device endpoint's listener: ``device_protocol`` on a TLS (or, behind a TLS proxy, plain) socket."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from thingport.dialects.dialect import DialectTable
from thingport.runtime.bounded_http import HttpLimits
from thingport.runtime.device_protocol import Endpoint, TrustedProxies, close_all
from thingport.runtime.tls import CertificateFiles, add_ecdsa, apply_profile
from thingport.settings import Settings

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's: a burst of devices reconnecting waits in the kernel, not refused


def tls_context(settings: Settings, files: CertificateFiles) -> ssl.SSLContext:
    """The server's TLS: the RSA pair, the ECDSA one beside it when served, and the settings' profile."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    add_ecdsa(context, files)
    apply_profile(context, settings.tls_profile)
    return context


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(settings.header_timeout_s, settings.body_timeout_s, settings.max_header_bytes)


def endpoint_for(settings: Settings, dialects: DialectTable) -> Endpoint:
    largest_body = max(settings.aliyun_max_body_bytes, settings.huawei_max_body_bytes, settings.auth_max_body_bytes)
    return Endpoint(dialects, http_limits(settings), settings.keep_alive_s, largest_body,
                    TrustedProxies(settings.forwarded_allow_ips))


class DeviceServer:
    """Serves ``endpoint`` on ``settings.host:port`` (or on ``sock``, a worker's share of the port) until
    ``stop``, which lets the requests in flight be answered for up to ``shutdown_grace_s``."""

    def __init__(self, settings: Settings, endpoint: Endpoint, context: ssl.SSLContext | None,
                 sock: socket.socket | None = None) -> None:
        self._settings = settings
        self._endpoint = endpoint
        self._context = context
        self._sock = sock
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self._settings
        if self._sock is not None:
            self._server = await loop.create_server(self._endpoint.protocol, sock=self._sock, ssl=self._context,
                                                    backlog=BACKLOG)
        else:
            self._server = await loop.create_server(self._endpoint.protocol, settings.host, settings.port,
                                                    ssl=self._context, backlog=BACKLOG,
                                                    reuse_address=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        endpoint = self._endpoint
        endpoint.stopping = True
        server.close()
        close_all(endpoint.connections)
        try:
            await asyncio.wait_for(endpoint.idle.wait(), self._settings.shutdown_grace_s)
        except TimeoutError:
            log.warning("stopping with %d device requests unanswered", endpoint.in_flight)
        for connection in list(endpoint.connections):
            if not connection.transport.is_closing():
                connection.transport.abort()
        await asyncio.sleep(0)  # let the closes run before the loop goes
