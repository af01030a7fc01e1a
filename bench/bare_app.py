"""Baseline for the benchmark: a raw ASGI app answering what a successful /topic answers, on the same stack.

It reuses ``thingport.runtime.server.build_config`` (so TLS profile, httptools, uvloop and access-log settings are
the server's own) and the same certificate, so that the only difference from the real server is the work
thingport does per request. Run: ``python bench/bare_app.py --port P --data-dir D``.
"""

import argparse
from pathlib import Path
from typing import Any

import uvicorn

from thingport.runtime.server import build_config, certificate_for
from thingport.settings import load_settings

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True, help="where the certificate is (or is created)")
    args = parser.parse_args()
    settings = load_settings(host=args.host, port=args.port, data_dir=args.data_dir)
    config = build_config(settings, BareApp(), certificate_for(settings))  # type: ignore[arg-type]
    print(f"bare_app: https://{args.host}:{args.port}", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
