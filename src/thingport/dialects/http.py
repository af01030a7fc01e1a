"""The little HTTP the dialects need on raw ASGI: headers, a size-capped body, exact-length replies.

Raw ASGI rather than a framework: the device path is the hot path, and every framework measured costs
1.3x-4.6x over it. Replies always carry Content-Length (uvicorn would otherwise send HTTP/1.0 clients a
chunked reply, which constrained device SDKs cannot read). Header names are given in lower case, as ASGI
has them; they leave in canonical case (``Content-Length: ``, which those SDKs search for) from
``bounded_http``, where every reply head of the server passes.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from thingport.core.errors import BodyTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def headers_of(scope: Scope) -> dict[bytes, bytes]:
    """Request headers by lower-case name (ASGI servers lower-case them already); the last one wins."""
    return dict(scope["headers"])


def media_type(headers: dict[bytes, bytes]) -> bytes:
    """The Content-Type without parameters, lower-cased (b"" when absent)."""
    value = headers.get(b"content-type", b"")
    return value.split(b";", 1)[0].strip().lower()


def declared_length(headers: dict[bytes, bytes]) -> int | None:
    raw = headers.get(b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


class BodyOverLimit(Exception):
    pass


class ClientDisconnected(Exception):
    """The client went away before sending its whole body: there is no request to answer or store."""


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; BodyOverLimit as soon as it passes ``limit`` bytes, ClientDisconnected when
    the connection ends first (a truncated body must never be taken for a complete one)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    body = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > limit:
            raise BodyOverLimit
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyOverLimit
        parts.append(chunk)
    return b"".join(parts)


async def read_capped(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    """The body, or BodyTooLarge: refused from Content-Length before reading when it is declared."""
    length = declared_length(headers)
    if length is not None and length > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes")
    try:
        return await read_body(receive, limit)
    except BodyOverLimit:
        raise BodyTooLarge(f"body is larger than {limit} bytes") from None


_JSON_HEADERS = [(b"content-type", b"application/json")]


async def send_json(
    send: Send, body: bytes, status: int = 200, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
