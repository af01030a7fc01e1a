"""Baselines for the benchmark: an app answering what a successful /topic answers, with no work behind it.

Two stacks, the same TLS (the server's certificate and profile) and uvloop:
- ASGI on uvicorn (``thingport.runtime.server.build_config``: httptools, the device endpoint's limits), the
  stack the device endpoint ran on until issue 20: the ``bare`` rows;
- ``--raw``: a dialect that does nothing on the device endpoint's own protocol (``runtime/device_protocol``),
  the same listener the server serves devices on: the ``bare-raw`` rows, what the protocol alone costs.
Run: ``python bench/bare_app.py --port P --data-dir D [--raw]``.
"""

import argparse
import asyncio
from pathlib import Path
from typing import Any

import uvicorn

from thingport.dialects.dialect import DialectTable
from thingport.dialects.http import DeviceRequest, Reply
from thingport.runtime.device_server import DeviceServer, endpoint_for, tls_context
from thingport.runtime.server import build_config, certificate_for
from thingport.settings import Settings, load_settings

BODY = b'{"code":0,"message":"success","info":{"messageId":912080266061676544}}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


class BareApp:
    """Reads the whole request body (as the real handler must), then sends the fixed JSON reply."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class BareDialect:
    """Reads the whole body (as the real dialects must), then answers the fixed JSON."""

    def __init__(self, ingest: Any) -> None:
        pass

    async def __call__(self, request: DeviceRequest) -> Reply:
        await request.body(1 << 20)
        return 200, BODY


async def _serve_raw(settings: Settings) -> None:
    dialects = DialectTable(None, {BareDialect: ("/",)})  # type: ignore[arg-type]
    server = DeviceServer(settings, endpoint_for(settings, dialects), tls_context(settings, certificate_for(settings)))
    await server.start()
    await asyncio.Event().wait()  # until killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True, help="where the certificate is (or is created)")
    parser.add_argument("--raw", action="store_true", help="the device endpoint's own protocol instead of ASGI")
    args = parser.parse_args()
    settings = load_settings(host=args.host, port=args.port, data_dir=args.data_dir)
    if args.raw:
        import uvloop

        print(f"bare_app (raw protocol): https://{args.host}:{args.port}", flush=True)
        uvloop.run(_serve_raw(settings))
        return
    config = build_config(settings, BareApp(), certificate_for(settings))  # type: ignore[arg-type]
    print(f"bare_app: https://{args.host}:{args.port}", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
