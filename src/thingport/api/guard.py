"""The management API's front door, in front of FastAPI: the key is checked before any body is read, and
bodies are capped.

FastAPI resolves a route's dependencies (the key check among them) only after it has read and parsed the
whole body, so without this an unauthenticated client could make the process hold any number of bodies of
any size. Here a request to a keyed path without a known key is answered 401 from its head alone; a body
announced larger than the cap (``Content-Length``) is answered 413 from its head too, and a chunked one is
counted as it streams and answered 413 the moment it passes the cap. Nothing of a refused body is kept:
uvicorn drops what the client still sends once the response is complete.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from thingport.core.model import ApiKey

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "thingport.api_key"  # where the checked key is left for the routes' own role checks
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/openapi.json", "/docs", "/console"})
OPEN_PREFIXES = ("/docs-assets/", "/console/")  # hold no data: static files


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def is_import(path: str) -> bool:
    """A bulk device import: its body may be larger (a device file), for admin keys."""
    return path.startswith("/api/products/") and path.endswith("/devices/import")


class ApiGuard:
    """Pure ASGI middleware: 401 before the body for keyed paths, 413 past ``max_body_bytes`` (past
    ``import_max_body_bytes`` for an admin key's device import)."""

    def __init__(self, app: Asgi, lookup: Callable[[str], Awaitable[ApiKey | None]], max_body_bytes: int,
                 import_max_body_bytes: int | None = None) -> None:
        self.app = app
        self._lookup = lookup
        self._max = max_body_bytes
        self._import_max = max(import_max_body_bytes or max_body_bytes, max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])  # the last of a repeated header wins; these are never repeated
        cap = self._max
        if not is_open(scope["path"]):
            key = await self._key(headers.get(b"authorization"))
            if key is None:
                message = ("unknown API key" if headers.get(b"authorization", b"").lower().startswith(b"bearer ")
                           else "an API key is required: Authorization: Bearer <key>")
                await _refuse(send, 401, "unauthorized", message)
                return
            scope[SCOPE_KEY] = key
            if key.role == "admin" and is_import(scope["path"]):
                cap = self._import_max
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > cap:
                await self._too_large(send, cap)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        body = await self._read_capped(receive, cap)
        if body is None:
            await self._too_large(send, cap)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _key(self, authorization: bytes | None) -> ApiKey | None:
        if authorization is None:
            return None
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        return await self._lookup(credentials.strip())

    async def _read_capped(self, receive: Receive, cap: int) -> bytes | None:
        """A chunked body, read whole while it stays within the cap (what FastAPI would read anyway)."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(parts)  # the client went away: the app sees an empty or partial body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _too_large(self, send: Send, cap: int) -> None:
        await _refuse(send, 413, "too_large", f"the request body is larger than {cap} bytes")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    """The API's error shape, sent from the head alone."""
    body = msgspec.json.encode({"error": {"code": code, "message": message, "field": None}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
