"""Fuzz targets for thingport's request decoders and validators (pure functions: no server, no I/O).

Each target takes the fuzzer's bytes and calls thingport code the way the device endpoint does; it lets
through only the exceptions that code documents (anything else is a finding), and checks a few
invariants on success. Used by ``fuzz/fuzz.py`` (atheris, coverage-guided) and by
``tests/hostile/test_fuzz_targets.py`` (seeds + hypothesis, so the harness cannot rot).

Known bugs (each an ``xfail(strict=True)`` test in tests/hostile/test_regressions.py) are tolerated so the
fuzzer can look past them; set ``THINGPORT_FUZZ_STRICT=1`` to make them findings again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from thingport.bus.envelope import envelope  # noqa: E402
from thingport.core import alink, errors, signing  # noqa: E402
from thingport.core.model import StoredMessage  # noqa: E402
from thingport.core.thingmodel import ThingModel, ThingModelError  # noqa: E402
from thingport.core.tokens import TokenClaims, TokenCodec  # noqa: E402
from thingport.core.topics import TopicKind, classify_topic, compile_topic_filter  # noqa: E402
from thingport.dialects.aliyun import _auth_params  # noqa: E402
from thingport.dialects.huawei import _auth_fields, _json_object  # noqa: E402

STRICT = os.environ.get("THINGPORT_FUZZ_STRICT") == "1"
SEPARATOR = b"\n--\n"  # splits one input into parts (model / params, topic / categories, ...)


class KnownBug(Exception):
    """Raised instead of a tolerated known bug, so callers can count it (never escapes a target)."""


def _known(exc: BaseException, *kinds: str) -> bool:
    """Is ``exc`` one of the known bugs (see the module docstring)?"""
    if STRICT:
        return False
    if "json-recursion" in kinds and isinstance(exc, RecursionError):
        return True  # msgspec's RecursionError on nesting deeper than ~1000 (test_regressions.py)
    if "json-utf8" in kinds and isinstance(exc, UnicodeDecodeError):
        return True  # msgspec's UnicodeDecodeError on invalid UTF-8 inside a JSON string
    if "int-digits" in kinds and isinstance(exc, ValueError) and "Exceeds the limit" in str(exc):
        return True  # int() of more than 4300 digits in a model document (ValueError, not ThingModelError)
    return False


def _parts(data: bytes, n: int) -> list[bytes]:
    parts = data.split(SEPARATOR, n - 1)
    return parts + [b""] * (n - len(parts))


def _json(raw: bytes) -> object | None:
    """A JSON document the way the CLI/API read model files (stdlib json); None when it is not one."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None


# --- Alink request documents ---------------------------------------------------------------------

_TSL = {
    "properties": [
        {"identifier": "t", "dataType": {"type": "int", "specs": {"min": "-10", "max": "50"}}},
        {"identifier": "h", "dataType": {"type": "double", "specs": {"min": "0", "max": "100"}}},
        {"identifier": "f", "dataType": {"type": "float", "specs": {}}},
        {"identifier": "b", "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
        {"identifier": "e", "dataType": {"type": "enum", "specs": {"0": "a", "1": "b"}}},
        {"identifier": "x", "dataType": {"type": "text", "specs": {"length": "8"}}},
        {"identifier": "d", "dataType": {"type": "date", "specs": {}}},
        {"identifier": "s", "dataType": {"type": "struct", "specs": [
            {"identifier": "m", "dataType": {"type": "int", "specs": {}}},
            {"identifier": "n", "dataType": {"type": "text", "specs": {"length": "4"}}}]}},
        {"identifier": "a", "dataType": {"type": "array", "specs": {"size": "3", "item": {"type": "struct", "specs": [
            {"identifier": "m", "dataType": {"type": "double", "specs": {}}}]}}}},
    ],
    "events": [{"identifier": "alarm", "outputData": [
        {"identifier": "level", "dataType": {"type": "int", "specs": {"min": "1", "max": "3"}}}]}],
}
_MODELS = (ThingModel.from_tsl(_TSL), ThingModel.schemaless())


_RECEIVED_MS = 1_800_000_000_000  # "now" for the device times a request gives


def _judge(request: alink.AlinkRequest) -> None:
    """What the ingest use case does with a parsed Alink report (AlinkReports.judge, then .reply): validate,
    build the reply, encode it."""
    for model in _MODELS:
        groups, _events, refused = alink.validate_request(model, request, _RECEIVED_MS)
        msgspec.json.encode(alink.reply_for(request, refused))
        for values in groups.values():
            msgspec.json.encode(values)  # what the log writer stores: a history row per time, then each value
            for value in values.values():
                msgspec.json.encode(value)


def _alink(parse: Callable[[bytes], alink.AlinkRequest]) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        try:
            request = parse(data)
        except alink.AlinkError as err:
            msgspec.json.encode(alink.reply_for_error(err, "thing.event.property.post"))
            return
        count = len(request.values) + len(request.properties)  # a property post's, or a batch post's
        assert count <= alink.MAX_PROPERTIES, count
        _judge(request)

    return target


alink_property_post = _alink(alink.parse_property_post)
alink_batch_post = _alink(alink.parse_batch_post)
alink_event_post = _alink(lambda data: alink.parse_event_post(data, "alarm"))


# --- thing models -----------------------------------------------------------------------------

def _thingmodel(compile_model: Callable[[dict], ThingModel]) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        model_raw, params_raw = _parts(data, 2)
        doc = _json(model_raw)
        if not isinstance(doc, dict):
            return
        try:
            model = compile_model(doc)
        except ThingModelError:
            return
        except ValueError as exc:
            if _known(exc, "int-digits"):
                return
            raise
        again = ThingModel.from_document(model.to_document())  # what a restart reloads from the database
        assert again.version == model.version
        model.to_tsl()  # product tsl export / GET .../thing-model/tsl
        try:
            params = msgspec.json.decode(params_raw)
        except msgspec.DecodeError:
            return
        except (RecursionError, UnicodeDecodeError):
            return  # not what this target is about (see the decoder targets)
        accepted, refused = model.validate_properties(params)
        if isinstance(params, dict):
            assert set(accepted) <= set(params), (accepted, params)
            top = {r.identifier for r in refused}
            for name in params:
                assert name in accepted or any(t == name or t.startswith((name + ".", name + "[")) for t in top), name
        for service in ("Environment", "s", ""):
            model.validate_service_properties(service, params)
        model.validate_event("alarm", params)
        for value in accepted.values():
            msgspec.json.encode(value)

    return target


thingmodel_tsl = _thingmodel(ThingModel.from_tsl)
thingmodel_huawei = _thingmodel(ThingModel.from_huawei)


# --- the auth body parsers --------------------------------------------------------------------

def aliyun_auth_params(data: bytes) -> None:
    try:
        params, method, sign = _auth_params(data)
    except errors.ParamError:
        return
    except (RecursionError, UnicodeDecodeError) as exc:
        if _known(exc, "json-recursion", "json-utf8"):
            return
        raise
    assert method in signing.SIGN_METHODS and sign and all(isinstance(v, str) for v in params.values())
    # what the gateway does next with them
    if "timestamp" in params:
        int(params["timestamp"])
    signing.aliyun_sign_matches("secret", params, method, sign)


def huawei_auth_fields(data: bytes) -> None:
    try:
        device_id, sign_type, timestamp, password = _auth_fields(data)
    except errors.ParamError:
        return
    except (RecursionError, UnicodeDecodeError) as exc:
        if _known(exc, "json-recursion", "json-utf8"):
            return
        raise
    assert sign_type in (0, 1) and len(timestamp) == 10 and len(password) == 64 and device_id
    signing.huawei_password_matches("secret", timestamp, password)


def huawei_json_object(data: bytes) -> None:
    try:
        doc = _json_object(data)
    except errors.ParamError:
        return
    except (RecursionError, UnicodeDecodeError) as exc:
        if _known(exc, "json-recursion", "json-utf8"):
            return
        raise
    assert isinstance(doc, dict)


# --- topics -----------------------------------------------------------------------------------

_PK, _DN = "a1FHTWxQabc", "dev-0001"
_WILD = set("#+%\x00 ?")


def classify(data: bytes) -> None:
    """A topic (the raw path after /topic, ASCII as the dialect requires) against a device's rights."""
    topic_raw, categories_raw, name_raw = _parts(data, 3)
    try:
        topic = topic_raw.decode("ascii")
    except UnicodeDecodeError:
        return
    device_name = name_raw.decode("ascii", "replace") if name_raw else _DN
    categories: dict[str, str] = {}
    for line in categories_raw.decode("ascii", "replace").splitlines()[:50]:
        suffix, _, operation = line.partition(" ")
        categories[suffix] = operation
    try:
        result = classify_topic(topic, _PK, device_name, categories)
    except errors.TopicDenied:
        return
    assert result.name == topic
    own = (f"/{_PK}/{device_name}/", f"/sys/{_PK}/{device_name}/thing/", f"/ota/device/inform/{_PK}/{device_name}")
    assert topic.startswith(own), topic
    rest = next(topic[len(p):] for p in own if topic.startswith(p))
    if rest:
        assert not (_WILD & set(rest)) and "//" not in rest and not rest.endswith("/") and ".." not in rest, topic
    if result.kind is TopicKind.CUSTOM and categories.get(rest) is not None:
        assert categories[rest] in ("pub", "all"), (rest, categories[rest])


def topic_filter(data: bytes) -> None:
    filter_raw, *topics = data.split(b"\n")
    text = filter_raw.decode("utf-8", "replace")
    try:
        matches = compile_topic_filter(text)
    except ValueError:
        return
    for t in topics[:20]:
        matches(t.decode("utf-8", "replace"))
    if "+" not in text and "#" not in text:
        assert matches(text), text  # a filter without wildcards matches itself
    if text == "#":
        assert all(matches(t.decode("utf-8", "replace")) for t in topics[:20])


# --- tokens -----------------------------------------------------------------------------------

TOKEN_KEY = b"thingport-fuzz-token-key-32bytes!"
_NOW = 1_800_000_000.0
_CODEC = TokenCodec(TOKEN_KEY)
SEED_TOKEN = _CODEC.issue(TokenClaims(1, 2, 3, int(_NOW * 1000) - 5000, int(_NOW) + 3600))  # has a "_"


def token_verify(data: bytes) -> None:
    token = data.decode("latin-1")  # as both dialects read the header
    try:
        claims = _CODEC.verify(token, _NOW)
    except (errors.TokenInvalid, errors.TokenExpired):
        return
    # only a token this key issued verifies. Known and harmless (the MAC covers the decoded bytes): the
    # decoder also takes "+" and "/" for base64url's "-" and "_", so a token has aliases (README).
    issued = _CODEC.issue(claims)
    assert issued == token or (not STRICT and _canonical(token) == issued), token


def _canonical(token: str) -> str:
    """base64url spelled with the standard alphabet's + and / decodes the same: see the README (malleable)."""
    return token.replace("+", "-").replace("/", "_")


# --- the forwarding envelope (a stored payload is anything a device sent) -------------------------

def envelope_of_payload(data: bytes) -> None:
    message = StoredMessage(1, 1, _PK, _DN, "aliyun", f"/{_PK}/{_DN}/user/x", data, int(time.time() * 1000))
    try:
        msgspec.json.encode(envelope(message))
    except RecursionError as exc:
        if _known(exc, "json-recursion"):
            return
        raise


TARGETS: dict[str, Callable[[bytes], None]] = {
    "alink_property_post": alink_property_post,
    "alink_batch_post": alink_batch_post,
    "alink_event_post": alink_event_post,
    "thingmodel_tsl": thingmodel_tsl,
    "thingmodel_huawei": thingmodel_huawei,
    "aliyun_auth_params": aliyun_auth_params,
    "huawei_auth_fields": huawei_auth_fields,
    "huawei_json_object": huawei_json_object,
    "classify_topic": classify,
    "topic_filter": topic_filter,
    "token_verify": token_verify,
    "envelope": envelope_of_payload,
}
