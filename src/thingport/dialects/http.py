"""The little HTTP the dialects see: a parsed request with a size-capped body, and a reply to write.

The device endpoint is the hot path, so it runs on a protocol of its own (``runtime/device_protocol.py``)
rather than on ASGI: a dialect is called with a ``DeviceRequest`` and returns a ``Reply``, which the protocol
writes whole, with Content-Length and header names in canonical case (constrained device SDKs search for
``Content-Length: `` and cannot read chunked replies).
"""

from typing import Protocol

from thingport.core.errors import BodyTooLarge

Reply = tuple[int, bytes]
"""(HTTP status, JSON body) of a dialect's answer; the protocol adds Content-Type, Content-Length and Date."""


class ClientDisconnected(Exception):
    """The client went away before sending its whole body: there is no request to answer or store."""


class DeviceRequest(Protocol):
    """One request as the endpoint parsed it. ``headers``: by lower-case name, the last one wins; ``path``:
    percent-decoded, ``raw_path`` as sent (both keep a ``#fragment``, which a request target may not have,
    so the dialects refuse it with the other characters a topic may not have); ``client``: the device's
    address (from X-Forwarded-For when a trusted proxy sent it)."""

    method: bytes
    path: str
    raw_path: bytes
    query: bytes
    headers: dict[bytes, bytes]
    client: str

    async def body(self, limit: int) -> bytes:
        """The whole body; BodyTooLarge when it passes ``limit`` bytes (at once when Content-Length says
        so), ClientDisconnected when the connection ends first (a truncated body is never taken for a
        whole one)."""
        ...


def media_type(headers: dict[bytes, bytes]) -> bytes:
    """The Content-Type without parameters, lower-cased (b"" when absent)."""
    value = headers.get(b"content-type", b"")
    return value.split(b";", 1)[0].strip().lower()


def too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"body is larger than {limit} bytes")
