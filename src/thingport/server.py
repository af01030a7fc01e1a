"""Runs the device endpoint (TLS) and the management API on uvicorn (httptools + uvloop), in one process."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import click
import uvicorn
import uvloop

from thingport.api.app import create_api
from thingport.app import DeviceApp
from thingport.settings import Settings
from thingport.tls import CertificateFiles, apply_profile, ensure_self_signed


def certificate_for(settings: Settings) -> CertificateFiles:
    if settings.tls_cert and settings.tls_key:
        return CertificateFiles(settings.tls_cert, settings.tls_key, created=False)
    if settings.tls_cert or settings.tls_key:
        raise click.UsageError("--tls-cert and --tls-key go together")
    return ensure_self_signed(settings.data_dir)


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signals to ``serve``, which stops every listener of the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_config(settings: Settings, app: object, files: CertificateFiles) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(files.cert),
        ssl_keyfile=str(files.key),
        http="httptools",
        loop="uvloop",
        lifespan="on",
        access_log=False,
        server_header=False,
        log_level=settings.log_level,
        timeout_keep_alive=settings.keep_alive_s,
        # idle TLS peers that never answer close_notify would otherwise hold shutdown for 30 s
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    config.load()
    assert config.ssl is not None
    apply_profile(config.ssl, settings.tls_profile)
    return config


def api_config(settings: Settings, app: object) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, http="httptools", loop="uvloop", lifespan="off",
        access_log=False, log_level=settings.log_level, timeout_graceful_shutdown=settings.shutdown_grace_s,
    )


async def _serve(settings: Settings, files: CertificateFiles) -> None:
    device_app = DeviceApp(settings)
    await device_app.startup()
    try:
        api = create_api(device_app.management(), device_app.gateway.metrics.registry, device_app.readiness)  # type: ignore[union-attr]
        listeners = [_Listener(build_config(settings, device_app, files)), _Listener(api_config(settings, api))]
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for listener in listeners:
                listener.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        await asyncio.gather(*(listener.serve() for listener in listeners))
    finally:
        await device_app.shutdown()


def serve(settings: Settings) -> None:
    files = certificate_for(settings)
    state = "created" if files.created else "using"
    click.echo(f"thingport: {state} TLS certificate {files.cert}")
    click.echo(f"thingport: certificate SHA-256 fingerprint {files.fingerprint()}")
    click.echo(f"thingport: data in {settings.data_dir.resolve()}")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"thingport: device endpoint https://{settings.host}:{settings.port} (TLS profile {settings.tls_profile})")
    click.echo(f"thingport: management API and console http://{settings.api_host}:{settings.api_port}/console/")
    uvloop.run(_serve(settings, files))
