"""Runs the device endpoint on uvicorn (httptools + uvloop) with TLS."""

import logging

import click
import uvicorn

from thingport.app import DeviceApp
from thingport.settings import Settings
from thingport.tls import CertificateFiles, apply_profile, ensure_self_signed


def certificate_for(settings: Settings) -> CertificateFiles:
    if settings.tls_cert and settings.tls_key:
        return CertificateFiles(settings.tls_cert, settings.tls_key, created=False)
    if settings.tls_cert or settings.tls_key:
        raise click.UsageError("--tls-cert and --tls-key go together")
    return ensure_self_signed(settings.data_dir)


def build_config(settings: Settings, app: DeviceApp, files: CertificateFiles) -> uvicorn.Config:
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


def serve(settings: Settings) -> None:
    files = certificate_for(settings)
    state = "created" if files.created else "using"
    click.echo(f"thingport: {state} TLS certificate {files.cert}")
    click.echo(f"thingport: certificate SHA-256 fingerprint {files.fingerprint()}")
    click.echo(f"thingport: data in {settings.data_dir.resolve()}")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = build_config(settings, DeviceApp(settings), files)
    click.echo(f"thingport: device endpoint https://{settings.host}:{settings.port} (TLS profile {settings.tls_profile})")
    uvicorn.Server(config).run()
