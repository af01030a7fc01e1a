"""Thing model import, export and value validation (spec/tsl.md)."""

import copy
import re

import pytest

from thingport.core.thingmodel import (
    CODE_ARRAY,
    PropertyError,
    ThingModel,
    ThingModelError,
    require_sections,
)


def prop(ident, type_, specs=None, access="r"):
    dt = {"type": type_}
    if specs is not None:
        dt["specs"] = specs
    return {"identifier": ident, "name": ident, "accessMode": access, "required": False, "dataType": dt}


def model(*props, events=None, services=None):
    doc = {"schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json", "profile": {"productKey": "pk"}}
    doc["properties"] = list(props)
    doc["events"] = events or []
    doc["services"] = services or []
    return ThingModel.from_tsl(doc)


def one(m, ident, value):
    """(accepted?, accepted value or the PropertyError)."""
    ok, bad = m.validate_properties({ident: value})
    if bad:
        assert ok == {} and len(bad) == 1
        return False, bad[0]
    return True, ok[ident]


def refused(m, ident, value, code):
    accepted, err = one(m, ident, value)
    assert not accepted, f"{value!r} was accepted"
    assert err.code == code, err
    assert err.reason.startswith(err.identifier + ": ")
    return err


def accepted(m, ident, value):
    ok, v = one(m, ident, value)
    assert ok, v
    return v


# --- seed 004: temperature int32 -10..50 step 1, humidity int32 1..100, read-only ---------------

SEED_TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "a1xxx"},
    "properties": [
        {
            "identifier": "temperature",
            "name": "Temperature",
            "accessMode": "r",
            "required": False,
            "dataType": {"type": "int", "specs": {"min": "-10", "max": "50", "step": "1", "unit": "°C"}},
        },
        {
            "identifier": "humidity",
            "name": "Humidity",
            "accessMode": "r",
            "required": False,
            "dataType": {"type": "int", "specs": {"min": "1", "max": "100", "step": "1"}},
        },
    ],
    "events": [
        {
            "identifier": "post",
            "name": "post",
            "type": "info",
            "required": True,
            "method": "thing.event.property.post",
            "outputData": [
                {"identifier": "temperature", "name": "Temperature", "dataType": {"type": "int", "specs": {}}},
            ],
        }
    ],
    "services": [
        {"identifier": "set", "name": "set", "callType": "async", "method": "thing.service.property.set",
         "inputData": [], "outputData": []},
        {"identifier": "get", "name": "get", "callType": "async", "method": "thing.service.property.get",
         "inputData": ["temperature", "humidity"], "outputData": []},
    ],
}


def test_seed_004_model_accepts_the_seed_report():
    m = ThingModel.from_tsl(SEED_TSL)
    assert m.property_names == frozenset({"temperature", "humidity"})
    assert m.event_identifiers == frozenset()  # the platform's own "post" event is not a device event
    assert m.validate_properties({"humidity": 70, "temperature": 20}) == ({"humidity": 70, "temperature": 20}, [])


@pytest.mark.parametrize("value,ok", [(-11, False), (-10, True), (20, True), (50, True), (51, False)])
def test_seed_temperature_bounds(value, ok):
    m = ThingModel.from_tsl(SEED_TSL)
    if ok:
        assert accepted(m, "temperature", value) == value
    else:
        err = refused(m, "temperature", value, 6306)
        assert err.identifier == "temperature"


def test_seed_reasons_name_property_and_rule():
    m = ThingModel.from_tsl(SEED_TSL)
    assert refused(m, "temperature", 51, 6306).reason == "temperature: 51 is above max 50"
    assert refused(m, "temperature", -11, 6306).reason == "temperature: -11 is below min -10"
    assert refused(m, "humidity", 0, 6306).reason == "humidity: 0 is below min 1"
    assert refused(m, "humidity", 101, 6306).reason == "humidity: 101 is above max 100"
    assert accepted(m, "humidity", 1) == 1 and accepted(m, "humidity", 100) == 100


def test_one_bad_property_refuses_only_itself():
    m = ThingModel.from_tsl(SEED_TSL)
    ok, bad = m.validate_properties({"humidity": 70, "temperature": 99, "pressure": 3})
    assert ok == {"humidity": 70}
    assert [(e.identifier, e.code) for e in bad] == [("temperature", 6306), ("pressure", 6304)]
    assert bad[1].reason == "pressure: not defined in the thing model"


# --- int ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,ok",
    [(2147483647, True), (2147483648, False), (-2147483648, True), (-2147483649, False), (0, True)],
)
def test_int32_range_without_min_max(value, ok):
    m = model(prop("n", "int", {}))
    if ok:
        assert accepted(m, "n", value) == value
    else:
        assert "int32" in refused(m, "n", value, 6306).reason


@pytest.mark.parametrize("value", [True, False, 21.0, 21.5, "21", None, [21], {"v": 21}])
def test_int_refuses_non_integers_including_bool_and_integral_float(value):
    m = model(prop("n", "int", {"min": "-10", "max": "50"}))
    assert "is not an integer" in refused(m, "n", value, 6306).reason


def test_int_min_max_accept_numbers_and_numeric_strings():
    m = model(prop("a", "int", {"min": -5, "max": 5.0}), prop("b", "int", {"min": " 1 ", "max": "1e1"}))
    assert accepted(m, "a", -5) == -5 and refused(m, "a", 6, 6306)
    assert accepted(m, "b", 10) == 10 and refused(m, "b", 11, 6306) and refused(m, "b", 0, 6306)


# --- float / double ---------------------------------------------------------------------------


@pytest.mark.parametrize("type_,code", [("float", 6307), ("double", 6322)])
def test_float_and_double_bounds(type_, code):
    m = model(prop("x", type_, {"min": "-1.5", "max": "2.5", "step": "0.1"}))
    assert accepted(m, "x", -1.5) == -1.5
    assert accepted(m, "x", 2.5) == 2.5
    assert refused(m, "x", -1.6, code).reason == "x: -1.6 is below min -1.5"
    assert refused(m, "x", 2.51, code).reason == "x: 2.51 is above max 2.5"
    v = accepted(m, "x", 1)  # a JSON integer is a number
    assert v == 1.0 and type(v) is float


@pytest.mark.parametrize("type_,code", [("float", 6307), ("double", 6322)])
@pytest.mark.parametrize("value", [True, False, "1.5", None, float("nan"), float("inf"), float("-inf"), [1.0]])
def test_float_and_double_refuse_non_numbers(type_, code, value):
    m = model(prop("x", type_, {}))
    refused(m, "x", value, code)


def test_float_is_single_precision_double_is_not():
    m = model(prop("f", "float", {}), prop("d", "double", {}))
    assert accepted(m, "f", 3.4e38) == 3.4e38
    assert "float range" in refused(m, "f", 3.5e38, 6307).reason
    assert accepted(m, "d", 3.5e38) == 3.5e38
    assert accepted(m, "d", -1e308) == -1e308
    assert accepted(m, "d", 10**300) == 1e300  # an integer within range is a number too


# --- bool ------------------------------------------------------------------------------------


def test_bool_accepts_0_1_and_json_booleans():
    m = model(prop("on", "bool", {"0": "off", "1": "on"}))
    assert accepted(m, "on", 0) == 0 and accepted(m, "on", 1) == 1
    assert accepted(m, "on", True) == 1 and accepted(m, "on", False) == 0


@pytest.mark.parametrize("value", [2, -1, 1.0, 0.0, "1", "true", None])
def test_bool_refuses_other_values(value):
    m = model(prop("on", "bool", {"0": "off", "1": "on"}))
    assert refused(m, "on", value, 6308).reason.endswith("is not 0 or 1")


# --- enum ------------------------------------------------------------------------------------


def test_enum_key_must_be_one_of_the_keys():
    m = model(prop("color", "enum", {"0": "red", "1": "blue", "2": "green"}))
    assert accepted(m, "color", 0) == 0 and accepted(m, "color", 2) == 2
    assert refused(m, "color", 3, 6309).reason == "color: 3 is not one of the enum keys 0, 1, 2"
    refused(m, "color", -1, 6309)
    for value in (True, "1", 1.0, None):
        assert "not an integer enum key" in refused(m, "color", value, 6309).reason


# --- text ------------------------------------------------------------------------------------


def test_text_length_exactly_and_one_over():
    m = model(prop("s", "text", {"length": "5"}))
    assert accepted(m, "s", "abcde") == "abcde"
    assert refused(m, "s", "abcdef", 6310).reason == "s: text of 6 bytes is longer than length 5"
    assert accepted(m, "s", "") == ""


def test_text_length_counts_utf8_bytes():
    m = model(prop("s", "text", {"length": "5"}))
    assert accepted(m, "s", "éé") == "éé"  # 4 bytes
    assert "6 bytes" in refused(m, "s", "ééé", 6310).reason  # 3 characters, 6 bytes
    assert accepted(m, "s", "温") == "温"  # 3 bytes
    refused(m, "s", "温度", 6310)  # 6 bytes


def test_text_default_length_is_10240():
    m = model(prop("s", "text"))
    assert accepted(m, "s", "a" * 10240)
    refused(m, "s", "a" * 10241, 6310)
    big = model(prop("s", "text", {"length": "10240"}))
    assert accepted(big, "s", "é" * 5120) and refused(big, "s", "é" * 5120 + "a", 6310)


@pytest.mark.parametrize("value", [1, True, None, ["a"], {"a": 1}])
def test_text_refuses_non_strings(value):
    assert "is not a string" in refused(model(prop("s", "text", {"length": "64"})), "s", value, 6310).reason


# --- date ------------------------------------------------------------------------------------


def test_date_numeric_string_and_integer():
    m = model(prop("at", "date", {}))
    assert accepted(m, "at", "1635839462000") == "1635839462000"
    assert accepted(m, "at", 1635839462000) == "1635839462000"  # stored as the string form
    assert accepted(m, "at", "0") == "0"


@pytest.mark.parametrize(
    "value", ["abc", "", "-1", "1635839462000.5", " 1635839462000", "１２３", "1" * 20, 1.5, -1, True, None]
)
def test_date_refuses_non_numeric(value):
    m = model(prop("at", "date", {}))
    refused(m, "at", value, 6311)


# --- struct ----------------------------------------------------------------------------------

COLOR = prop(
    "color",
    "struct",
    [
        {"identifier": "r", "name": "r", "dataType": {"type": "int", "specs": {"min": "0", "max": "255"}}},
        {"identifier": "label", "name": "label", "dataType": {"type": "text", "specs": {"length": "8"}}},
        {"identifier": "on", "name": "on", "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
    ],
)


def test_struct_members_checked_by_their_own_type():
    m = model(COLOR)
    assert accepted(m, "color", {"r": 255, "label": "red", "on": True}) == {"r": 255, "label": "red", "on": 1}
    assert accepted(m, "color", {"r": 0}) == {"r": 0}  # members may be omitted
    err = refused(m, "color", {"r": 256, "label": "red"}, 6312)
    assert err.identifier == "color.r" and err.reason == "color.r: 256 is above max 255"
    assert refused(m, "color", {"r": 1, "label": 5}, 6312).identifier == "color.label"


def test_struct_unknown_member_and_non_object_refused():
    m = model(COLOR)
    err = refused(m, "color", {"r": 1, "alpha": 3}, 6312)
    assert err.identifier == "color.alpha" and "not defined in the struct" in err.reason
    assert "not an object" in refused(m, "color", [1, 2], 6312).reason
    refused(m, "color", "red", 6312)


def member(ident, type_="int", specs=None):
    return {"identifier": ident, "name": ident, "dataType": {"type": type_, "specs": specs or {}}}


def test_nested_struct_refused_at_import():
    inner = member("inner", "struct", [member("x")])
    with pytest.raises(ThingModelError, match="nested struct"):
        model(prop("s", "struct", [inner]))
    with pytest.raises(ThingModelError, match="cannot be of type array"):
        model(prop("s", "struct", [member("a", "array", {"size": "2", "item": {"type": "int"}})]))


def test_struct_member_count_limits():
    assert model(prop("s", "struct", [member(f"m{i}") for i in range(50)]))
    with pytest.raises(ThingModelError, match="at most 50 members"):
        model(prop("s", "struct", [member(f"m{i}") for i in range(51)]))
    with pytest.raises(ThingModelError, match="1-50 members"):
        model(prop("s", "struct", []))
    with pytest.raises(ThingModelError, match="duplicate struct member"):
        model(prop("s", "struct", [member("a"), member("a")]))


# --- array -----------------------------------------------------------------------------------


def test_array_size_and_items():
    m = model(prop("a", "array", {"size": "3", "item": {"type": "int", "specs": {"min": "0"}}}))
    assert accepted(m, "a", [1, 2, 3]) == [1, 2, 3]
    assert accepted(m, "a", []) == []
    err = refused(m, "a", [1, 2, 3, 4], CODE_ARRAY)
    assert err.reason == "a: 4 items exceed the array size 3"
    err = refused(m, "a", [1, "x"], CODE_ARRAY)
    assert err.identifier == "a[1]" and "not an integer" in err.reason
    assert refused(m, "a", [1, -1], CODE_ARRAY).reason == "a[1]: -1 is below min 0"
    assert "not an array" in refused(m, "a", {"0": 1}, CODE_ARRAY).reason
    refused(m, "a", 5, CODE_ARRAY)


def test_array_of_struct_reports_item_and_member():
    m = model(prop("pts", "array", {"size": "2", "item": {"type": "struct", "specs": [member("x"), member("y")]}}))
    assert accepted(m, "pts", [{"x": 1, "y": 2}]) == [{"x": 1, "y": 2}]
    err = refused(m, "pts", [{"x": 1}, {"x": "1"}], CODE_ARRAY)
    assert err.identifier == "pts[1].x"
    assert refused(m, "pts", [{"z": 1}], CODE_ARRAY).identifier == "pts[0].z"


@pytest.mark.parametrize("type_", ["float", "double", "text"])
def test_array_item_types_allowed(type_):
    m = model(prop("a", "array", {"size": "2", "item": {"type": type_}}))
    value = ["x", "y"] if type_ == "text" else [1.5, 2.5]
    assert accepted(m, "a", value) == value


@pytest.mark.parametrize("size,ok", [("0", False), ("1", True), ("512", True), ("513", False), (None, False)])
def test_array_size_limits_at_import(size, ok):
    specs = {"item": {"type": "int"}} | ({} if size is None else {"size": size})
    if ok:
        m = model(prop("a", "array", specs))
        n = int(size)
        assert accepted(m, "a", [0] * n) and refused(m, "a", [0] * (n + 1), CODE_ARRAY)
    else:
        with pytest.raises(ThingModelError, match="size"):
            model(prop("a", "array", specs))


@pytest.mark.parametrize("item_type", ["bool", "enum", "date", "array"])
def test_array_item_type_refused_at_import(item_type):
    with pytest.raises(ThingModelError, match="array item type"):
        model(prop("a", "array", {"size": "2", "item": {"type": item_type}}))


# --- model import errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "ident,match",
    [
        ("temp-1", "only letters, digits and _"),
        ("temp 1", "only letters, digits and _"),
        ("温度", "only letters, digits and _"),
        ("", "only letters, digits and _"),
        ("a" * 51, "longer than 50"),
        (5, "must be a string"),
        (None, "must be a string"),
    ]
    + [(w, "reserved") for w in ("set", "get", "post", "property", "event", "time", "value")],
)
def test_bad_identifiers_refused(ident, match):
    with pytest.raises(ThingModelError, match=match):
        model(prop(ident, "int"))


def test_identifier_of_50_characters_is_fine():
    m = model(prop("a" * 50, "int"), prop("Time_2", "int"))
    assert m.property_names == {"a" * 50, "Time_2"}


def test_enum_key_count_limit():
    assert model(prop("e", "enum", {str(i): f"v{i}" for i in range(100)}))
    with pytest.raises(ThingModelError, match="at most 100 keys"):
        model(prop("e", "enum", {str(i): f"v{i}" for i in range(101)}))
    with pytest.raises(ThingModelError, match="at least one key"):
        model(prop("e", "enum", {}))
    with pytest.raises(ThingModelError, match="not an integer"):
        model(prop("e", "enum", {"a": "x"}))


@pytest.mark.parametrize(
    "dt,match",
    [
        ({"type": "long"}, "unknown data type"),
        ({"type": "int32"}, "unknown data type"),
        ({}, "unknown data type"),
        ("int", "dataType must be an object"),
        ({"type": "text", "specs": {"length": "10241"}}, "outside 1..10240"),
        ({"type": "text", "specs": {"length": "0"}}, "outside 1..10240"),
        ({"type": "int", "specs": {"min": "abc"}}, "specs.min"),
        ({"type": "int", "specs": {"min": "1.5"}}, "not an integer"),
        ({"type": "int", "specs": {"max": "2147483648"}}, "outside"),
        ({"type": "int", "specs": {"min": "10", "max": "1"}}, "greater than"),
        ({"type": "double", "specs": {"min": "x"}}, "not a finite number"),
        ({"type": "float", "specs": {"min": "2.5", "max": "1.5"}}, "greater than"),
        ({"type": "bool", "specs": {"0": "off", "2": "on"}}, "bool specs"),
        ({"type": "int", "specs": "x"}, "specs must be an object"),
    ],
)
def test_bad_data_types_refused(dt, match):
    doc = {"properties": [{"identifier": "p", "accessMode": "r", "dataType": dt}]}
    with pytest.raises(ThingModelError, match=match) as info:
        ThingModel.from_tsl(doc)
    assert str(info.value).startswith("properties[0] (p).dataType")


def test_document_shape_errors():
    with pytest.raises(ThingModelError, match="JSON object"):
        ThingModel.from_tsl([])
    with pytest.raises(ThingModelError, match="properties: must be a list"):
        ThingModel.from_tsl({"properties": {}})
    with pytest.raises(ThingModelError, match="accessMode"):
        model(prop("p", "int", access="w"))
    with pytest.raises(ThingModelError, match="duplicate property"):
        model(prop("p", "int"), prop("p", "text"))
    with pytest.raises(ThingModelError, match="event type"):
        model(events=[{"identifier": "alarm", "type": "warning", "outputData": []}])
    with pytest.raises(ThingModelError, match=r"events\[0\] \(alarm\)\.outputData\[0\]"):
        model(events=[{"identifier": "alarm", "type": "alert", "outputData": [member("bad-name")]}])
    with pytest.raises(ThingModelError, match="not a JSON document"):
        model(prop("p", "int", {"min": 1, "unit": {1, 2}}))


def test_services_are_checked_at_import():
    svc = {"identifier": "reboot", "callType": "async", "inputData": [member("delay")], "outputData": []}
    assert model(services=[svc]).property_names == frozenset()
    bad = dict(svc, inputData=[member("delay", "long")])
    with pytest.raises(ThingModelError, match=r"services\[0\] \(reboot\)\.inputData"):
        model(services=[bad])


# --- events ----------------------------------------------------------------------------------

ALARM = {
    "identifier": "alarm",
    "name": "alarm",
    "type": "alert",
    "method": "thing.event.alarm.post",
    "outputData": [member("level", "enum", {"0": "low", "1": "high"}), member("detail", "text", {"length": "16"})],
}


def test_event_params_checked():
    m = model(events=[ALARM])
    assert m.event_identifiers == frozenset({"alarm"})
    assert m.validate_event("alarm", {"level": 1, "detail": "hot"}) == ({"level": 1, "detail": "hot"}, [])
    ok, bad = m.validate_event("alarm", {"level": 5, "detail": "hot", "x": 1})
    assert ok == {"detail": "hot"}
    assert [(e.identifier, e.code) for e in bad] == [("alarm.level", 6309), ("alarm.x", 6304)]
    assert bad[0].reason.startswith("alarm.level: 5 is not one of the enum keys")


def test_unknown_event_is_6300():
    m = model(events=[ALARM])
    ok, bad = m.validate_event("fire", {"level": 1})
    assert ok == {} and bad == [PropertyError("fire", 6300, "fire: event is not defined in the thing model")]


# --- export, round trip, version -------------------------------------------------------------


def test_tsl_round_trip_keeps_the_document():
    doc = copy.deepcopy(SEED_TSL)
    doc["properties"].append(COLOR)
    doc["events"].append(ALARM)
    m = ThingModel.from_tsl(doc)
    out = m.to_tsl()
    assert out == doc
    assert list(out) == list(doc) and list(out["properties"][0]) == list(doc["properties"][0])
    assert m.to_document() == {"format": "tsl", "model": doc}
    again = ThingModel.from_document(m.to_document())
    assert again.version == m.version and again.to_tsl() == doc


def test_model_is_compiled_not_re_read():
    doc = copy.deepcopy(SEED_TSL)
    m = ThingModel.from_tsl(doc)
    doc["properties"][0]["dataType"]["specs"]["max"] = "99"  # the caller's copy changes later
    m.to_tsl()["properties"][0]["identifier"] = "changed"  # and so does an exported copy
    assert not one(m, "temperature", 60)[0]
    assert m.to_tsl() == SEED_TSL


def test_version_is_a_content_hash():
    a = ThingModel.from_tsl(SEED_TSL)
    reordered = dict(reversed(list(copy.deepcopy(SEED_TSL).items())))
    assert ThingModel.from_tsl(reordered).version == a.version
    assert re.fullmatch(r"[0-9a-f]{16}", a.version)
    changed = copy.deepcopy(SEED_TSL)
    changed["properties"][0]["dataType"]["specs"]["max"] = "51"
    assert ThingModel.from_tsl(changed).version != a.version


def test_from_document_refuses_unknown_format():
    with pytest.raises(ThingModelError, match="format"):
        ThingModel.from_document({"format": "xml", "model": {}})


def test_custom_module_identifiers_are_prefixed():
    m = ThingModel.from_tsl({"functionBlockId": "stat", "properties": [prop("rssi", "int")]})
    assert m.property_names == {"stat:rssi"}
    assert accepted(m, "stat:rssi", -70) == -70


# --- Huawei product model --------------------------------------------------------------------


def hw_prop(name, data_type, **kw):
    return {"property_name": name, "data_type": data_type, "required": False, "method": "RE"} | kw


HUAWEI = {
    "product_id": "p1",
    "services": [
        {
            "service_id": "Meter",
            "service_type": "Meter",
            "properties": [
                hw_prop("count", "int", min="0", max="100", step=1, unit="pcs"),
                hw_prop("total", "long"),
                hw_prop("voltage", "decimal", min="-1.5", max="250.5"),
                hw_prop("label", "string", max_length=4),
                hw_prop("at", "DateTime"),
                hw_prop("extra", "jsonObject"),
                hw_prop("mode", "enum", enum_list=["AUTO", "MANUAL"]),
                hw_prop("on", "boolean", method="RW"),
                hw_prop("tags", "string list", max_length=3),
            ],
        },
        {"service_id": "Battery", "properties": [hw_prop("level", "int", min=0, max=100), hw_prop("count", "string")]},
    ],
}


def hw_one(m, sid, name, value):
    ok, bad = m.validate_service_properties(sid, {name: value})
    return (True, ok[name]) if not bad else (False, bad[0])


@pytest.mark.parametrize(
    "name,good,bad,code",
    [
        ("count", [0, 100], [-1, 101, 1.0, True, "5"], 6306),
        ("total", [2**63 - 1, -(2**63), 2**31], [2**63, -(2**63) - 1, 1.5], 6306),
        ("voltage", [-1.5, 250.5, 3], [-1.6, 250.6, "3", False], 6322),
        ("label", ["", "abcd"], ["abcde", 5], 6310),
        ("at", ["20151212T121212Z", "20240229T235959Z"], ["2015-12-12", "20151312T121212Z", "20151212T241212Z",
                                                          "20151212T121212", 20151212], 6311),
        ("extra", [{}, {"a": [1]}], [[1], "x", None], 6312),
        ("mode", ["AUTO", "MANUAL"], ["auto", 0, None], 6309),
        ("on", [True, False], [1, 0, "true"], 6308),
        ("tags", [[], ["a", "abc"]], [["abcd"], [1], "a"], CODE_ARRAY),
    ],
)
def test_huawei_types(name, good, bad, code):
    m = ThingModel.from_huawei(HUAWEI)
    for v in good:
        ok, out = hw_one(m, "Meter", name, v)
        assert ok and out == v, (v, out)
    for v in bad:
        ok, err = hw_one(m, "Meter", name, v)
        assert not ok and err.code == code, (v, err)
        assert err.reason.startswith(name)


def test_huawei_services_are_separate_namespaces():
    m = ThingModel.from_huawei(HUAWEI)
    assert hw_one(m, "Battery", "count", "five") == (True, "five")  # string in Battery, int in Meter
    assert not hw_one(m, "Meter", "count", "five")[0]
    assert hw_one(m, "Battery", "level", 100) == (True, 100) and not hw_one(m, "Battery", "level", 101)[0]
    ok, bad = m.validate_service_properties("Battery", {"voltage": 3.3})
    assert ok == {} and bad[0].code == 6304


def test_huawei_unknown_service_refuses_all():
    m = ThingModel.from_huawei(HUAWEI)
    ok, bad = m.validate_service_properties("Nope", {"count": 1, "level": 2})
    assert ok == {}
    assert [(e.identifier, e.code) for e in bad] == [("count", 6304), ("level", 6304)]
    assert "service \"Nope\" is not defined" in bad[0].reason


def test_huawei_flat_names_and_export():
    m = ThingModel.from_huawei(HUAWEI)
    assert {"count", "level", "tags"} <= m.property_names
    assert m.validate_properties({"count": 5, "level": 7}) == ({"count": 5, "level": 7}, [])  # first service wins
    assert m.to_document() == {"format": "huawei", "model": HUAWEI}
    assert ThingModel.from_document(m.to_document()).version == m.version
    tsl = m.to_tsl()
    by_id = {p["identifier"]: p for p in tsl["properties"]}
    assert by_id["Meter_count"]["dataType"] == {"type": "int", "specs": {"min": "0", "max": "100", "step": "1",
                                                                         "unit": "pcs"}}
    assert by_id["Battery_count"]["dataType"]["type"] == "text"
    assert by_id["on"]["accessMode"] == "rw" and by_id["label"]["accessMode"] == "r"
    assert ThingModel.from_tsl(tsl).property_names == frozenset(by_id)  # the export is itself valid TSL


def test_huawei_service_capabilities_alias():
    m = ThingModel.from_huawei({"service_capabilities": [{"service_id": "S", "properties": [hw_prop("x", "int")]}]})
    assert hw_one(m, "S", "x", 1) == (True, 1)


@pytest.mark.parametrize(
    "p,match",
    [
        (hw_prop("x", "float"), "unknown data_type"),
        (hw_prop("x", "enum"), "enum_list"),
        (hw_prop("x", "enum", enum_list=[1, 2]), "enum_list"),
        (hw_prop("x", "int", method="RX"), "method"),
        (hw_prop("x", "int", min="5", max="1"), "greater than"),
        (hw_prop("x", "int", max="2147483648"), "outside"),
        (hw_prop("", "int"), "property_name"),
        (hw_prop("x" * 65, "int"), "longer than 64"),
    ],
)
def test_huawei_import_errors(p, match):
    with pytest.raises(ThingModelError, match=match):
        ThingModel.from_huawei({"services": [{"service_id": "S", "properties": [p]}]})


def test_huawei_duplicates_refused():
    with pytest.raises(ThingModelError, match="duplicate property_name"):
        ThingModel.from_huawei({"services": [{"service_id": "S", "properties": [hw_prop("x", "int")] * 2}]})
    with pytest.raises(ThingModelError, match="duplicate service_id"):
        ThingModel.from_huawei({"services": [{"service_id": "S"}, {"service_id": "S"}]})


def test_tsl_model_ignores_service_id():
    m = ThingModel.from_tsl(SEED_TSL)
    assert m.validate_service_properties("anything", {"temperature": 20}) == ({"temperature": 20}, [])
    assert m.validate_service_properties("x", {"temperature": 99})[1][0].code == 6306


# --- schemaless and robustness ---------------------------------------------------------------


def test_schemaless_accepts_everything_as_given():
    m = ThingModel.schemaless()
    params = {"anything": {"nested": [1, 2]}, "t": 99999, "b": True}
    assert m.version == "schemaless" and m.is_schemaless
    assert m.validate_properties(params) == (params, [])
    assert m.validate_event("whatever", {"x": 1}) == ({"x": 1}, [])
    assert m.validate_service_properties("S", {"y": "z"}) == ({"y": "z"}, [])
    assert m.to_document() == {"format": "schemaless", "model": None}
    assert ThingModel.from_document(m.to_document()).is_schemaless


def test_non_object_params_refused_not_raised():
    m = ThingModel.from_tsl(SEED_TSL)
    for bad in (None, [1], "x", 5):
        ok, err = m.validate_properties(bad)
        assert ok == {} and err[0].code == 460
        assert m.validate_event("e", bad)[1][0].code == 460


ALL_TYPES = model(
    prop("i", "int", {"min": "0", "max": "9"}),
    prop("f", "float", {}),
    prop("d", "double", {"max": "1"}),
    prop("b", "bool", {}),
    prop("e", "enum", {"1": "one"}),
    prop("t", "text", {"length": "3"}),
    prop("dt", "date", {}),
    COLOR,
    prop("a", "array", {"size": "2", "item": {"type": "struct", "specs": [member("x")]}}),
)


@pytest.mark.parametrize(
    "value",
    [None, True, 10**5000, -(10**5000), 1e308, float("nan"), "x" * 100_000, "\ud800", [None] * 3, {"": None},
     [[[]]], {"r": {"r": 1}}, object()],
    ids=lambda v: type(v).__name__,  # str() of a 5000-digit int raises
)
def test_hostile_values_never_raise(value):
    params = {name: value for name in ALL_TYPES.property_names}
    ok, bad = ALL_TYPES.validate_properties(params)
    assert len(ok) + len(bad) == len(params)
    for e in bad:
        assert len(e.reason) < 200 and e.reason.startswith(e.identifier.split("[")[0].split(".")[0])


@pytest.mark.parametrize("doc, fmt", [({"foo": 1}, "tsl"), ({}, "tsl"), ({"schema": "x", "profile": {}}, "tsl"),
                                      ({"foo": 1}, "huawei"), ({}, "huawei")])
def test_a_document_with_no_section_at_all_is_no_model(doc, fmt):
    with pytest.raises(ThingModelError, match="needs a .* list .*none"):
        require_sections(doc, fmt)


@pytest.mark.parametrize("doc, fmt", [({"properties": []}, "tsl"), ({"events": []}, "tsl"), ({"services": []}, "tsl"),
                                      ({"services": []}, "huawei"), ({"service_capabilities": []}, "huawei")])
def test_an_empty_but_present_section_is_a_valid_model(doc, fmt):
    require_sections(doc, fmt)
    model = ThingModel.from_tsl(doc) if fmt == "tsl" else ThingModel.from_huawei(doc)
    assert model.validate_properties({})[1] == []
