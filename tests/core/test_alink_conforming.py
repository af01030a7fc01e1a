"""The one-pass decode of a conforming property post (``alink.conforming_property_post``): it takes only what
the general path (parse, then the model's checkers) accepts whole, and then gives the same request and values."""

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from thingport.core.alink import (
    ALINK_METHOD_PROPERTY_POST,
    AlinkError,
    conforming_property_post,
    parse_property_post,
    validate_request,
)
from thingport.core.thingmodel import ThingModel


def prop(identifier: str, data_type: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": identifier, "accessMode": "r", "dataType": data_type}


MODEL = ThingModel.from_tsl({"properties": [
    prop("count", {"type": "int", "specs": {"min": "-5", "max": "100"}}),
    prop("wide", {"type": "int", "specs": {}}),
    prop("temp", {"type": "double", "specs": {"min": "-10.5", "max": "60"}}),
    prop("ratio", {"type": "float", "specs": {}}),
    prop("relay", {"type": "bool", "specs": {"0": "off", "1": "on"}}),
    prop("mode", {"type": "enum", "specs": {"0": "idle", "2": "run", "7": "fault"}}),
    prop("name", {"type": "text", "specs": {"length": "12"}}),
    prop("class", {"type": "int", "specs": {"min": "0", "max": "1"}}),  # a Python keyword as identifier
]})


def general(model: ThingModel, payload: bytes) -> tuple[Any, ...] | None:
    """What the general path makes of a property post: (id, version, accepted values) when it accepted
    every value, else None."""
    try:
        request = parse_property_post(payload)
    except AlinkError:
        return None
    groups, _, refused = validate_request(model, request, 1_000)
    if refused:
        return None
    return request.id, request.version, groups.get(1_000, {}), request.times


def one_pass(model: ThingModel, payload: bytes) -> tuple[Any, ...] | None:
    request = conforming_property_post(model, payload)
    if request is None:
        return None
    assert request.checked and request.method == ALINK_METHOD_PROPERTY_POST
    groups, _, refused = validate_request(model, request, 1_000)
    assert refused == []
    return request.id, request.version, groups.get(1_000, {}), request.times


def test_a_conforming_post_is_decoded_and_judged_in_one_pass() -> None:
    payload = json.dumps({"id": 42, "version": "1.0", "method": ALINK_METHOD_PROPERTY_POST, "params": {
        "count": 3, "temp": 21, "relay": 1, "mode": 7, "name": "ab", "class": 0}}).encode()
    request = conforming_property_post(MODEL, payload)
    assert request is not None and request.checked
    assert request.id == "42"
    values = request.values
    assert values == {"count": 3, "temp": 21.0, "relay": 1, "mode": 7, "name": "ab", "class": 0}
    assert values["temp"].__class__ is float  # a double's integer becomes a float, as its checker makes it
    assert one_pass(MODEL, payload) == general(MODEL, payload)


def test_text_is_limited_in_bytes_as_its_checker_limits_it() -> None:
    for text in ("x" * 12, "\u00e9" * 6, "\u4e2d" * 4):  # 12 bytes each: as long as the limit allows
        payload = json.dumps({"params": {"name": text}}, ensure_ascii=False).encode()
        assert one_pass(MODEL, payload) == general(MODEL, payload) == ("", "1.0", {"name": text}, {})


def test_the_sdk_trailing_nul_and_absent_envelope_fields() -> None:
    payload = b'{"params":{"count":1}}\x00'
    assert one_pass(MODEL, payload) == general(MODEL, payload) == ("", "1.0", {"count": 1}, {})


def test_whatever_the_checkers_would_refuse_or_convert_goes_the_general_way() -> None:
    for params in ({"count": 101}, {"count": 1.0}, {"count": True}, {"relay": True}, {"relay": 2}, {"mode": 1},
                   {"name": "x" * 13}, {"name": "\u00e9" * 7}, {"unknown": 1},
                   {"temp": {"value": 1, "time": 5}}, {"temp": "1"}):
        payload = json.dumps({"params": params}).encode()
        assert conforming_property_post(MODEL, payload) is None, params
    for doc in ({"params": {}, "method": "thing.event.other.post"}, {"params": {}, "id": 1.5},
                {"params": {}, "version": 1.0}, {"params": []}, {"id": "1"}, []):
        assert conforming_property_post(MODEL, json.dumps(doc).encode()) is None, doc
    assert conforming_property_post(MODEL, b"not json") is None


def test_models_the_one_pass_cannot_judge_have_none() -> None:
    dated = ThingModel.from_tsl({"properties": [prop("at", {"type": "date", "specs": {}})]})
    assert conforming_property_post(dated, b'{"params":{"at":"1"}}') is None
    assert conforming_property_post(ThingModel.schemaless(), b'{"params":{"a":1}}') is None


_values = st.one_of(st.integers(-10, 2**40), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                    st.text(max_size=14), st.none(), st.just({"value": 1}), st.lists(st.integers(), max_size=2))
_names = st.sampled_from(["count", "wide", "temp", "ratio", "relay", "mode", "name", "class", "other"])
_ids = st.one_of(st.text(max_size=4), st.integers(-5, 2**70), st.floats(allow_nan=False), st.none(), st.booleans())


@settings(max_examples=400, deadline=None)
@given(params=st.dictionaries(_names, _values, max_size=9), rid=_ids,
       version=st.one_of(st.none(), st.text(max_size=3), st.integers(-3, 3)),
       method=st.sampled_from([None, "", ALINK_METHOD_PROPERTY_POST, "thing.event.x.post"]))
def test_the_one_pass_never_disagrees_with_the_general_path(params: dict[str, Any], rid: Any, version: Any,
                                                            method: Any) -> None:
    doc: dict[str, Any] = {"params": params, "id": rid, "version": version, "method": method}
    payload = json.dumps(doc).encode()
    fast = one_pass(MODEL, payload)
    if fast is not None:
        assert fast == general(MODEL, payload)
