"""The Huawei Cloud IoTDA HTTPS dialect: ``/v5/device-auth`` and the ``/v5/devices/{device_id}/sys/...`` reports.

Errors are an HTTP status with ``{"error_code": "IOTDA.xxxxxx", "error_msg": "..."}`` (spec/huawei-https.md).
Reports land in the same log, latest values and history as the Alibaba dialect's, with the same message
kinds; only the ``dialect`` field tells them apart.
"""

import datetime
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any, NamedTuple

import msgspec

from thingport.core import errors, identity, iotda, jsondoc, signing
from thingport.core.model import Device, Product
from thingport.core.product_runtime import ProductRuntime
from thingport.core.thingmodel import ThingModel
from thingport.core.tokens import DIALECT_HUAWEI
from thingport.core.validation import Verdict
from thingport.dialects.http import ClientDisconnected, DeviceRequest, Reply
from thingport.ingest.ports import DeviceLookup, Ingest, KnownDevices, Part, TokenScheme, auth_bucket
from thingport.settings import Settings

log = logging.getLogger(__name__)

DIALECT = "huawei"
TOKENS = TokenScheme(DIALECT_HUAWEI, supersedes=True)  # a new token retires the previous one after 30 s

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
    device_id, sign_type, timestamp, password = (
        doc.get(k) for k in ("device_id", "sign_type", "timestamp", "password")
    )
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


def _hour_stamp(at: datetime.datetime) -> str:
    return at.strftime("%Y%m%d%H")


@dataclass(frozen=True, slots=True)
class HuaweiCredential:
    """A /v5/device-auth body: ``password`` is HMAC-SHA256 of the device secret keyed by the UTC hour
    ``timestamp``. sign_type 0 is the platform's "do not check the time": its password never expires, so a
    captured one authenticates forever; products (or the server) may require sign_type 1, whose hour must be
    the current one (or a neighbour)."""

    device_id: str
    sign_type: int
    timestamp: str
    password: str

    tokens = TOKENS

    @property
    def client_id(self) -> str:
        return self.device_id

    def bucket(self, known: KnownDevices) -> str:
        device = known.known_by_device_id(self.device_id)
        if device is not None:  # the device's own bucket, before any database round trip
            return auth_bucket(device.product_key, device.device_name)
        return f"iotda:{self.device_id}"  # a guard on the name as given, until the registry says which device

    def check_time(self, now_s: float, settings: Settings) -> None:
        if self.sign_type == 1:
            utc = datetime.datetime.fromtimestamp(now_s, datetime.UTC)
            hour = datetime.timedelta(hours=1)
            if self.timestamp not in {_hour_stamp(utc - hour), _hour_stamp(utc), _hour_stamp(utc + hour)}:
                raise errors.AuthFailed("timestamp is not the current UTC hour")

    async def find(self, devices: DeviceLookup) -> Device | None:
        return await devices.device_by_device_id(self.device_id)

    def check_secret(self, secret: str) -> None:
        if not signing.huawei_password_matches(secret, self.timestamp, self.password):
            raise errors.AuthFailed("password does not match")

    def admit(self, product: Product, settings: Settings) -> None:
        required = product.require_sign_type_1
        if self.sign_type == 0 and (settings.huawei_require_sign_type_1 if required is None else required):
            raise errors.AuthFailed("sign_type 0 is not allowed for this product: use sign_type 1 (time-checked)")

    def ttl_s(self, settings: Settings) -> int:
        return settings.huawei_token_ttl_s


class IotdaAddress(NamedTuple):
    """Where an IoTDA report goes, from its path."""

    device_id: str  # the path's
    api: str  # _REPORT, _MESSAGE_UP or _GATEWAY_REPORT
    path: str


class IotdaReports:
    """``/v5/devices/{device_id}/sys/...``: a device reports for itself (the path's device_id must be the
    token's), a gateway for its sub-devices; property reports are judged against the model."""

    dialect = DIALECT
    tokens = TOKENS

    def route(self, device: Device, product: ProductRuntime, address: IotdaAddress) -> IotdaAddress:
        if device.device_id != address.device_id:
            raise errors.TokenInvalid("the access token belongs to another device")
        return address

    def decode(self, address: IotdaAddress, payload: bytes) -> Iterable[Part]:
        topic = address.path
        if address.api == _MESSAGE_UP:  # any body, stored and forwarded unchanged
            return (Part(topic, "custom", payload),)
        doc = _json_object(payload)
        if address.api == _REPORT:
            iotda.cap_properties(iotda.property_count(doc.get("services")))
            return (Part(topic, "property_post", payload, True, doc),)
        return self._sub_device_parts(topic, doc)

    def _sub_device_parts(self, topic: str, doc: dict[str, Any]) -> Iterator[Part]:
        children = doc.get("devices")
        if not isinstance(children, list) or not children:
            raise errors.ParamError("devices must be a non-empty list")
        if len(children) > iotda.MAX_CHILDREN:
            raise errors.TooManyChildren(
                f"at most {iotda.MAX_CHILDREN} sub-devices in one request, got {len(children)}"
            )
        iotda.cap_properties(sum(iotda.property_count(e.get("services")) for e in children if isinstance(e, dict)))
        for entry in children:
            if not isinstance(entry, dict) or not isinstance(entry.get("device_id"), str):
                raise errors.ParamError("each entry of devices needs a device_id")
            yield Part(topic, "property_post", _encode(entry), True, entry, entry["device_id"])

    def judge(self, part: Part, model: ThingModel, received_ms: int) -> tuple[dict[int, dict[str, Any]], Sequence[Any]]:
        return iotda.judge_services(model, part.document.get("services"), received_ms)

    def reply(self, part: Part, verdict: Verdict[Any]) -> bytes | None:
        if verdict.rejected:  # IoTDA refuses the request: nothing of it is stored
            reasons = "; ".join(r["reason"] for r in verdict.refused[:10])
            raise errors.ParamError(f"product model refused the report: {reasons}")
        return _encode({"refused": verdict.refused}) if verdict.refused else None


_REPORTS = IotdaReports()


class HuaweiDialect:
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest
        self._limit = ingest.settings.huawei_max_body_bytes
        self._auth_limit = ingest.settings.auth_max_body_bytes

    async def __call__(self, request: DeviceRequest) -> Reply | None:
        started = perf_counter()
        status, code, endpoint = 200, "200", "unknown"
        try:
            if request.method != b"POST":
                raise errors.ParamError("only POST is supported")
            path = request.path
            if path == "/v5/device-auth":
                endpoint = "auth"
                body = await self._auth(request)
            else:
                parts = path.split("/", 5)  # "", "v5", "devices", id, "sys", rest
                rest = parts[5] if len(parts) == 6 and parts[2] == "devices" and parts[4] == "sys" else ""
                if rest not in (_REPORT, _MESSAGE_UP, _GATEWAY_REPORT):
                    raise _NoSuchApi(f"no such API: POST {path}")
                endpoint = rest
                body = await self._report(request, parts[3], rest)
        except _NoSuchApi as exc:
            status, code = 404, "IOTDA.000006"
            body = error_body(code, str(exc))
        except errors.ThingportError as exc:
            status, code = status_and_code(exc)
            self._ingest.metrics.error(DIALECT, exc)
            body = error_body(code, str(exc))
        except ClientDisconnected:
            return None  # nothing was stored, and nobody is left to answer
        except Exception:
            log.exception("unexpected error on %s", request.path)
            status, code = INTERNAL
            body = error_body(code, "internal error")
        self._ingest.metrics.request(DIALECT, endpoint, code, perf_counter() - started)
        return status, body

    async def _auth(self, request: DeviceRequest) -> bytes:
        try:
            raw = await request.body(self._auth_limit)
        except errors.BodyTooLarge as exc:
            raise errors.ParamError(str(exc)) from None
        session = await self._ingest.authenticate(HuaweiCredential(*_auth_fields(raw)), request.client)
        return _encode({"access_token": session.token, "expires_in": session.expires_in})

    async def _report(self, request: DeviceRequest, path_device_id: str, kind: str) -> bytes:
        token = request.headers.get(b"access_token")
        if not token:
            raise errors.TokenMissing("access_token header is required")
        read_body = partial(request.body, self._limit)  # read by the use case after the throttle
        address = IotdaAddress(path_device_id, kind, request.path)
        stored = await self._ingest.report(token.decode("latin-1"), _REPORTS, address, read_body)
        if kind != _GATEWAY_REPORT:
            message, verdict = stored[0]
            doc: dict[str, Any] = {"message_id": message.message_id}
            if verdict is not None and verdict.refused:
                doc["refused"] = verdict.refused
            return _encode(doc)
        ids = [message.message_id for message, _ in stored]
        doc = {"message_id": ids[0]} if len(ids) == 1 else {"message_ids": ids}
        refused = [  # the refusals name their sub-device
            {"device_id": message.iot_id, **r} for message, verdict in stored if verdict for r in verdict.refused
        ]
        if refused:
            doc["refused"] = refused
        return _encode(doc)
