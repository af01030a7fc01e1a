"""Webhook sink: one signed HTTPS (or HTTP) POST per batch (httpx).

The request body is ``{"messages":[<envelope>,<envelope>,...]}``, the envelopes in log order, each exactly
the bytes of ``Delivery.body`` (joined, never re-encoded), with the headers

- ``Content-Type: application/json``
- ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` of the Standard Webhooks scheme (standardwebhooks.com),
  so a receiver can verify with that project's libraries and refuse replays: ``webhook-signature`` is
  ``v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">``; ``webhook-timestamp`` the Unix
  seconds of this attempt (a receiver refuses one more than 5 minutes off its clock); ``webhook-id`` is
  derived from the key and the body, so it is the same whenever the same batch is offered again and differs
  for any other (a receiver that has seen an id may drop the request as a duplicate or a replay)
- ``X-Thingport-Signature: sha256=<hex HMAC-SHA256 of the exact body, keyed with the secret's UTF-8>``, as
  before the Standard Webhooks headers came: it carries no time, so it cannot tell a replay
- ``X-Thingport-Delivery: <seq of the batch's first delivery>`` (the same value when a batch is offered again,
  so a receiver can tell a retry; together with each envelope's messageId it can drop duplicates), or
  ``check`` for the empty batch ``{"messages":[]}`` sent when the subscription is created (unless told not to)

Any 2xx reply confirms the whole batch. Any other status (redirects are not followed), a transport error or
the timeout fails it with SinkError; the forwarder offers the same batch again later, with backoff. There
is no retry inside ``publish``: one attempt per call, so a batch's retries are paced by the forwarder only.
The receiver verifies with, in Python::

    standardwebhooks.Webhook(secret).verify(body, request_headers)  # a whsec_ secret; raises if not authentic

or, with the older header (no replay protection)::

    hmac.compare_digest(header, "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest())

Options:

``url`` (required)
    ``http://`` or ``https://`` URL receiving the POSTs. HTTPS certificates are verified (httpx's default CA
    bundle). Credentials in the URL are never shown in errors.
``secret`` (required)
    The subscription's HMAC key. ``whsec_<base64>`` (Standard Webhooks' form, e.g. 32 random bytes): the
    decoded bytes key ``webhook-signature``, which the libraries take as it is (``Webhook(secret)``). Any
    other non-empty string keys it with its UTF-8 bytes (a library takes ``Webhook(secret.encode())``).
    ``X-Thingport-Signature`` is keyed with the string's UTF-8 bytes either way, as it always was.
``timeout``
    Seconds, default 10: the bound on one ``publish`` (connecting, sending, and the reply's status and body).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from thingport.bus.base import (
    DEFAULT_TIMEOUT,
    Delivery,
    Sink,
    SinkConfigError,
    SinkError,
    option_error,
    text_option,
    timeout_option,
)
from thingport.bus.options import secret

log = logging.getLogger(__name__)

_MAX_REPLY = 64 * 1024  # reply body bytes read (kept for error messages); the rest is not read
_CLOSE_GRACE = 1.0


def _fail(option: str, message: str) -> SinkConfigError:
    return option_error("webhook", option, message)


def signature(secret: str | bytes, body: bytes) -> str:
    """The X-Thingport-Signature value for ``body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The Standard Webhooks HMAC key of a ``secret`` option: a ``whsec_<base64>`` secret's decoded bytes,
    any other's UTF-8. Raises ValueError for a ``whsec_`` secret that is not base64 or decodes to nothing."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a whsec_ secret must be whsec_ and base64") from None
    if not key:
        raise ValueError("a whsec_ secret must encode at least one byte")
    return key


def standard_signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (Standard Webhooks v1) for ``body`` sent as ``message_id`` at ``timestamp``."""
    signed = hmac.new(key, b"%s.%d.%s" % (message_id.encode(), timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(signed).decode()


def webhook_id(key: bytes, body: bytes) -> str:
    """A batch's ``webhook-id``: the same for the same batch (its envelopes carry their seq and messageId), so
    a retry is known as one; another batch, or another subscription's key, gives another."""
    return "msg_" + hashlib.sha256(b"thingport-webhook-id\0" + key + b"\0" + body).hexdigest()[:32]


def envelope_batch(batch: Sequence[Delivery]) -> bytes:
    """``{"messages":[...]}`` from the envelopes' own JSON bytes."""
    return b'{"messages":[' + b",".join(d.body for d in batch) + b"]}"


@dataclass(frozen=True)
class WebhookOptions:
    url: str = secret()  # may carry credentials or a token in its query
    secret: str = secret()
    timeout: float = DEFAULT_TIMEOUT


class WebhookSink(Sink):
    kind = "webhook"
    options_type = WebhookOptions

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        if "url" not in self.options:
            raise _fail("url", "is required")
        url = self.options["url"]
        if not isinstance(url, str):
            raise _fail("url", f"must be a string, got {url!r}")
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise _fail("url", f"is not a valid URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise _fail("url", f"must be an http:// or https:// URL with a host, got {_shown(parsed)!r}")
        if "secret" not in self.options:
            raise _fail("secret", "is required (the HMAC key the receiver verifies the signatures with)")
        secret = text_option(self.options["secret"])
        if not isinstance(secret, str) or not secret:
            raise _fail("secret", "must be a non-empty string")
        try:
            self._standard_key = signing_key(secret)
        except ValueError as exc:
            raise _fail("secret", str(exc)) from None
        timeout = timeout_option("webhook", self.options)
        self.url = url
        self.shown_url = _shown(parsed)
        self._key = secret.encode()
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                headers={"User-Agent": "thingport-webhook"},
            )
        return self._client

    async def open(self) -> None:
        # Nothing to hold open: connections are made (and kept alive) by the first POSTs.
        self._http()

    async def publish(self, batch: Sequence[Delivery]) -> None:
        if not batch:
            return
        body = envelope_batch(batch)
        await self._post(body, str(batch[0].seq), webhook_id(self._standard_key, body),
                         f"for the batch of {len(batch)} from seq {batch[0].seq}")

    async def check(self) -> None:
        """An empty batch, signed like any other (``X-Thingport-Delivery: check``, a fresh ``webhook-id``: two
        checks are two requests, not a replay): the receiver must answer
        2xx, which proves the URL, its credentials and the secret as far as the receiver checks them."""
        try:
            await self._post(b'{"messages":[]}', "check", f"msg_check_{secrets.token_hex(12)}",
                             "for the check (an empty batch)")
        finally:
            await self.close()

    async def _post(self, body: bytes, delivery: str, message_id: str, what: str) -> None:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(self._standard_key, message_id, timestamp, body),
            "X-Thingport-Signature": signature(self._key, body),
            "X-Thingport-Delivery": delivery,
        }
        async with self._lock:
            client = self._http()
            try:
                async with asyncio.timeout(self.timeout):
                    async with client.stream("POST", self.url, content=body, headers=headers) as reply:
                        status = reply.status_code
                        head = bytearray()
                        async for chunk in reply.aiter_bytes():
                            head += chunk
                            if len(head) > _MAX_REPLY:
                                break  # the connection is dropped rather than read on
            except TimeoutError as exc:
                raise self._error(f"no reply within {self.timeout:g} s", exc) from exc
            except httpx.TimeoutException as exc:
                raise self._error(f"no reply within {self.timeout:g} s", exc) from exc
            except (httpx.HTTPError, OSError) as exc:
                raise self._error("request failed", exc) from exc
        if not 200 <= status < 300:
            text = bytes(head[:200]).decode("utf-8", "replace").strip()
            raise SinkError(f"webhook {self.shown_url}: HTTP {status} {what}" + (f": {text}" if text else ""))

    def _error(self, what: str, exc: BaseException) -> SinkError:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SinkError(f"webhook {self.shown_url}: {what}: {detail}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.aclose(), _CLOSE_GRACE)
        except BaseException as exc:  # close never raises; a cancellation still propagates
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.debug("webhook sink close: %r", exc)


def _shown(url: httpx.URL) -> str:
    """The URL without user info or query (which may carry tokens)."""
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))
