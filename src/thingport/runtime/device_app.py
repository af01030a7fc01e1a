"""The device endpoint's ASGI app: routes each request to its dialect; its lifespan starts and stops the
process (runtime/bootstrap.py's App)."""

import logging

from thingport.dialects.dialect import DialectTable
from thingport.dialects.http import Receive, Scope, Send, send_json
from thingport.runtime.coordination import Startable

log = logging.getLogger(__name__)

_NOT_FOUND = b'{"code":10001,"message":"param error: no such endpoint"}'


class DeviceApp:
    """Raw ASGI. Dialects are chosen by path (dialects/table.py), the cheapest dispatch there is."""

    def __init__(self, dialects: DialectTable, process: Startable) -> None:
        """``process``: started by the server's lifespan (at once if it was started already), stopped with it."""
        self._dialects = dialects
        self._process = process

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            dialect = self._dialects.find(scope["path"])
            if dialect is not None:
                await dialect(scope, receive, send)
            else:
                await send_json(send, _NOT_FOUND, status=404)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._process.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._process.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
