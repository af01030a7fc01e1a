"""Alink JSON on system topics: parse device request documents, build the reply documents.

Why a separate module: the envelope (id, version, method, params, the ``{"value", "time"}`` wrapping,
the 200-value limit) is the same whatever the product's thing model; thingmodel.py only judges values.
Measured like thingmodel.py: seed 004's payload parses in ~2.3 µs, and parse + validate + reply
takes ~3.9 µs; a 20-property post parses, validates and replies in ~8 µs (it was ~14 while every value was
wrapped in a PropertyValue and regrouped by time: a plain post now hands its decoded params on as they are).

Request forms accepted (Alibaba "device properties, events and services", and seed 004):

* property post ``{"id": "123"|123, "version": "1.0", "params": {"temperature": 21,
  "humidity": {"value": 70, "time": 1524448722000}}, "method": "thing.event.property.post"}``;
  ``id`` may be a number (Node's ``Date.now()``), ``version`` and ``method`` may be absent (4.x SDK).
  A value is the ``{"value", "time"}`` form only when its keys are exactly ``value`` (+ ``time``):
  those words are reserved identifiers, so a struct value can never look like it.
* batch post ``params: {"properties": {"Power": [{"value": "on", "time": 1524448722000}, ...]},
  "events": {"alarm": [{"value": {...}, "time": ...}]}}``; a single ``{"value","time"}`` or a plain
  value instead of the list is tolerated, but list entries must be ``{"value", "time"}`` objects.
* event post ``params: {...output data...}`` or ``params: {"value": {...}, "time": ...}``.

Whole-document errors raise AlinkError: 6207 not JSON / not an object, 460 params missing or not an
object or a malformed ``time``/batch entry, 6106 more than 200 values (property post: properties;
batch: property values, and separately event entries; event post: parameters), 6300 ``method``
present but not the topic's. ``id`` that is not a string or number becomes "".

Replies for partly refused reports (``reply_for``): ``code`` is the first refusal's Alink code,
``message`` joins the reasons ("temperature: 51 is above max 50; x: not defined in the thing model",
at most 10, then "and N more"), and ``data`` is ``{"refused": [{"identifier", "code", "reason"}, ...]}``
with every refusal; the accepted values are stored regardless. A fully valid report gets code 200,
message "success", data {}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec

from thingport.core.jsondoc import DECODE_ERRORS, without_trailing_nul
from thingport.core.thingmodel import (
    DOUBLE_MAX,
    FLOAT32_MAX,
    INT32_MAX,
    INT32_MIN,
    PropertyError,
    ThingModel,
    ValueType,
)
from thingport.core.timestamps import sample_time
from thingport.core.topics import Topic, TopicKind

ALINK_METHOD_PROPERTY_POST = "thing.event.property.post"
ALINK_METHOD_PROPERTY_BATCH_POST = "thing.event.property.batch.post"
ALINK_METHOD_EVENT_POST = "thing.event.{id}.post"

CODE_SUCCESS = 200
CODE_PARAM_ERROR = 460
CODE_TOO_MANY_PROPERTIES = 6106
CODE_NOT_JSON = 6207
CODE_METHOD_NOT_EXIST = 6300

MAX_PROPERTIES = 200
MAX_REASONS_IN_MESSAGE = 10
_INT64_MAX = 2**63 - 1

_decode = msgspec.json.Decoder().decode
# what decoding a payload may raise (a tuple built once, not per refused payload)
_LOAD_ERRORS: tuple[type[Exception], ...] = (*DECODE_ERRORS, msgspec.MsgspecError, TypeError)


class PropertyValue(msgspec.Struct, frozen=True):
    """One reported value. A msgspec Struct: built in C, a 200-value batch builds 200 of them."""

    identifier: str
    value: Any
    time_ms: int | None = None  # from the {"value":..,"time":..} form, else None


class EventValue(msgspec.Struct, frozen=True):
    identifier: str
    params: dict[str, Any]
    time_ms: int | None = None


class AlinkRequest(msgspec.Struct, frozen=True):
    """One parsed request. A property post gives ``values`` (and ``times`` for the values that came with a
    time of their own), a batch post ``properties`` (one identifier may come many times), an event post
    ``event*``; ``events`` lists every event (batch too)."""

    id: str
    version: str
    method: str
    properties: list[PropertyValue] = msgspec.field(default_factory=list)
    event: str | None = None
    event_params: dict[str, Any] | None = None
    event_time_ms: int | None = None
    events: list[EventValue] = msgspec.field(default_factory=list)
    values: dict[str, Any] = msgspec.field(default_factory=dict)
    times: dict[str, int] = msgspec.field(default_factory=dict)
    checked: bool = False  # ``values`` were judged against the model already, and all accepted


class AlinkError(Exception):
    """The whole document is refused; ``request_id``/``method`` are filled when they could be read."""

    def __init__(self, code: int, message: str, request_id: str = "", method: str = "") -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.method = method


def _load(payload: bytes | bytearray | memoryview) -> dict[str, Any]:
    try:
        doc = _decode(without_trailing_nul(payload))  # the C SDK's trailing NUL
    except _LOAD_ERRORS:
        raise AlinkError(CODE_NOT_JSON, "payload is not JSON") from None
    if doc.__class__ is not dict:
        raise AlinkError(CODE_NOT_JSON, "payload is not a JSON object")
    return doc


def _id_text(v: Any) -> str:
    c = v.__class__
    if c is str:
        text: str = v
        return text
    if c is int:
        try:
            return str(v)
        except ValueError:  # more digits than str() allows
            return ""
    if c is float and v == v and v not in (float("inf"), float("-inf")):
        return str(int(v)) if v.is_integer() else repr(v)
    return ""


def _version_text(v: Any) -> str:
    if v.__class__ is str and v:
        return v
    if v.__class__ in (int, float) and -1e9 < v < 1e9:  # a number such as 1.0; NaN fails the test
        return str(v)
    return "1.0"


def _envelope(doc: dict[str, Any], expected_method: str) -> tuple[str, str, str, dict[str, Any]]:
    """(id, version, method, params) or AlinkError."""
    rid = _id_text(doc.get("id"))
    version = _version_text(doc.get("version"))
    method = doc.get("method")
    if method is not None and method != "" and method != expected_method:
        shown = method if method.__class__ is str and len(method) <= 80 else "(invalid)"
        raise AlinkError(
            CODE_METHOD_NOT_EXIST,
            f"method {shown} does not match the topic (expected {expected_method})",
            rid,
            expected_method,
        )
    params = doc.get("params")
    if params.__class__ is not dict:
        what = "missing" if params is None else "not a JSON object"
        raise AlinkError(CODE_PARAM_ERROR, f"params is {what}", rid, expected_method)
    return rid, version, expected_method, params


def _time_ms(t: Any, where: str, rid: str, method: str) -> int | None:
    c = t.__class__
    if t is None:
        return None
    if c is int and 0 <= t <= _INT64_MAX:
        ms: int = t
        return ms
    if c is float and t.is_integer() and 0 <= t <= _INT64_MAX:
        return int(t)
    if c is str and 0 < len(t) <= 19 and t.isascii() and t.isdigit():
        return int(t)
    raise AlinkError(CODE_PARAM_ERROR, f"{where}.time must be UTC milliseconds", rid, method)


def _is_wrapped(v: Any) -> bool:
    """The {"value": .., "time": ..} form (keys exactly value, or value and time)."""
    return v.__class__ is dict and "value" in v and (len(v) == 1 or (len(v) == 2 and "time" in v))


def parse_property_post(payload: bytes) -> AlinkRequest:
    """``thing.event.property.post``: the values by identifier, and the times given with some of them.

    Plain values (the usual post) are the decoded ``params`` themselves, handed on without a copy."""
    rid, version, method, params = _envelope(_load(payload), ALINK_METHOD_PROPERTY_POST)
    if len(params) > MAX_PROPERTIES:
        raise AlinkError(
            CODE_TOO_MANY_PROPERTIES, f"{len(params)} properties in one post; at most {MAX_PROPERTIES}", rid, method
        )
    values = params
    times: dict[str, int] = {}
    for k, v in params.items():
        if v.__class__ is dict and "value" in v and (len(v) == 1 or (len(v) == 2 and "time" in v)):
            if values is params:
                values = dict(params)
            values[k] = v["value"]
            t = v.get("time")
            if t is not None:
                times[k] = _time_ms(t, f"params.{k}", rid, method)  # type: ignore[assignment]
    return AlinkRequest(rid, version, method, values=values, times=times)


# A property post that conforms to its model in every respect (the common case by far) is decoded and judged
# in one pass, in C: a msgspec type per model, each property's type and bounds those its checker enforces.
# Anything else (a refused or unknown value, the {"value", "time"} form, an id of another type, a method that
# is not the topic's) makes that decode fail, and the document is parsed and judged the general way, which
# alone decides what is refused and says why. The accepted values are the checkers' (a double's int is a
# float); only their order may differ: the model's, not the document's.
_POST_DECODERS: dict[str, tuple[msgspec.json.Decoder[Any], tuple[tuple[str, int], ...]] | None] = {}
_POST_DECODERS_MAX = 1000


def _conforming_type(vt: ValueType) -> Any | None:
    """The msgspec type that accepts exactly what this property's checker accepts unchanged (or converts as
    the checker does); None for a type the fast path leaves to the checker."""
    if vt.type == "int":
        lo, hi = INT32_MIN if vt.lo is None else vt.lo, INT32_MAX if vt.hi is None else vt.hi
        return Annotated[int, msgspec.Meta(ge=lo, le=hi)]
    if vt.type in ("float", "double"):
        limit = FLOAT32_MAX if vt.type == "float" else DOUBLE_MAX
        lo, hi = -limit if vt.lo is None else vt.lo, limit if vt.hi is None else vt.hi
        return Annotated[float, msgspec.Meta(ge=lo, le=hi)]  # msgspec makes a JSON integer a float, as the checker
    if vt.type == "bool":
        return Literal[0, 1]  # true and false are normalized by the checker: left to it
    if vt.type == "enum" and vt.choices and all(c.__class__ is int for c in vt.choices):
        return Literal[vt.choices]
    if vt.type == "text" and vt.length is not None:
        return Annotated[str, msgspec.Meta(max_length=vt.length)]  # characters; the bytes are counted after
    return None


def _post_decoder(model: ThingModel) -> tuple[msgspec.json.Decoder[Any], tuple[tuple[str, int], ...]] | None:
    """The model's one-pass decoder of a conforming property post (built once per model version), and its text
    properties with their limits in bytes (msgspec counts characters)."""
    try:
        return _POST_DECODERS[model.version]
    except KeyError:
        pass
    decoder = None
    types = model.property_types
    if model.format == "tsl" and 0 < len(types) <= MAX_PROPERTIES:
        fields: list[tuple[str, Any, Any]] = []
        for vt in types.values():
            conforming = _conforming_type(vt)
            if conforming is None:
                fields = []
                break
            fields.append((f"p{len(fields)}", conforming | msgspec.UnsetType, msgspec.UNSET))
        if fields:
            rename = dict(zip([name for name, _, _ in fields], types, strict=True))
            params = msgspec.defstruct("ConformingParams", fields, rename=rename, forbid_unknown_fields=True)
            document = msgspec.defstruct("ConformingPropertyPost", [
                ("params", params), ("id", str | int | None, None), ("version", str | None, None),
                ("method", str | None, None)])
            texts = tuple((name, vt.length) for name, vt in types.items() if vt.type == "text" and vt.length)
            decoder = (msgspec.json.Decoder(document), texts)
    if len(_POST_DECODERS) >= _POST_DECODERS_MAX:
        _POST_DECODERS.clear()
    _POST_DECODERS[model.version] = decoder
    return decoder


def conforming_property_post(model: ThingModel, payload: bytes) -> AlinkRequest | None:
    """A property post every value of which ``model`` accepts as it stands, decoded and judged in one pass
    (``checked``); None when anything about it needs the general path (``parse_property_post``)."""
    compiled = _post_decoder(model)
    if compiled is None:
        return None
    decoder, texts = compiled
    try:
        doc = decoder.decode(without_trailing_nul(payload))
    except _LOAD_ERRORS:
        return None
    method = doc.method
    if method and method != ALINK_METHOD_PROPERTY_POST:
        return None
    values = msgspec.to_builtins(doc.params)
    for identifier, limit in texts:  # as the text checker: a string of at most limit / 4 characters always fits
        text = values.get(identifier)
        if text is not None and len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
            return None
    return AlinkRequest(_id_text(doc.id), doc.version or "1.0", ALINK_METHOD_PROPERTY_POST, values=values,
                        checked=True)


def _entries(v: Any, where: str, rid: str, method: str) -> list[tuple[Any, int | None]]:
    """A batch map value → [(value, time)]: a list of {"value","time"}, or one value tolerated."""
    if v.__class__ is list:
        out = []
        for i, e in enumerate(v):
            if not _is_wrapped(e):
                raise AlinkError(
                    CODE_PARAM_ERROR, f'{where}[{i}] must be {{"value": ..., "time": ...}}', rid, method
                )
            out.append((e["value"], _time_ms(e.get("time"), f"{where}[{i}]", rid, method)))
        return out
    if _is_wrapped(v):
        return [(v["value"], _time_ms(v.get("time"), where, rid, method))]
    return [(v, None)]


def _map_field(params: dict[str, Any], key: str, rid: str, method: str) -> dict[str, Any]:
    v = params.get(key)
    if v is None:
        return {}
    if v.__class__ is not dict:
        raise AlinkError(CODE_PARAM_ERROR, f"params.{key} is not a JSON object", rid, method)
    return v


def parse_batch_post(payload: bytes) -> AlinkRequest:
    """``thing.event.property.batch.post``: one PropertyValue per value, each with its own time."""
    rid, version, method, params = _envelope(_load(payload), ALINK_METHOD_PROPERTY_BATCH_POST)
    props_doc = _map_field(params, "properties", rid, method)
    events_doc = _map_field(params, "events", rid, method)
    props: list[PropertyValue] = []
    for k, v in props_doc.items():
        for value, t in _entries(v, f"params.properties.{k}", rid, method):
            props.append(PropertyValue(k, value, t))
        if len(props) > MAX_PROPERTIES:
            raise AlinkError(
                CODE_TOO_MANY_PROPERTIES,
                f"more than {MAX_PROPERTIES} property values in one batch post",
                rid,
                method,
            )
    events: list[EventValue] = []
    for k, v in events_doc.items():
        for value, t in _entries(v, f"params.events.{k}", rid, method):
            if value.__class__ is not dict:
                raise AlinkError(CODE_PARAM_ERROR, f"params.events.{k} value must be a JSON object", rid, method)
            events.append(EventValue(k, value, t))
        if len(events) > MAX_PROPERTIES:
            raise AlinkError(
                CODE_TOO_MANY_PROPERTIES, f"more than {MAX_PROPERTIES} events in one batch post", rid, method
            )
    return AlinkRequest(rid, version, method, props, events=events)


def parse_event_post(payload: bytes, event_identifier: str) -> AlinkRequest:
    """``thing.event.{id}.post``: params are the output data, plain or as {"value": {...}, "time": ...}."""
    rid, version, method, params = _envelope(
        _load(payload), ALINK_METHOD_EVENT_POST.format(id=event_identifier)
    )
    t: int | None = None
    if _is_wrapped(params):
        value = params["value"]
        if value.__class__ is not dict:
            raise AlinkError(CODE_PARAM_ERROR, "params.value must be a JSON object", rid, method)
        t = _time_ms(params.get("time"), "params", rid, method)
        params = value
    if len(params) > MAX_PROPERTIES:
        raise AlinkError(
            CODE_TOO_MANY_PROPERTIES, f"{len(params)} event parameters; at most {MAX_PROPERTIES}", rid, method
        )
    ev = EventValue(event_identifier, params, t)
    return AlinkRequest(rid, version, method, [], event_identifier, params, t, [ev])


def reply_document(
    request_id: str,
    method: str,
    code: int = 200,
    message: str = "success",
    data: dict[str, Any] | None = None,
    version: str = "1.0",
) -> dict[str, Any]:
    """The Alink reply, keys in Alibaba's order: code, data, id, message, method, version."""
    return {
        "code": code,
        "data": {} if data is None else data,
        "id": request_id,
        "message": message,
        "method": method,
        "version": version,
    }


def reply_for(request: AlinkRequest, refused: Sequence[PropertyError]) -> dict[str, Any]:
    """Reply to a parsed request: 200 when nothing was refused, else the first refusal's code."""
    if not refused:
        return reply_document(request.id, request.method, version=request.version)
    reasons = [r.reason for r in refused[:MAX_REASONS_IN_MESSAGE]]
    if len(refused) > MAX_REASONS_IN_MESSAGE:
        reasons.append(f"and {len(refused) - MAX_REASONS_IN_MESSAGE} more")
    data = {"refused": [{"identifier": r.identifier, "code": r.code, "reason": r.reason} for r in refused]}
    return reply_document(request.id, request.method, refused[0].code, "; ".join(reasons), data, request.version)


def reply_for_error(err: AlinkError, method: str = "", request_id: str = "") -> dict[str, Any]:
    """Reply to a refused document; the error's own id/method win when it could read them."""
    return reply_document(err.request_id or request_id, err.method or method, err.code, err.message)


def validate_request(
    model: ThingModel, request: AlinkRequest, received_ms: int
) -> tuple[dict[int, dict[str, Any]], list[EventValue], list[PropertyError]]:
    """Judge a parsed request against a model: (accepted values by time, accepted events, refused).

    A value's time is the device's when it gave a sane one, else ``received_ms``; a plain property post is
    one group. Accepted values are the checkers' normalized values (e.g. bool true → 1). Batch posts may
    carry one identifier many times, so each value is judged on its own there (two values of one property
    for the very same time: the later).
    """
    refused: list[PropertyError] = []
    groups: dict[int, dict[str, Any]] = {}
    if request.method == ALINK_METHOD_PROPERTY_POST:
        if request.checked:
            accepted = request.values
        else:
            accepted, refused = model.validate_properties(request.values)
        if not request.times:
            if accepted:
                groups[received_ms] = accepted
        else:
            times = request.times
            for identifier, value in accepted.items():
                groups.setdefault(sample_time(times.get(identifier), received_ms), {})[identifier] = value
    else:
        for p in request.properties:
            ok, bad = model.validate_properties({p.identifier: p.value})
            if bad:
                refused.extend(bad)
            else:
                groups.setdefault(sample_time(p.time_ms, received_ms), {})[p.identifier] = ok[p.identifier]
    events: list[EventValue] = []
    for e in request.events:
        ok, bad = model.validate_event(e.identifier, e.params)
        refused.extend(bad)
        if ok or not bad:
            events.append(EventValue(e.identifier, ok, e.time_ms))
    return groups, events, refused


# The system topics whose payload is Alink JSON judged against the product's model.
VALIDATED_KINDS = frozenset({TopicKind.PROPERTY_POST, TopicKind.PROPERTY_BATCH_POST, TopicKind.EVENT_POST})


def parse_report(topic: Topic, payload: bytes) -> AlinkRequest:
    """The request on a topic of ``VALIDATED_KINDS``; AlinkError, whose method is the topic's when the
    document did not say, when the document is refused."""
    try:
        if topic.kind is TopicKind.PROPERTY_POST:
            return parse_property_post(payload)
        if topic.kind is TopicKind.PROPERTY_BATCH_POST:
            return parse_batch_post(payload)
        assert topic.kind is TopicKind.EVENT_POST and topic.event is not None
        return parse_event_post(payload, topic.event)
    except AlinkError as err:
        if not err.method:
            err.method = _method_of(topic)
        raise


def _method_of(topic: Topic) -> str:
    if topic.kind is TopicKind.PROPERTY_POST:
        return ALINK_METHOD_PROPERTY_POST
    if topic.kind is TopicKind.PROPERTY_BATCH_POST:
        return ALINK_METHOD_PROPERTY_BATCH_POST
    return ALINK_METHOD_EVENT_POST.format(id=topic.event)
