"""What a simulated device sends, judged by the compiled model's own check: every type, both dialects, and
values that move like a device's (a walk within range and step, switches now and then)."""

import random

import pytest

from tests.test_simulator import EVERY_HUAWEI_TYPE, EVERY_TSL_TYPE, SEED_TSL_WITH_EVENTS
from thingport.core.thingmodel import ThingModel, ValueType
from thingport.device.simulated import (
    EVENT_EVERY,
    TSL_SERVICE_ID,
    EventPost,
    PropertyReport,
    SimulatedDevice,
)

TSL_WITH_EVENTS = {**EVERY_TSL_TYPE, "events": SEED_TSL_WITH_EVENTS["events"]}


def judge(model: ThingModel, message: PropertyReport | EventPost, dialect: str) -> list:
    """The model's refusals of one message, as the server would judge it."""
    if isinstance(message, EventPost):
        return model.validate_event(message.identifier, message.params)[1]
    if dialect == "huawei":
        return [r for sid, props in message.values.items() for r in model.validate_service_properties(sid, props)[1]]
    return model.validate_properties(message.values)[1]


@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
@pytest.mark.parametrize("document", [TSL_WITH_EVENTS, EVERY_HUAWEI_TYPE], ids=["tsl", "iotda"])
def test_every_message_passes_the_models_own_check(document: dict, dialect: str) -> None:
    model = ThingModel.from_tsl(document) if "properties" in document else ThingModel.from_huawei(document)
    device = SimulatedDevice(model, dialect, random.Random(7))
    messages = [device.next_message() for _ in range(500)]
    assert [judge(model, m, dialect) for m in messages] == [[]] * 500
    events = [m for m in messages if isinstance(m, EventPost)]
    if model.format == "tsl" and dialect == "aliyun":  # the TSL's events, one message in EVENT_EVERY
        assert len(events) == 500 // EVENT_EVERY
        assert {e.identifier for e in events} == {"overheat", "door"}
    else:  # IoTDA models have no events, and the IoTDA dialect no event post
        assert events == []
    reports = [m.values for m in messages if isinstance(m, PropertyReport)]
    if model.format == "huawei" and dialect == "huawei":
        assert {sid for r in reports for sid in r} == {"A", "B"}
    elif model.format == "huawei":  # flat, without the booleans Alink would send as 0/1
        assert set(reports[0]) == {"i", "l", "d", "s", "e", "at", "j", "sl"}
    elif dialect == "huawei":
        assert set(reports[0]) == {TSL_SERVICE_ID}
    else:
        assert set(reports[0]) == {p["identifier"] for p in document["properties"]}


def test_numbers_walk_within_range_on_the_models_step() -> None:
    model = ThingModel.from_tsl({"properties": [
        {"identifier": "temperature", "dataType": {"type": "int", "specs": {"min": "-10", "max": "50", "step": "1"}}},
        {"identifier": "level", "dataType": {"type": "double", "specs": {"min": "0", "max": "10", "step": "0.25"}}},
        {"identifier": "free", "dataType": {"type": "int", "specs": {}}},
    ]})
    device = SimulatedDevice(model, "aliyun", random.Random(3))
    reports = [device.properties() for _ in range(300)]
    temperatures = [r["temperature"] for r in reports]
    assert all(-10 <= t <= 50 for t in temperatures)
    assert max(abs(b - a) for a, b in zip(temperatures, temperatures[1:], strict=False)) <= 4  # a walk, not jumps
    assert len(set(temperatures)) > 5  # and it does move
    levels = [r["level"] for r in reports]
    assert all(0 <= v <= 10 and (v * 4).is_integer() for v in levels)  # on the 0.25 grid
    assert all(0 <= r["free"] <= 100 for r in reports)  # no bounds: a window from 0


def test_enums_and_booleans_switch_now_and_then() -> None:
    model = ThingModel.from_tsl({"properties": [
        {"identifier": "mode", "dataType": {"type": "enum", "specs": {"0": "eco", "1": "comfort", "2": "boost"}}},
        {"identifier": "on", "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
    ]})
    device = SimulatedDevice(model, "aliyun", random.Random(5))
    reports = [device.properties() for _ in range(400)]
    for name, values in (("mode", {0, 1, 2}), ("on", {0, 1})):
        series = [r[name] for r in reports]
        switches = sum(a != b for a, b in zip(series, series[1:], strict=False))
        assert 10 <= switches <= 100, (name, switches)  # about one report in ten, not every one
        assert set(series) == values


def test_the_compiled_model_describes_its_types() -> None:
    tsl = ThingModel.from_tsl(TSL_WITH_EVENTS)
    assert tsl.property_types["i"] == ValueType("int", -3, 3)
    assert tsl.property_types["e"].choices == (2, 7)
    assert tsl.property_types["t"].length == 5
    assert tsl.property_types["a"].item == ValueType("double") and tsl.property_types["a"].size == 2
    assert [name for name, _ in tsl.property_types["s"].members] == ["x", "label"]
    assert set(tsl.event_types["overheat"]) == {"temperature", "level"}
    assert tsl.service_types is None
    iotda = ThingModel.from_huawei(EVERY_HUAWEI_TYPE)
    assert iotda.service_types is not None and list(iotda.service_types) == ["A", "B"]
    assert iotda.property_types["e"] == ValueType("enum", choices=("on", "off"))
    assert iotda.property_types["l"].hi == 9000000000
    assert iotda.event_types == {}


def test_a_model_with_nothing_to_send_is_refused() -> None:
    only_booleans = ThingModel.from_huawei({"services": [{"service_id": "A", "properties": [
        {"property_name": "b", "data_type": "boolean"}]}]})
    with pytest.raises(ValueError, match="no properties or events"):
        SimulatedDevice(only_booleans, "aliyun")
    SimulatedDevice(only_booleans, "huawei")  # its own dialect sends true/false
