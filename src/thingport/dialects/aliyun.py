"""The Alibaba Cloud IoT Platform HTTPS dialect: ``POST /auth`` and ``POST /topic/${topic}``.

Errors are HTTP 200 with ``{"code": N, "message": "..."}`` (spec/aliyun-https.md); the message starts
with the platform's text for the code and says what was wrong.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any

import msgspec

from thingport.core import alink, errors, identity, jsondoc, signing
from thingport.core.model import Device, Product
from thingport.core.product_runtime import ProductRuntime
from thingport.core.thingmodel import ThingModel
from thingport.core.tokens import DIALECT_ALIYUN
from thingport.core.topics import Topic, TopicKind
from thingport.core.validation import Verdict
from thingport.dialects.http import ClientDisconnected, DeviceRequest, Reply, media_type
from thingport.ingest.ports import DeviceLookup, Ingest, KnownDevices, Part, TokenScheme, auth_bucket
from thingport.settings import Settings

log = logging.getLogger(__name__)

DIALECT = "aliyun"

COMMON_ERROR = 10000
PARAM_ERROR = 10001
AUTH_CHECK_ERROR = 20000
TOKEN_EXPIRED = 20001
TOKEN_NULL = 20002
CHECK_TOKEN_ERROR = 20003
UPDATE_SESSION_ERROR = 20004
PUBLISH_ERROR = 30001
TOO_MANY_REQUESTS = 40000

MESSAGES = {
    COMMON_ERROR: "common error",
    PARAM_ERROR: "param error",
    AUTH_CHECK_ERROR: "auth check error",
    TOKEN_EXPIRED: "token is expired",
    TOKEN_NULL: "token is null",
    CHECK_TOKEN_ERROR: "check token error",
    UPDATE_SESSION_ERROR: "update session error",
    PUBLISH_ERROR: "publish message error",
    TOO_MANY_REQUESTS: "request too many",
}

# Domain error -> Alibaba code. Order matters: subclasses before their bases.
_CODES: list[tuple[type[errors.ThingportError], int]] = [
    (errors.ParamError, PARAM_ERROR),
    (errors.AuthFailed, AUTH_CHECK_ERROR),
    (errors.TokenMissing, TOKEN_NULL),
    (errors.TokenExpired, TOKEN_EXPIRED),
    (errors.TokenInvalid, CHECK_TOKEN_ERROR),
    (errors.SessionStoreFailed, UPDATE_SESSION_ERROR),
    (errors.TopicDenied, PUBLISH_ERROR),
    (errors.StoreUnavailable, PUBLISH_ERROR),
    (errors.Throttled, TOO_MANY_REQUESTS),
]

TOKENS = TokenScheme(DIALECT_ALIYUN)
_encode = msgspec.json.encode

_SIGNED_VALUE_TYPES = (str, int)
_JSON = b"application/json"
_OCTET_STREAM = b"application/octet-stream"


def error_body(code: int, detail: str | None = None) -> bytes:
    text = MESSAGES[code] if not detail else f"{MESSAGES[code]}: {detail}"
    return msgspec.json.encode({"code": code, "message": text})


def code_for(exc: errors.ThingportError) -> int:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return COMMON_ERROR


def _auth_params(body: bytes) -> tuple[dict[str, str], str, str]:
    """(signed parameters as strings, sign method, sign) from an /auth body; ParamError if malformed."""
    try:
        doc = jsondoc.decode_device(body)
    except jsondoc.DECODE_ERRORS:
        raise errors.ParamError("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise errors.ParamError("body must be a JSON object")
    params: dict[str, str] = {}
    for name, value in doc.items():
        if isinstance(value, bool) or not isinstance(value, _SIGNED_VALUE_TYPES):
            raise errors.ParamError(f"{name} must be a string or an integer")
        params[name] = value if isinstance(value, str) else str(value)
    for name in ("productKey", "deviceName", "clientId", "sign"):
        if not params.get(name):
            raise errors.ParamError(f"{name} is required")
    for check, name in ((identity.check_product_key, "productKey"), (identity.check_device_name, "deviceName")):
        try:
            check(params[name])
        except ValueError as exc:
            raise errors.ParamError(str(exc)) from None
    if len(params["clientId"]) > identity.CLIENT_ID_MAX:
        raise errors.ParamError(f"clientId must be 1-{identity.CLIENT_ID_MAX} characters")
    timestamp = params.get("timestamp")
    if timestamp is not None and not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 16):
        raise errors.ParamError("timestamp must be milliseconds since the epoch")
    method = params.get("signmethod", signing.DEFAULT_SIGN_METHOD).lower()
    if method not in signing.SIGN_METHODS:
        raise errors.ParamError(f"signmethod must be one of {', '.join(signing.SIGN_METHODS)}")
    return params, method, params["sign"]


@dataclass(frozen=True, slots=True)
class AliyunCredential:
    """An /auth body: the signed parameters, signed with the device secret (HMAC-MD5/SHA1/SHA256)."""

    params: Mapping[str, str]
    sign_method: str
    sign: str

    tokens = TOKENS

    @property
    def client_id(self) -> str:
        return self.params["clientId"]

    def bucket(self, known: KnownDevices) -> str:
        return auth_bucket(self.params["productKey"], self.params["deviceName"])

    def check_time(self, now_s: float, settings: Settings) -> None:
        timestamp = self.params.get("timestamp")
        if timestamp is not None and abs(int(timestamp) - now_s * 1000) > settings.aliyun_timestamp_window_s * 1000:
            raise errors.AuthFailed("timestamp is not within 15 minutes of server time")

    async def find(self, devices: DeviceLookup) -> Device | None:
        return await devices.device_by_name(self.params["productKey"], self.params["deviceName"])

    def check_secret(self, secret: str) -> None:
        if not signing.aliyun_sign_matches(secret, self.params, self.sign_method, self.sign):
            raise errors.AuthFailed("signature does not match")

    def admit(self, product: Product, settings: Settings) -> None:
        pass

    def ttl_s(self, settings: Settings) -> int:
        return settings.aliyun_token_ttl_s


class AlinkReports:
    """``/topic/${topic}``: the device's own topics; Alink JSON on the system topics judged against the model."""

    dialect = DIALECT
    tokens = TOKENS

    def route(self, device: Device, product: ProductRuntime, raw_path: bytes) -> Topic:
        try:
            topic_name = raw_path[6:].decode("ascii")  # after "/topic"
        except UnicodeDecodeError:
            raise errors.TopicDenied("topic must be ASCII") from None
        return product.classify(device.device_name, topic_name)

    def decode(self, topic: Topic, payload: bytes) -> tuple[Part]:
        if topic.kind not in alink.VALIDATED_KINDS:
            return (Part(topic.name, topic.kind.value, payload),)
        # the document is parsed by ``judge``, where the model is at hand (a conforming property post is
        # decoded and judged in one pass there)
        return (Part(topic.name, topic.kind.value, payload, True, topic),)

    def judge(self, part: Part, model: ThingModel, received_ms: int) -> tuple[dict[int, dict[str, Any]], Sequence[Any]]:
        topic = part.document
        document: alink.AlinkRequest | alink.AlinkError | None = None
        if topic.kind is TopicKind.PROPERTY_POST:
            document = alink.conforming_property_post(model, part.payload)
        if document is None:
            try:
                document = alink.parse_report(topic, part.payload)
            except alink.AlinkError as err:  # stored with the Alink reply that says why: the device is answered 0
                document = err
        part.document = document
        if isinstance(document, alink.AlinkError):
            return {}, ()
        groups, _events, refused = alink.validate_request(model, document, received_ms)
        return groups, refused

    def reply(self, part: Part, verdict: Verdict[Any]) -> bytes:
        if isinstance(part.document, alink.AlinkError):
            return _encode(alink.reply_for_error(part.document))
        return _encode(alink.reply_for(part.document, verdict.refused))


_REPORTS = AlinkReports()


class AliyunDialect:
    def __init__(self, ingest: Ingest) -> None:
        self._ingest = ingest
        self._topic_limit = ingest.settings.aliyun_max_body_bytes
        self._auth_limit = ingest.settings.auth_max_body_bytes
    async def __call__(self, request: DeviceRequest) -> Reply | None:
        started = perf_counter()
        endpoint = "auth" if request.path == "/auth" else "topic"
        code = 0
        try:
            if request.method != b"POST":
                raise errors.ParamError("only POST is supported")
            if request.query and endpoint == "topic":  # /auth ignores them: the Link SDK 4.x sends `?_v=...&`
                raise errors.ParamError("query strings are not supported on /topic")
            if endpoint == "auth":
                body = await self._auth(request)
            else:
                body = await self._publish(request)
        except errors.ThingportError as exc:
            code = code_for(exc)
            self._ingest.metrics.error(DIALECT, exc)
            body = error_body(code, str(exc))
        except ClientDisconnected:
            return None  # nothing was stored, and nobody is left to answer
        except Exception:
            log.exception("unexpected error on %s", request.path)
            code = COMMON_ERROR
            body = error_body(code, "internal error")
        self._ingest.metrics.request(DIALECT, endpoint, str(code), perf_counter() - started)
        return 200, body

    async def _auth(self, request: DeviceRequest) -> bytes:
        if media_type(request.headers) != _JSON:
            raise errors.ParamError("Content-Type must be application/json")
        params, method, sign = _auth_params(await request.body(self._auth_limit))
        session = await self._ingest.authenticate(AliyunCredential(params, method, sign), request.client)
        return b'{"code":0,"message":"success","info":{"token":"%s"}}' % session.token.encode()

    async def _publish(self, request: DeviceRequest) -> bytes:
        headers = request.headers
        token = headers.get(b"password")
        if not token:
            raise errors.TokenMissing("password header with the token is required")
        if media_type(headers) != _OCTET_STREAM:
            raise errors.ParamError("Content-Type must be application/octet-stream")
        read_body = partial(request.body, self._topic_limit)  # read by the use case after the throttle
        stored = await self._ingest.report(token.decode("latin-1"), _REPORTS, request.raw_path, read_body)
        return b'{"code":0,"message":"success","info":{"messageId":%d}}' % stored[0][0].message_id
