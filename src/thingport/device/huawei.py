"""A device of the Huawei Cloud IoTDA HTTPS dialect (``POST /v5/device-auth``, ``/v5/devices/{id}/sys/...``).

:class:`HuaweiCore` is the protocol as flows; :class:`HuaweiDevice` and :class:`AsyncHuaweiDevice` hand
them to a sync or asyncio transport.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Generic
from urllib.parse import quote

from thingport.core.signing import huawei_password
from thingport.device.errors import RejectedError, ServerError, iotda_error
from thingport.device.protocol import Credential, Flow, Request, Response, Retry, Session
from thingport.device.transport import AsyncClient, AsyncTransport, SyncClient, SyncTransport, TransportT
from thingport.device.values import Receipt, Service, dumps, iotda_services

MAX_SUB_DEVICES = 50
"""Sub-devices in one gateway report (the server refuses more with IOTDA.021103; checked here first)."""

Services = Service | Sequence[Service] | Mapping[str, Mapping[str, Any]]
"""Properties by service: Service objects, or ``{service_id: {property: value}}``."""

EventTime = _dt.datetime | str | None
MessageBody = bytes | str | Mapping[str, Any] | Sequence[Any]

_JSON = "application/json"


def _reply(response: Response) -> dict[str, Any]:
    """A 2xx reply's JSON object; the typed error for anything else."""
    try:
        doc = json.loads(response.body)
    except ValueError:
        doc = None
    if 200 <= response.status < 300:
        if not isinstance(doc, dict):
            raise ServerError(f"not an IoTDA reply: {response.body[:200]!r}", status=response.status)
        return doc
    if isinstance(doc, dict):
        raise iotda_error(response.status, doc.get("error_code"), str(doc.get("error_msg", "")))
    raise iotda_error(response.status, None, f"HTTP {response.status}: {response.body[:200]!r}")


def _receipt(response: Response) -> Receipt:
    doc = _reply(response)
    ids = doc.get("message_ids", [doc["message_id"]] if "message_id" in doc else [])
    if not ids or not all(isinstance(i, int) for i in ids):
        raise ServerError("report reply without message ids", status=response.status)
    return Receipt(tuple(ids), tuple(doc.get("refused") or ()))


def _services(services: Services, event_time: EventTime) -> list[dict[str, Any]]:
    docs = iotda_services(services, event_time)
    if not docs:
        raise RejectedError("client-side check: a report needs at least one service", "IOTDA.000006")
    return docs


class HuaweiCore:
    """One device's IoTDA protocol, without I/O: every operation returns a flow."""

    def __init__(self, device_id: str, secret: str, *, sign_type: int = 0, retry: Retry | None = None) -> None:
        if sign_type not in (0, 1):
            raise ValueError("sign_type must be 0 (password only) or 1 (also check the timestamp)")
        self.device_id = device_id
        self._secret = secret
        self._sign_type = sign_type
        self._base = f"/v5/devices/{quote(device_id, safe='')}/sys/"
        self.session = Session(self, retry or Retry())

    # --- Dialect: how to authenticate ---

    def auth_request(self, now: float) -> Request:
        timestamp = _dt.datetime.fromtimestamp(now, _dt.UTC).strftime("%Y%m%d%H")
        body = dumps({"device_id": self.device_id, "sign_type": self._sign_type, "timestamp": timestamp,
                      "password": huawei_password(self._secret, timestamp)})
        return Request("POST", "/v5/device-auth", {"Content-Type": _JSON}, body)

    def credential(self, response: Response, now: float) -> Credential:
        doc = _reply(response)
        token, expires_in = doc.get("access_token"), doc.get("expires_in")
        if not isinstance(token, str) or not token:
            raise ServerError("auth reply without an access_token", status=response.status)
        if not isinstance(expires_in, (int, float)):
            return Credential(token)
        # renew a little before the server's deadline (a tenth of the lifetime, at most a minute)
        return Credential(token, now + expires_in - min(60.0, expires_in / 10))

    # --- operations ---

    def authenticate(self) -> Flow[str]:
        return self.session.authenticate()

    def report_properties(self, services: Services, event_time: EventTime = None) -> Flow[Receipt]:
        return self._post("properties/report", dumps({"services": _services(services, event_time)}), _JSON)

    def message_up(self, body: MessageBody) -> Flow[Receipt]:
        if isinstance(body, (bytes, bytearray, memoryview)):
            return self._post("messages/up", bytes(body), "application/octet-stream")
        if isinstance(body, str):
            return self._post("messages/up", body.encode(), "text/plain; charset=utf-8")
        return self._post("messages/up", dumps(body), _JSON)

    def report_sub_devices(self, devices: Mapping[str, Services], event_time: EventTime = None) -> Flow[Receipt]:
        if not devices:
            raise RejectedError("client-side check: no sub-devices to report", "IOTDA.000006")
        if len(devices) > MAX_SUB_DEVICES:
            raise RejectedError(f"client-side check: at most {MAX_SUB_DEVICES} sub-devices in one request, "
                                f"got {len(devices)}", "IOTDA.021103")
        doc = {"devices": [{"device_id": child, "services": _services(services, event_time)}
                           for child, services in devices.items()]}
        return self._post("gateway/sub-devices/properties/report", dumps(doc), _JSON)

    def _post(self, api: str, body: bytes, content_type: str) -> Flow[Receipt]:
        path = self._base + api

        def build(token: str) -> Request:
            return Request("POST", path, {"Content-Type": content_type, "access_token": token}, body)

        return self.session.call(build, _receipt)


class _HuaweiBase(Generic[TransportT]):
    """What both flavours share: the constructor and the protocol core; only the transport differs."""

    _transport_class: type[TransportT]
    _transport: TransportT

    def __init__(
        self,
        endpoint: str,
        device_id: str,
        secret: str,
        *,
        sign_type: int = 0,
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float = 10,
        retry: Retry | None = None,
    ) -> None:
        self._core = HuaweiCore(device_id, secret, sign_type=sign_type, retry=retry)
        self._transport = self._transport_class(endpoint, ca_file=ca_file, timeout=timeout)


    @property
    def token(self) -> str | None:
        """The cached access token (None before the first authentication or after a refusal)."""
        return self._core.session.token


class HuaweiDevice(_HuaweiBase[SyncTransport], SyncClient):
    """An IoTDA-dialect device over HTTPS (blocking). Authenticates on first use, renews the token before
    it expires, re-authenticates and resends once when it is refused (403 IOTDA.000004), keeps the
    connection. ``sign_type`` 1 makes the server check the timestamp too (needs a correct clock)."""

    def authenticate(self) -> str:
        """Authenticate now and return the access token (reports do it by themselves when needed)."""
        return self._transport.run(self._core.authenticate())

    def report_properties(self, services: Services, event_time: EventTime = None) -> Receipt:
        """Report properties by service; ``event_time`` (datetime or IoTDA string) is when they were
        sampled, for the services that do not carry their own."""
        return self._transport.run(self._core.report_properties(services, event_time))

    def message_up(self, body: MessageBody) -> Receipt:
        """Send a message up: a dict or list goes as JSON, bytes and str unchanged."""
        return self._transport.run(self._core.message_up(body))

    def report_sub_devices(self, devices: Mapping[str, Services], event_time: EventTime = None) -> Receipt:
        """A gateway's report for its sub-devices ``{device_id: services}`` in one request (at most 50);
        the server stores all of them or none."""
        return self._transport.run(self._core.report_sub_devices(devices, event_time))


class AsyncHuaweiDevice(_HuaweiBase[AsyncTransport], AsyncClient):
    """:class:`HuaweiDevice` for asyncio: the same arguments, the same behaviour, awaitable methods."""

    async def authenticate(self) -> str:
        """Authenticate now and return the access token (reports do it by themselves when needed)."""
        return await self._transport.run(self._core.authenticate())

    async def report_properties(self, services: Services, event_time: EventTime = None) -> Receipt:
        """Report properties by service (see :meth:`HuaweiDevice.report_properties`)."""
        return await self._transport.run(self._core.report_properties(services, event_time))

    async def message_up(self, body: MessageBody) -> Receipt:
        """Send a message up: a dict or list goes as JSON, bytes and str unchanged."""
        return await self._transport.run(self._core.message_up(body))

    async def report_sub_devices(self, devices: Mapping[str, Services], event_time: EventTime = None) -> Receipt:
        """A gateway's report for its sub-devices in one request (at most 50)."""
        return await self._transport.run(self._core.report_sub_devices(devices, event_time))

