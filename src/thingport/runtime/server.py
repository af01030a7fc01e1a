"""Runs the device endpoint (TLS) and the management API on uvicorn (httptools + uvloop), in one process."""

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
import uvloop

from thingport import logs
from thingport.api.app import create_api
from thingport.core.errors import ThingportError
from thingport.runtime.bootstrap import Overrides, build
from thingport.runtime.bounded_http import HttpLimits, bounded_protocol
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
    return bounded_protocol(HttpLimits(settings.header_timeout_s, settings.body_timeout_s, settings.max_header_bytes))


def _log_level(name: str) -> int:
    """The level for ``--log-level``/``THINGPORT_LOG_LEVEL``: uvicorn's names, ``trace`` included (the stdlib
    knows no TRACE level until uvicorn registers it, which it does only after logging is configured)."""
    level = uvicorn.config.LOG_LEVELS.get(name.lower())
    if level is None:
        raise ServeOptionError(f"log level must be one of {', '.join(uvicorn.config.LOG_LEVELS)}, not {name!r}")
    logging.addLevelName(level, name.upper())
    return level


def build_config(settings: Settings, app: Callable[..., Any], files: CertificateFiles) -> uvicorn.Config:
    offloaded = settings.tls_offload  # a TLS proxy in front speaks HTTPS to devices, plain HTTP to us
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=None if offloaded else str(files.cert),
        ssl_keyfile=None if offloaded else str(files.key),
        # the device's address (per-source auth limits) from X-Forwarded-For, only when a trusted proxy sent it
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        http=_protocol(settings),
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_config=None,  # uvicorn's records go to the root handler and its filter (logs.py)
        server_header=False,
        log_level=_log_level(settings.log_level),
        timeout_keep_alive=settings.keep_alive_s,
        # idle TLS peers that never answer close_notify would otherwise hold shutdown for 30 s
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    config.load()
    if not offloaded:
        assert config.ssl is not None
        add_ecdsa(config.ssl, files)
        apply_profile(config.ssl, settings.tls_profile)
    return config


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
    try:
        api = create_api(app.management(), app.metrics, app.readiness.check, settings.api_max_body_bytes,
                         settings.api_import_max_body_bytes)
        device = _Listener(build_config(settings, app.device_app, files))
        management = _Listener(api_config(settings, api))
        listeners = [device, management] if not worker_index else [device]
        sockets = {device: [shared_socket(settings.host, settings.port)]} if worker_index is not None else {}
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for listener in listeners:
                listener.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(*(listener.serve(sockets=sockets.get(listener)) for listener in listeners))
    finally:
        await app.stop()


def _echo(line: str) -> None:
    print(line, flush=True)


def serve(settings: Settings, overrides: Overrides | None = None) -> None:
    """Serve until SIGTERM/SIGINT. ``overrides``: see bootstrap.Overrides (the benchmark's diagnostics)."""
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

