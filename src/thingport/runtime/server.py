"""Runs the device endpoint (TLS, its own httptools protocol: runtime/device_protocol.py) and the management API
(uvicorn), on uvloop, in one process."""

import asyncio
import contextlib
import dataclasses
import functools
import gc
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
import uvloop

from thingport import logs
from thingport.api.app import create_api
from thingport.core.errors import ThingportError
from thingport.runtime.bootstrap import App, Overrides, build
from thingport.runtime.bounded_http import bounded_protocol
from thingport.runtime.device_server import DeviceServer, endpoint_for, http_limits, tls_context
from thingport.runtime.port_check import check_ports
from thingport.runtime.tls import CertificateFiles, CertificatePair, add_ecdsa, apply_profile, ensure_self_signed
from thingport.settings import Settings
from thingport.urls import redact


class ServeOptionError(ThingportError):
    """Options that cannot serve as given (the CLI shows it as a usage error, exit status 2)."""


def certificate_for(settings: Settings) -> CertificateFiles:
    """The certificates the device endpoint serves: the given pairs, else the data dir's self-signed ones;
    the ECDSA pair only when ``tls_ecdsa`` is on or one is given (devices must trust it, README)."""
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ServeOptionError("--tls-cert and --tls-key go together")
    if bool(settings.tls_ecdsa_cert) != bool(settings.tls_ecdsa_key):
        raise ServeOptionError("--tls-ecdsa-cert and --tls-ecdsa-key go together")
    given_ecdsa = (
        CertificatePair(settings.tls_ecdsa_cert, settings.tls_ecdsa_key)
        if settings.tls_ecdsa_cert and settings.tls_ecdsa_key else None
    )
    if settings.tls_cert and settings.tls_key:
        if settings.tls_ecdsa and not given_ecdsa:
            raise ServeOptionError("tls_ecdsa with --tls-cert needs --tls-ecdsa-cert and --tls-ecdsa-key")
        return CertificateFiles(settings.tls_cert, settings.tls_key, created=False, ecdsa=given_ecdsa)
    files = ensure_self_signed(settings.data_dir)
    served = given_ecdsa or (files.ecdsa if settings.tls_ecdsa else None)
    return dataclasses.replace(files, ecdsa=served)


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signals to ``serve``, which stops every listener of the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _protocol(settings: Settings) -> type[asyncio.Protocol]:
    """httptools with deadlines for the request head and body and a cap on the head (see bounded_http)."""
    return bounded_protocol(http_limits(settings))


def _log_level(name: str) -> int:
    """The level for ``--log-level``/``THINGPORT_LOG_LEVEL``: uvicorn's names, ``trace`` included (the stdlib
    knows no TRACE level until uvicorn registers it, which it does only after logging is configured)."""
    level = uvicorn.config.LOG_LEVELS.get(name.lower())
    if level is None:
        raise ServeOptionError(f"log level must be one of {', '.join(uvicorn.config.LOG_LEVELS)}, not {name!r}")
    logging.addLevelName(level, name.upper())
    return level


def build_config(settings: Settings, app: Callable[..., Any], files: CertificateFiles) -> uvicorn.Config:
    """``app`` on uvicorn with the device endpoint's TLS, limits and timeouts: the benchmark's ASGI baseline
    (bench/bare_app.py), the stack the device endpoint ran on before it had a protocol of its own."""
    offloaded = settings.tls_offload
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=None if offloaded else str(files.cert),
        ssl_keyfile=None if offloaded else str(files.key),
        http=_protocol(settings),
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        log_level=_log_level(settings.log_level),
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    config.load()
    if not offloaded:
        assert config.ssl is not None
        add_ecdsa(config.ssl, files)
        apply_profile(config.ssl, settings.tls_profile)
    return config


def device_server(settings: Settings, app: App, files: CertificateFiles,
                  sock: socket.socket | None = None) -> DeviceServer:
    """The device endpoint of ``app``: TLS with ``files`` unless a proxy in front terminates it."""
    context = None if settings.tls_offload else tls_context(settings, files)
    return DeviceServer(settings, endpoint_for(settings, app.dialects), context, sock)


def api_config(settings: Settings, app: Callable[..., Any]) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, http=_protocol(settings), loop="uvloop", lifespan="off",
        access_log=False, log_config=None, log_level=_log_level(settings.log_level),
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening address several worker processes bind at once (SO_REUSEPORT): the kernel spreads new
    connections over them, each with its own accept queue."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def _serve(settings: Settings, files: CertificateFiles, worker_index: int | None = None,
                 overrides: Overrides | None = None) -> None:
    """One process's listeners. ``worker_index``: this is one of several workers; the device port is
    shared, and worker 0 alone serves the management API (one set of metrics, one console)."""
    app = build(settings, overrides)
    await app.start()
    # what start-up made (modules, the app, the caches' first fill) lives as long as the process: moved out of
    # the cyclic GC's reach before any connection is taken, a full collection walks only what came after
    # (0.1-0.3 s pauses at 100k devices)
    gc.collect()
    gc.freeze()
    try:
        sock = shared_socket(settings.host, settings.port) if worker_index is not None else None
        device = device_server(settings, app, files, sock)
        stopping = asyncio.Event()
        waits: list[Awaitable[Any]] = [stopping.wait()]
        management = None
        if not worker_index:  # the API listens first: once devices are taken, the console and /readyz are up
            api = create_api(app.management(), app.metrics, app.readiness.check, settings.api_max_body_bytes,
                             settings.api_import_max_body_bytes)
            management = _Listener(api_config(settings, api))
            serving = asyncio.ensure_future(management.serve())
            while not management.started and not serving.done():
                await asyncio.sleep(0.01)
            if serving.done():
                serving.result()  # a listener that could not start (uvicorn exits on a bind error)
                return
            waits.append(serving)
        await device.start()
        loop = asyncio.get_running_loop()

        def stop() -> None:
            stopping.set()
            if management is not None:
                management.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            await asyncio.gather(*waits)
        finally:
            await device.stop()
    finally:
        await app.stop()


def _echo(line: str) -> None:
    print(line, flush=True)


def serve(settings: Settings, overrides: Overrides | None = None) -> None:
    """Serve until SIGTERM/SIGINT. ``overrides``: see bootstrap.Overrides (the benchmark's diagnostics)."""
    check_ports(settings)  # a busy port: one error line, before anything below claims to serve
    files = certificate_for(settings)
    state = "created" if files.created else "using"
    _echo(f"thingport: {state} TLS certificate {files.cert}")
    _echo(f"thingport: certificate SHA-256 fingerprint {files.fingerprint()}")
    if files.ecdsa is not None:
        _echo(f"thingport: also serving ECDSA certificate {files.ecdsa.cert} to clients that offer ECDSA, "
              f"SHA-256 fingerprint {files.ecdsa.fingerprint()}")
    if settings.database_url:
        _echo(f"thingport: data in PostgreSQL {redact(settings.database_url)}; master key from "
              f"{'THINGPORT_MASTER_KEY' if os.environ.get('THINGPORT_MASTER_KEY') else settings.data_dir.resolve()}")
    else:
        _echo(f"thingport: data in {settings.data_dir.resolve()}")
    logs.configure(_log_level(settings.log_level), "%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.tls_offload:
        _echo(f"thingport: device endpoint http://{settings.host}:{settings.port} "
              "(TLS terminated by the proxy in front)")
    else:
        _echo(f"thingport: device endpoint https://{settings.host}:{settings.port} "
              f"(TLS profile {settings.tls_profile})")
    _echo(f"thingport: management API and console http://{settings.api_host}:{settings.api_port}/console/")
    if settings.workers > 1:
        from thingport.runtime.workers import supervise

        supervise(settings, files, functools.partial(serve_worker, overrides=overrides))
    else:
        uvloop.run(_serve(settings, files, overrides=overrides))


def serve_worker(settings: Settings, files: CertificateFiles, index: int, overrides: Overrides | None = None) -> None:
    """The body of one worker process (see workers.py)."""
    logs.configure(_log_level(settings.log_level), f"%(asctime)s %(levelname)s w{index} %(name)s: %(message)s")
    uvloop.run(_serve(settings, files, index, overrides))

