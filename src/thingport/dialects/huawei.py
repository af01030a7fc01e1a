"""The Huawei Cloud IoTDA HTTPS dialect: ``/v5/device-auth`` and the ``/v5/devices/{device_id}/sys/...`` reports.

Errors are an HTTP status with ``{"error_code": "IOTDA.xxxxxx", "error_msg": "..."}`` (spec/huawei-https.md).
Reports land in the same log, latest values and history as the Alibaba dialect's, with the same message
kinds; only the ``dialect`` field tells them apart.
"""

import logging
from time import perf_counter
from typing import Any

import msgspec

from thingport.core import errors, identity, jsondoc
from thingport.core.model import Device, StoredMessage, values_by_time
from thingport.core.thingmodel import PropertyError
from thingport.core.timestamps import parse_iotda_time, sample_time
from thingport.core.tokens import DIALECT_HUAWEI
from thingport.dialects.http import ClientDisconnected, Receive, Scope, Send, headers_of, read_capped, send_json
from thingport.gateway import Gateway

log = logging.getLogger(__name__)

DIALECT = "huawei"
MAX_CHILDREN = 50
MAX_SERVICES = 100
# Properties in one request (every service; every sub-device of a gateway report). IoTDA documents no such
# cap (its MQTT messages stop at 64 KB, its models bound the rest); thingport stores schemaless properties,
# so without one a 1 MB report could carry ~65,000 history rows and hold the single writer for ~1 s.
MAX_PROPERTIES = 1000

_encode = msgspec.json.encode

# Domain error -> (HTTP status, IoTDA code). Subclasses before their bases.
_CODES: list[tuple[type[errors.ThingportError], int, str]] = [
    (errors.TooManyChildren, 403, "IOTDA.021103"),
    (errors.NotAChild, 400, "IOTDA.021104"),
    (errors.BodyTooLarge, 403, "IOTDA.021105"),
    (errors.ParamError, 400, "IOTDA.000006"),
    (errors.AuthFailed, 401, "IOTDA.000002"),
    (errors.TokenMissing, 403, "IOTDA.000004"),
    (errors.TokenExpired, 403, "IOTDA.000004"),
    (errors.TokenInvalid, 403, "IOTDA.000004"),
    (errors.InstanceThrottled, 403, "IOTDA.021102"),
    (errors.Throttled, 403, "IOTDA.021101"),
]
INTERNAL = (500, "IOTDA.000001")

_REPORT = "properties/report"
_MESSAGE_UP = "messages/up"
_GATEWAY_REPORT = "gateway/sub-devices/properties/report"


class _NoSuchApi(Exception):
    pass


def status_and_code(exc: errors.ThingportError) -> tuple[int, str]:
    for kind, status, code in _CODES:
        if isinstance(exc, kind):
            return status, code
    return INTERNAL


def error_body(code: str, message: str) -> bytes:
    return _encode({"error_code": code, "error_msg": message})


def _json_object(body: bytes) -> dict:
    try:
        doc = jsondoc.decode_device(body)
    except jsondoc.DECODE_ERRORS:
        raise errors.ParamError("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise errors.ParamError("body must be a JSON object")
    return doc


def _auth_fields(body: bytes) -> tuple[str, int, str, str]:
    doc = _json_object(body)
    device_id, sign_type, timestamp, password = (doc.get(k) for k in ("device_id", "sign_type", "timestamp", "password"))
    if not isinstance(device_id, str) or not identity.DEVICE_ID_RE.fullmatch(device_id):
        raise errors.ParamError("device_id must be 1-128 characters of letters, digits, '_' and '-'")
    if isinstance(sign_type, str) and sign_type in ("0", "1"):
        sign_type = int(sign_type)
    if sign_type not in (0, 1) or isinstance(sign_type, bool):
        raise errors.ParamError("sign_type must be 0 or 1")
    if not isinstance(timestamp, str) or len(timestamp) != 10 or not (timestamp.isascii() and timestamp.isdigit()):
        raise errors.ParamError("timestamp must be the UTC hour as YYYYMMDDHH")
    if not isinstance(password, str) or len(password) != 64:
        raise errors.ParamError("password must be 64 hex characters (HMAC-SHA256)")
    return device_id, sign_type, timestamp, password


def _property_count(services: object) -> int:
    """The properties a ``services`` list carries (malformed entries count none: ``_judged`` refuses them)."""
    if not isinstance(services, list):
        return 0
    return sum(len(s["properties"]) for s in services if isinstance(s, dict) and isinstance(s.get("properties"), dict))


def _cap_properties(count: int) -> None:
    if count > MAX_PROPERTIES:
        raise errors.ParamError(f"at most {MAX_PROPERTIES} properties in one request, got {count}")


def _refusal(service_id: str, error: PropertyError) -> dict:
    return {"service_id": service_id, "property": error.identifier, "reason": error.reason}


class HuaweiDialect:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._limit = gateway.settings.huawei_max_body_bytes
        self._auth_limit = gateway.settings.auth_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        status, code, endpoint = 200, "200", "unknown"
        try:
            if scope["method"] != "POST":
                raise errors.ParamError("only POST is supported")
            path = scope["path"]
            if path == "/v5/device-auth":
                endpoint = "auth"
                body = await self._auth(scope, receive)
            else:
                parts = path.split("/", 5)  # "", "v5", "devices", id, "sys", rest
                rest = parts[5] if len(parts) == 6 and parts[2] == "devices" and parts[4] == "sys" else ""
                if rest not in (_REPORT, _MESSAGE_UP, _GATEWAY_REPORT):
                    raise _NoSuchApi(f"no such API: POST {path}")
                endpoint = rest
                body = await self._report(scope, receive, parts[3], rest)
        except _NoSuchApi as exc:
            status, code = 404, "IOTDA.000006"
            body = error_body(code, str(exc))
        except errors.ThingportError as exc:
            status, code = status_and_code(exc)
            body = error_body(code, str(exc))
        except ClientDisconnected:
            return  # nothing was stored, and nobody is left to answer
        except Exception:
            log.exception("unexpected error on %s", scope["path"])
            status, code = INTERNAL
            body = error_body(code, "internal error")
        await send_json(send, body, status=status)
        self._gateway.metrics.request(DIALECT, endpoint, code, perf_counter() - started)

    async def _auth(self, scope: Scope, receive: Receive) -> bytes:
        headers = headers_of(scope)
        try:
            raw = await read_capped(headers, receive, self._auth_limit)
        except errors.BodyTooLarge as exc:
            raise errors.ParamError(str(exc)) from None
        device_id, sign_type, timestamp, password = _auth_fields(raw)
        client = scope.get("client")
        token, expires_in = await self._gateway.authenticate_huawei(
            device_id, sign_type, timestamp, password, client[0] if client else ""
        )
        return _encode({"access_token": token, "expires_in": expires_in})

    async def _report(self, scope: Scope, receive: Receive, path_device_id: str, kind: str) -> bytes:
        headers = headers_of(scope)
        token = headers.get(b"access_token")
        if not token:
            raise errors.TokenMissing("access_token header is required")
        gateway = self._gateway
        device = await gateway.device_for_token(token.decode("latin-1"), DIALECT_HUAWEI)
        if device.device_id != path_device_id:
            raise errors.TokenInvalid("the access token belongs to another device")
        await gateway.throttle_report(device)
        payload = await read_capped(headers, receive, self._limit)
        received_ms = gateway.now_ms()
        topic = scope["path"]
        if kind == _MESSAGE_UP:  # any body, stored and forwarded unchanged
            message_id = await gateway.store(device, DIALECT, topic, "custom", payload, received_ms)
            return _encode({"message_id": message_id})
        if kind == _REPORT:
            doc = _json_object(payload)
            _cap_properties(_property_count(doc.get("services")))
            message, refused = await self._judged(device, topic, payload, doc, received_ms)
            await gateway.store_many(((device, message),))
            return _reply([message.message_id], refused)
        return await self._gateway_report(device, topic, _json_object(payload), received_ms)

    async def _judged(
        self, device: Device, topic: str, payload: bytes, doc: dict, received_ms: int
    ) -> tuple[StoredMessage, list[dict]]:
        """The message for one device's ``{"services": [...]}``, with its accepted values; ParamError when
        the model refuses the report (every property, or any one under the whole-report setting)."""
        services = doc.get("services")
        if not isinstance(services, list) or not services:
            raise errors.ParamError("services must be a non-empty list")
        if len(services) > MAX_SERVICES:
            raise errors.ParamError(f"at most {MAX_SERVICES} services in one report")
        runtime = await self._gateway.product(device)
        groups: dict[int, dict[str, Any]] = {}  # time -> the values given for it
        refused: list[dict] = []
        for service in services:
            if not isinstance(service, dict):
                raise errors.ParamError("each service must be a JSON object")
            service_id, properties = service.get("service_id"), service.get("properties")
            if not isinstance(service_id, str) or not service_id:
                raise errors.ParamError("service_id must be a non-empty string")
            if not isinstance(properties, dict):
                raise errors.ParamError(f"properties of service {service_id} must be a JSON object")
            at = sample_time(parse_iotda_time(service.get("event_time")), received_ms)
            accepted, bad = runtime.model.validate_service_properties(service_id, properties)
            if accepted:
                groups.setdefault(at, {}).update(accepted)
            refused.extend(_refusal(service_id, error) for error in bad)
        if refused and (runtime.whole_report or not groups):
            reasons = "; ".join(r["reason"] for r in refused[:10])
            raise errors.ParamError(f"product model refused the report: {reasons}")
        reply = _encode({"refused": refused}) if refused else None
        message = self._gateway.message(
            device, DIALECT, topic, "property_post", payload, received_ms, reply, values_by_time(groups)
        )
        return message, refused

    async def _gateway_report(self, gateway_device: Device, topic: str, doc: dict, received_ms: int) -> bytes:
        children = doc.get("devices")
        if not isinstance(children, list) or not children:
            raise errors.ParamError("devices must be a non-empty list")
        if len(children) > MAX_CHILDREN:
            raise errors.TooManyChildren(f"at most {MAX_CHILDREN} sub-devices in one request, got {len(children)}")
        _cap_properties(sum(_property_count(e.get("services")) for e in children if isinstance(e, dict)))
        messages: list[tuple[Device, StoredMessage]] = []
        refused: list[dict] = []
        for entry in children:
            if not isinstance(entry, dict) or not isinstance(entry.get("device_id"), str):
                raise errors.ParamError("each entry of devices needs a device_id")
            child = await self._gateway.device_by_device_id(entry["device_id"])
            if child is None or child.gateway_id != gateway_device.id:
                raise errors.NotAChild(f"device {entry['device_id']} is not a sub-device of this gateway")
            if not child.enabled:
                raise errors.NotAChild(f"sub-device {entry['device_id']} is disabled")
            message, bad = await self._judged(child, topic, _encode(entry), entry, received_ms)
            messages.append((child, message))
            refused.extend({"device_id": child.device_id, **r} for r in bad)
        await self._gateway.store_many(tuple(messages))
        return _reply([m.message_id for _, m in messages], refused)


def _reply(message_ids: list[int], refused: list[dict[str, Any]]) -> bytes:
    doc: dict[str, Any] = {"message_id": message_ids[0]} if len(message_ids) == 1 else {"message_ids": message_ids}
    if refused:
        doc["refused"] = refused
    return _encode(doc)
