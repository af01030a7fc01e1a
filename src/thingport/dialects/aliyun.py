"""The Alibaba Cloud IoT Platform HTTPS dialect: ``POST /auth`` and ``POST /topic/${topic}``.

Errors are HTTP 200 with ``{"code": N, "message": "..."}`` (spec/aliyun-https.md); the message starts
with the platform's text for the code and says what was wrong.
"""

import logging
from time import perf_counter

import msgspec

from thingport.core import errors, identity, jsondoc, signing
from thingport.core.tokens import DIALECT_ALIYUN
from thingport.dialects.alink_reports import VALIDATED_KINDS, judge
from thingport.dialects.http import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    headers_of,
    media_type,
    read_capped,
    send_json,
)
from thingport.gateway import Gateway

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


class AliyunDialect:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._topic_limit = gateway.settings.aliyun_max_body_bytes
        self._auth_limit = gateway.settings.auth_max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        endpoint = "auth" if scope["path"] == "/auth" else "topic"
        code = 0
        try:
            if scope["method"] != "POST":
                raise errors.ParamError("only POST is supported")
            if scope["query_string"] and endpoint == "topic":  # /auth ignores them: the Link SDK 4.x sends `?_v=...&`
                raise errors.ParamError("query strings are not supported on /topic")
            if endpoint == "auth":
                body = await self._auth(scope, receive)
            else:
                body = await self._publish(scope, receive)
        except errors.ThingportError as exc:
            code = code_for(exc)
            body = error_body(code, str(exc))
        except ClientDisconnected:
            return  # nothing was stored, and nobody is left to answer
        except Exception:
            log.exception("unexpected error on %s", scope["path"])
            code = COMMON_ERROR
            body = error_body(code, "internal error")
        await send_json(send, body)
        self._gateway.metrics.request(DIALECT, endpoint, str(code), perf_counter() - started)

    async def _auth(self, scope: Scope, receive: Receive) -> bytes:
        headers = headers_of(scope)
        if media_type(headers) != _JSON:
            raise errors.ParamError("Content-Type must be application/json")
        params, method, sign = _auth_params(await read_capped(headers, receive, self._auth_limit))
        client = scope.get("client")
        source = client[0] if client else ""
        token = await self._gateway.authenticate_aliyun(params, method, sign, source)
        return b'{"code":0,"message":"success","info":{"token":"%s"}}' % token.encode()

    async def _publish(self, scope: Scope, receive: Receive) -> bytes:
        headers = headers_of(scope)
        token = headers.get(b"password")
        if not token:
            raise errors.TokenMissing("password header with the token is required")
        if media_type(headers) != _OCTET_STREAM:
            raise errors.ParamError("Content-Type must be application/octet-stream")
        gateway = self._gateway
        device = await gateway.device_for_token(token.decode("latin-1"), DIALECT_ALIYUN)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        try:
            topic_name = raw_path[6:].decode("ascii")  # after "/topic"
        except UnicodeDecodeError:
            raise errors.TopicDenied("topic must be ASCII") from None
        runtime = await gateway.product(device)
        topic = runtime.classify(device.device_name, topic_name)
        await gateway.throttle_report(device, runtime)
        payload = await read_capped(headers, receive, self._topic_limit)
        received_ms = gateway.now_ms()
        if topic.kind in VALIDATED_KINDS:
            judgement = judge(runtime, topic, payload, received_ms)
            message_id = await gateway.store(
                device, DIALECT, topic.name, topic.kind.value, payload, received_ms,
                judgement.reply, judgement.properties,
            )
        else:
            message_id = await gateway.store(device, DIALECT, topic.name, topic.kind.value, payload, received_ms)
        return b'{"code":0,"message":"success","info":{"messageId":%d}}' % message_id
