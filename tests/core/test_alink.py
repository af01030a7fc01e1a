"""Alink JSON request parsing and reply documents (spec/aliyun-https.md, seed 004)."""

import json

import pytest

from thingport.core.alink import (
    ALINK_METHOD_PROPERTY_BATCH_POST,
    ALINK_METHOD_PROPERTY_POST,
    AlinkError,
    AlinkRequest,
    EventValue,
    PropertyValue,
    parse_batch_post,
    parse_event_post,
    parse_property_post,
    reply_document,
    reply_for,
    reply_for_error,
    validate_request,
)
from thingport.core.thingmodel import PropertyError, ThingModel

SEED_MODEL = ThingModel.from_tsl(
    {
        "properties": [
            {"identifier": "temperature", "accessMode": "r",
             "dataType": {"type": "int", "specs": {"min": "-10", "max": "50", "step": "1"}}},
            {"identifier": "humidity", "accessMode": "r",
             "dataType": {"type": "int", "specs": {"min": "1", "max": "100", "step": "1"}}},
        ],
        "events": [
            {"identifier": "alarm", "type": "alert",
             "outputData": [{"identifier": "level", "dataType": {"type": "int", "specs": {"min": "0", "max": "3"}}}]}
        ],
    }
)


def enc(doc) -> bytes:
    return json.dumps(doc).encode()


def error_of(fn, *args) -> AlinkError:
    with pytest.raises(AlinkError) as info:
        fn(*args)
    return info.value


# --- property post -----------------------------------------------------------------------------


def test_seed_004_payload_exact_shape():
    # The seed's Node client: JSON.stringify({id: Date.now(), params: {...}, method: ...}); no version.
    payload = b'{"id":1700000000000,"params":{"humidity":70,"temperature":20},"method":"thing.event.property.post"}'
    req = parse_property_post(payload)
    assert req == AlinkRequest(
        id="1700000000000",
        version="1.0",
        method="thing.event.property.post",
        values={"humidity": 70, "temperature": 20},
    )
    groups, events, refused = validate_request(SEED_MODEL, req, 1700000000500)
    assert refused == [] and events == []
    assert groups == {1700000000500: {"humidity": 70, "temperature": 20}}  # no time given: the receive time
    assert reply_for(req, refused) == {
        "code": 200,
        "data": {},
        "id": "1700000000000",
        "message": "success",
        "method": "thing.event.property.post",
        "version": "1.0",
    }


def test_plain_and_value_time_forms():
    req = parse_property_post(
        enc(
            {
                "id": "123",
                "version": "1.0",
                "sys": {"ack": 0},
                "params": {"Power": {"value": "on", "time": 1524448722000}, "WF": 23.6, "only": {"value": 1}},
                "method": "thing.event.property.post",
            }
        )
    )
    assert req.id == "123" and req.version == "1.0"
    assert req.values == {"Power": "on", "WF": 23.6, "only": 1}
    assert req.times == {"Power": 1524448722000}


def test_values_are_grouped_by_the_time_each_came_with() -> None:
    model = ThingModel.schemaless()
    received = 1524448800000
    req = parse_property_post(enc({"params": {
        "Power": {"value": "on", "time": 1524448722000}, "WF": 23.6, "only": {"value": 1},
        "late": {"value": 2, "time": 1524448722000}, "future": {"value": 3, "time": received + 25 * 3600_000},
    }}))
    groups, _, refused = validate_request(model, req, received)
    assert refused == []
    # a time more than 24 h ahead is not sane: the receive time instead
    assert groups == {1524448722000: {"Power": "on", "late": 2}, received: {"WF": 23.6, "only": 1, "future": 3}}


def test_plain_values_come_through_as_given_without_times() -> None:
    req = parse_property_post(enc({"params": {"a": 1, "b": [1, 2]}}))
    assert req.values == {"a": 1, "b": [1, 2]} and req.times == {} and req.properties == []


def test_struct_value_with_other_keys_is_not_unwrapped():
    req = parse_property_post(enc({"params": {"s": {"value": 1, "x": 2}, "t": {"value": 1, "time": 5, "y": 0}}}))
    assert req.values == {"s": {"value": 1, "x": 2}, "t": {"value": 1, "time": 5, "y": 0}} and req.times == {}


@pytest.mark.parametrize("t,expected", [(5, 5), (5.0, 5), ("1524448722000", 1524448722000), (None, None)])
def test_time_forms(t, expected):
    req = parse_property_post(enc({"params": {"a": {"value": 1, "time": t}}}))
    assert req.values == {"a": 1} and req.times.get("a") == expected


@pytest.mark.parametrize("t", [-1, 1.5, "abc", "", True, [1], {"t": 1}])
def test_bad_time_is_param_error(t):
    err = error_of(parse_property_post, enc({"id": "9", "params": {"a": {"value": 1, "time": t}}}))
    assert err.code == 460 and "params.a.time" in err.message and err.request_id == "9"


def test_missing_or_empty_method_comes_from_the_topic():
    for doc in ({"id": "1", "params": {"a": 1}}, {"id": "1", "params": {"a": 1}, "method": ""}):
        req = parse_property_post(enc(doc))
        assert req.method == ALINK_METHOD_PROPERTY_POST and req.version == "1.0"


@pytest.mark.parametrize("method", ["thing.event.property.batch.post", "thing.service.property.set", 5, ["x"]])
def test_method_not_matching_topic_is_6300(method):
    err = error_of(parse_property_post, enc({"id": 7, "params": {"a": 1}, "method": method}))
    assert err.code == 6300 and err.request_id == "7" and err.method == ALINK_METHOD_PROPERTY_POST
    assert "does not match the topic" in err.message


@pytest.mark.parametrize(
    "raw_id,expected",
    [(b"1700000000000", "1700000000000"), (b'"abc"', "abc"), (b"1.7e12", "1700000000000"), (b"0.5", "0.5"),
     (b"null", ""), (b"true", ""), (b'{"x":1}', ""), (b"1" + b"0" * 60, "1" + "0" * 60)],
    ids=["int", "str", "float", "fraction", "null", "bool", "object", "huge"],
)
def test_id_is_text(raw_id, expected):
    assert parse_property_post(b'{"id":' + raw_id + b',"params":{}}').id == expected


def test_absurdly_long_number_is_not_json():
    assert error_of(parse_property_post, b'{"id":1' + b"0" * 5000 + b',"params":{}}').code == 6207


def test_absent_id_and_version_forms():
    assert parse_property_post(b'{"params":{}}').id == ""
    assert parse_property_post(b'{"params":{},"version":"2.0"}').version == "2.0"
    assert parse_property_post(b'{"params":{},"version":1.0}').version == "1.0"
    assert parse_property_post(b'{"params":{},"version":null}').version == "1.0"


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"", b"{", b"[1,2]", b'"x"', b"42", b'{"params":{"a":NaN}}', b'{"a":"\xff"}', b"\xef\xbb\xbf{}"],
)
def test_not_json_or_not_object_is_6207(payload):
    for parse in (parse_property_post, parse_batch_post):
        assert error_of(parse, payload).code == 6207
    assert error_of(parse_event_post, payload, "alarm").code == 6207


@pytest.mark.parametrize("doc", [{"id": "1"}, {"id": "1", "params": [1]}, {"id": "1", "params": "x"},
                                 {"id": "1", "params": None}])
def test_params_missing_or_not_object_is_460(doc):
    err = error_of(parse_property_post, enc(doc))
    assert err.code == 460 and err.request_id == "1"


def test_200_properties_ok_201_refused():
    params = {f"p{i}": i for i in range(200)}
    assert len(parse_property_post(enc({"params": params})).values) == 200
    params["p200"] = 200
    err = error_of(parse_property_post, enc({"id": "x", "params": params}))
    assert err.code == 6106 and "201" in err.message and err.request_id == "x"


# --- batch post ------------------------------------------------------------------------------

ALIBABA_BATCH = {
    "id": "123",
    "version": "1.0",
    "sys": {"ack": 0},
    "method": "thing.event.property.batch.post",
    "params": {
        "properties": {
            "Power": [{"value": "on", "time": 1524448722000}, {"value": "off", "time": 1524448722001}],
            "WF": [{"value": 3, "time": 1524448722000}, {"value": 4, "time": 1524448722009}],
        },
        "events": {
            "alarmEvent": [
                {"value": {"Power": "on", "WF": "2"}, "time": 1524448722000},
                {"value": {"Power": "on", "WF": "2"}, "time": 1524448722000},
            ]
        },
    },
}


def test_batch_alibaba_example():
    req = parse_batch_post(enc(ALIBABA_BATCH))
    assert req.method == ALINK_METHOD_PROPERTY_BATCH_POST and req.id == "123"
    assert req.properties == [
        PropertyValue("Power", "on", 1524448722000),
        PropertyValue("Power", "off", 1524448722001),
        PropertyValue("WF", 3, 1524448722000),
        PropertyValue("WF", 4, 1524448722009),
    ]
    assert req.events == [EventValue("alarmEvent", {"Power": "on", "WF": "2"}, 1524448722000)] * 2
    assert req.event is None and req.event_params is None


def test_batch_tolerates_single_entries_and_missing_sections():
    req = parse_batch_post(enc({"params": {"properties": {"a": {"value": 1, "time": 2}, "b": 5}}}))
    assert req.properties == [PropertyValue("a", 1, 2), PropertyValue("b", 5, None)] and req.events == []
    assert parse_batch_post(enc({"params": {}})).properties == []
    assert parse_batch_post(enc({"params": {"events": {"e": {"x": 1}}}})).events == [EventValue("e", {"x": 1})]


def test_batch_limit_counts_values():
    ok = {"a": [{"value": i, "time": i} for i in range(100)], "b": [{"value": i, "time": i} for i in range(100)]}
    assert len(parse_batch_post(enc({"params": {"properties": ok}})).properties) == 200
    ok["c"] = [{"value": 0, "time": 0}]
    assert error_of(parse_batch_post, enc({"params": {"properties": ok}})).code == 6106
    events = {"e": [{"value": {}, "time": 0}] * 201}
    assert error_of(parse_batch_post, enc({"params": {"events": events}})).code == 6106


@pytest.mark.parametrize(
    "params,where",
    [
        ({"properties": {"a": [1, 2]}}, "params.properties.a[0]"),
        ({"properties": {"a": [{"value": 1, "time": "x"}]}}, "params.properties.a[0].time"),
        ({"properties": [1]}, "params.properties"),
        ({"events": {"e": [{"value": 5, "time": 1}]}}, "params.events.e"),
        ({"events": "x"}, "params.events"),
    ],
)
def test_batch_malformed_is_460(params, where):
    err = error_of(parse_batch_post, enc({"params": params}))
    assert err.code == 460 and where in err.message


def test_batch_method_must_match():
    assert error_of(parse_batch_post, enc(dict(ALIBABA_BATCH, method=ALINK_METHOD_PROPERTY_POST))).code == 6300


def test_batch_validation_judges_each_value():
    req = parse_batch_post(
        enc({"params": {"properties": {"temperature": [{"value": 20, "time": 1}, {"value": 60, "time": 2}]}}})
    )
    groups, events, refused = validate_request(SEED_MODEL, req, 1000)
    assert groups == {1: {"temperature": 20}}
    assert [(e.identifier, e.code) for e in refused] == [("temperature", 6306)]


# --- event post ------------------------------------------------------------------------------


def test_event_post_plain_params():
    req = parse_event_post(enc({"id": 5, "params": {"level": 2}, "method": "thing.event.alarm.post"}), "alarm")
    assert (req.id, req.method, req.event, req.event_params, req.event_time_ms) == (
        "5", "thing.event.alarm.post", "alarm", {"level": 2}, None
    )
    assert req.properties == [] and req.events == [EventValue("alarm", {"level": 2}, None)]


def test_event_post_value_time_form():
    req = parse_event_post(enc({"params": {"value": {"level": 1}, "time": 1524448722000}}), "alarm")
    assert req.event_params == {"level": 1} and req.event_time_ms == 1524448722000
    assert req.method == "thing.event.alarm.post"


def test_event_post_errors():
    wrong_method = enc({"params": {"level": 1}, "method": "thing.event.fire.post"})
    assert error_of(parse_event_post, wrong_method, "alarm").code == 6300
    assert error_of(parse_event_post, enc({"params": {"value": 3}}), "alarm").code == 460
    assert error_of(parse_event_post, enc({"params": [1]}), "alarm").code == 460
    assert error_of(parse_event_post, enc({"params": {f"p{i}": i for i in range(201)}}), "alarm").code == 6106


def test_event_validation():
    good = parse_event_post(enc({"params": {"level": 2}}), "alarm")
    assert validate_request(SEED_MODEL, good, 1000) == ({}, [EventValue("alarm", {"level": 2}, None)], [])
    bad = parse_event_post(enc({"params": {"level": 9}}), "alarm")
    _, events, refused = validate_request(SEED_MODEL, bad, 1000)
    assert events == [] and refused[0].identifier == "alarm.level" and refused[0].code == 6306
    unknown = parse_event_post(enc({"params": {"level": 1}}), "fire")
    _, events, refused = validate_request(SEED_MODEL, unknown, 1000)
    assert events == [] and refused[0].code == 6300
    assert reply_for(unknown, refused)["code"] == 6300


# --- replies ---------------------------------------------------------------------------------


def test_reply_document_shape_and_order():
    doc = reply_document("123", "thing.event.property.post")
    assert doc == {"code": 200, "data": {}, "id": "123", "message": "success",
                   "method": "thing.event.property.post", "version": "1.0"}
    assert list(doc) == ["code", "data", "id", "message", "method", "version"]
    assert json.dumps(doc, separators=(",", ":")) == (
        '{"code":200,"data":{},"id":"123","message":"success","method":"thing.event.property.post","version":"1.0"}'
    )
    assert reply_document("1", "m", 460, "params is missing", {"k": 1}, "2.0") == {
        "code": 460, "data": {"k": 1}, "id": "1", "message": "params is missing", "method": "m", "version": "2.0"
    }


def test_reply_for_partly_refused_report():
    req = parse_property_post(enc({"id": "42", "params": {"humidity": 70, "temperature": 51, "x": 1}}))
    groups, _, refused = validate_request(SEED_MODEL, req, 1000)
    assert groups == {1000: {"humidity": 70}}
    reply = reply_for(req, refused)
    assert reply["code"] == 6306 and reply["id"] == "42" and reply["method"] == ALINK_METHOD_PROPERTY_POST
    assert reply["message"] == "temperature: 51 is above max 50; x: not defined in the thing model"
    assert reply["data"] == {
        "refused": [
            {"identifier": "temperature", "code": 6306, "reason": "temperature: 51 is above max 50"},
            {"identifier": "x", "code": 6304, "reason": "x: not defined in the thing model"},
        ]
    }


def test_reply_message_is_capped_data_is_complete():
    req = parse_property_post(enc({"params": {}}))
    refused = [PropertyError(f"p{i}", 6304, f"p{i}: not defined in the thing model") for i in range(13)]
    reply = reply_for(req, refused)
    assert reply["message"].count("not defined") == 10 and reply["message"].endswith("; and 3 more")
    assert len(reply["data"]["refused"]) == 13 and reply["code"] == 6304


def test_reply_for_error():
    err = error_of(parse_property_post, b"nope")
    assert reply_for_error(err, ALINK_METHOD_PROPERTY_POST, "") == {
        "code": 6207, "data": {}, "id": "", "message": "payload is not JSON",
        "method": ALINK_METHOD_PROPERTY_POST, "version": "1.0",
    }
    err = error_of(parse_property_post, enc({"id": 77, "params": {f"p{i}": 1 for i in range(201)}}))
    reply = reply_for_error(err)
    assert (reply["code"], reply["id"], reply["method"]) == (6106, "77", ALINK_METHOD_PROPERTY_POST)


def test_schemaless_keeps_everything():
    req = parse_property_post(enc({"params": {"anything": {"a": 1}, "b": True}}))
    groups, _, refused = validate_request(ThingModel.schemaless(), req, 1000)
    assert refused == [] and list(groups[1000].items()) == [("anything", {"a": 1}), ("b", True)]


def test_deep_nesting_is_not_json():
    assert error_of(parse_property_post, b'{"params":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}").code == 6207


def test_request_records_stay_frozen_value_objects():
    pv = PropertyValue("a", 1)
    assert pv == PropertyValue("a", 1, None) and pv.time_ms is None
    with pytest.raises(AttributeError):
        pv.value = 2  # type: ignore[misc]
    r1, r2 = AlinkRequest("1", "1.0", "m", []), AlinkRequest(id="1", version="1.0", method="m", properties=[])
    assert r1 == r2 and r1.events == [] and r1.events is not r2.events
    with pytest.raises(AttributeError):
        r1.id = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        AlinkRequest("1")  # type: ignore[call-arg]


def test_batch_values_of_one_property_for_the_same_time_keep_the_later() -> None:
    req = parse_batch_post(enc({"params": {"properties": {"a": [{"value": 1, "time": 5}, {"value": 2, "time": 5},
                                                                 {"value": 3, "time": 6}], "b": 7}}}))
    groups, _, refused = validate_request(ThingModel.schemaless(), req, 1000)
    assert refused == [] and groups == {5: {"a": 2}, 6: {"a": 3}, 1000: {"b": 7}}
