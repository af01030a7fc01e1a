"""A device of the Alibaba Cloud IoT Platform's HTTPS dialect (``POST /auth``, ``POST /topic/${topic}``).

:class:`AliyunCore` is the protocol (requests, replies, Alink documents) as flows; :class:`AliyunDevice`
and :class:`AsyncAliyunDevice` only hand those flows to a sync or asyncio transport.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import re
from collections.abc import Mapping
from typing import Any, Generic

from thingport.core.signing import SIGN_METHODS, aliyun_sign
from thingport.device.errors import ServerError, aliyun_error
from thingport.device.protocol import Credential, Flow, Request, Response, Retry, Session
from thingport.device.transport import AsyncClient, AsyncTransport, SyncClient, SyncTransport, TransportT
from thingport.device.values import alink_params, alink_value, dumps, epoch_ms

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,50}")
_JSON = {"Content-Type": "application/json"}


def _reply_info(response: Response) -> Any:
    """The ``info`` of a ``code`` 0 reply; the typed error for any other code."""
    try:
        doc = json.loads(response.body)
        code = doc["code"]
    except (ValueError, TypeError, KeyError):
        raise ServerError(f"not an Alibaba-dialect reply (HTTP {response.status}): {response.body[:200]!r}",
                          status=response.status) from None
    if code != 0:
        raise aliyun_error(code, str(doc.get("message", "")))
    return doc.get("info") or {}


class AliyunCore:
    """One device's Alibaba-dialect protocol, without I/O: every operation returns a flow."""

    def __init__(
        self,
        product_key: str,
        device_name: str,
        device_secret: str,
        *,
        client_id: str | None = None,
        sign_method: str = "hmacsha256",
        retry: Retry | None = None,
    ) -> None:
        if sign_method not in SIGN_METHODS:
            raise ValueError(f"sign_method must be one of {', '.join(SIGN_METHODS)}")
        client_id = client_id or f"{product_key}.{device_name}"
        if not 1 <= len(client_id) <= 64:
            raise ValueError("client_id must be 1-64 characters")
        self.product_key = product_key
        self.device_name = device_name
        self.client_id = client_id
        self._secret = device_secret
        self._sign_method = sign_method
        self._alink_ids = itertools.count(1)
        self.session = Session(self, retry or Retry())

    # --- Dialect: how to authenticate ---

    def auth_request(self, now: float) -> Request:
        params = {"productKey": self.product_key, "deviceName": self.device_name, "clientId": self.client_id,
                  "timestamp": str(int(now * 1000))}
        sign = aliyun_sign(self._secret, params, self._sign_method)
        body = dumps({**params, "signmethod": self._sign_method, "sign": sign})
        return Request("POST", "/auth", _JSON, body)

    def credential(self, response: Response, now: float) -> Credential:
        token = _reply_info(response).get("token")
        if not isinstance(token, str) or not token:
            raise ServerError("auth reply without a token", status=response.status)
        return Credential(token)  # validity is not in the reply: used until the server refuses it

    # --- operations ---

    def authenticate(self) -> Flow[str]:
        return self.session.authenticate()

    def user_topic(self, name: str) -> str:
        """The device's own custom topic ``/${productKey}/${deviceName}/user/${name}``."""
        return f"/{self.product_key}/{self.device_name}/user/{name}"

    def publish(self, topic: str, payload: bytes | str) -> Flow[int]:
        if not topic.startswith("/"):
            raise ValueError("a topic starts with '/', e.g. /${productKey}/${deviceName}/user/update")
        body = payload.encode() if isinstance(payload, str) else bytes(payload)
        path = "/topic" + topic

        def build(token: str) -> Request:
            return Request("POST", path, {"Content-Type": "application/octet-stream", "password": token}, body)

        return self.session.call(build, _message_id)

    def post_properties(self, properties: Mapping[str, Any], time_ms: int | _dt.datetime | None = None) -> Flow[int]:
        topic = f"/sys/{self.product_key}/{self.device_name}/thing/event/property/post"
        return self.publish(topic, self._alink("thing.event.property.post", alink_params(properties, time_ms)))

    def post_event(
        self, identifier: str, params: Mapping[str, Any], time_ms: int | _dt.datetime | None = None
    ) -> Flow[int]:
        if not _IDENTIFIER.fullmatch(identifier):
            raise ValueError("an event identifier is 1-50 letters, digits or '_'")
        value = alink_value(dict(params))
        doc = value if time_ms is None else {"value": value, "time": epoch_ms(time_ms)}
        topic = f"/sys/{self.product_key}/{self.device_name}/thing/event/{identifier}/post"
        return self.publish(topic, self._alink(f"thing.event.{identifier}.post", doc))

    def _alink(self, method: str, params: Any) -> bytes:
        return dumps({"id": str(next(self._alink_ids)), "version": "1.0", "params": params, "method": method})


def _message_id(response: Response) -> int:
    message_id = _reply_info(response).get("messageId")
    if not isinstance(message_id, int):
        raise ServerError("publish reply without a messageId", status=response.status)
    return message_id


class _AliyunBase(Generic[TransportT]):
    """What both flavours share: the constructor and the protocol core; only the transport differs."""

    _transport_class: type[TransportT]
    _transport: TransportT

    def __init__(
        self,
        endpoint: str,
        product_key: str,
        device_name: str,
        device_secret: str,
        *,
        client_id: str | None = None,
        sign_method: str = "hmacsha256",
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float = 10,
        retry: Retry | None = None,
    ) -> None:
        self._core = AliyunCore(product_key, device_name, device_secret, client_id=client_id,
                                sign_method=sign_method, retry=retry)
        self._transport = self._transport_class(endpoint, ca_file=ca_file, timeout=timeout)


    @property
    def token(self) -> str | None:
        """The cached token (None before the first authentication or after a refusal)."""
        return self._core.session.token

    def user_topic(self, name: str) -> str:
        """The device's own custom topic ``/${productKey}/${deviceName}/user/${name}``."""
        return self._core.user_topic(name)


class AliyunDevice(_AliyunBase[SyncTransport], SyncClient):
    """An Alibaba-dialect device over HTTPS (blocking). Authenticates on first use, keeps the token and
    the connection, re-authenticates and resends once when the token is refused (20001/20003).

    ``endpoint``: ``https://host:8443``; ``ca_file``: trust only this certificate (thingport's
    ``tls-cert.pem``), default the system trust store; ``timeout`` in seconds per request.
    """

    def authenticate(self) -> str:
        """Authenticate now and return the token (reports do it by themselves when needed)."""
        return self._transport.run(self._core.authenticate())

    def publish(self, topic: str, payload: bytes | str) -> int:
        """Publish raw bytes to ``topic``; returns the server's ``messageId`` once it is stored."""
        return self._transport.run(self._core.publish(topic, payload))

    def post_properties(self, properties: Mapping[str, Any], time_ms: int | _dt.datetime | None = None) -> int:
        """Alink property post. Values may be bool, datetime, Enum, Decimal, dict, list, or :class:`Timed`;
        ``time_ms`` stamps every value with that time (the ``{"value","time"}`` form)."""
        return self._transport.run(self._core.post_properties(properties, time_ms))

    def post_event(self, identifier: str, params: Mapping[str, Any], time_ms: int | _dt.datetime | None = None) -> int:
        """Alink event post of the event ``identifier`` with its output parameters."""
        return self._transport.run(self._core.post_event(identifier, params, time_ms))


class AsyncAliyunDevice(_AliyunBase[AsyncTransport], AsyncClient):
    """:class:`AliyunDevice` for asyncio: the same arguments, the same behaviour, awaitable methods."""

    async def authenticate(self) -> str:
        """Authenticate now and return the token (reports do it by themselves when needed)."""
        return await self._transport.run(self._core.authenticate())

    async def publish(self, topic: str, payload: bytes | str) -> int:
        """Publish raw bytes to ``topic``; returns the server's ``messageId`` once it is stored."""
        return await self._transport.run(self._core.publish(topic, payload))

    async def post_properties(self, properties: Mapping[str, Any], time_ms: int | _dt.datetime | None = None) -> int:
        """Alink property post (see :meth:`AliyunDevice.post_properties`)."""
        return await self._transport.run(self._core.post_properties(properties, time_ms))

    async def post_event(
        self, identifier: str, params: Mapping[str, Any], time_ms: int | _dt.datetime | None = None
    ) -> int:
        """Alink event post of the event ``identifier`` with its output parameters."""
        return await self._transport.run(self._core.post_event(identifier, params, time_ms))

