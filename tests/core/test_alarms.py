"""Alarm conditions, their checks against a thing model, and the per-device state machine."""

import pytest

from tests.dialects.test_alink_reports_https import SEED_004_TSL
from thingport.core.alarms import Condition, Track, compile_rule, parse_condition, step, tick
from thingport.core.errors import ParamError
from thingport.core.thingmodel import ThingModel

MODEL = ThingModel.from_tsl({**SEED_004_TSL, "properties": [*SEED_004_TSL["properties"],
    {"identifier": "mode", "name": "Mode", "accessMode": "rw", "required": False,
     "dataType": {"type": "enum", "specs": {"0": "off", "1": "auto", "2": "manual"}}},
    {"identifier": "door", "name": "Door", "accessMode": "r", "required": False,
     "dataType": {"type": "bool", "specs": {"0": "closed", "1": "open"}}},
    {"identifier": "label", "name": "Label", "accessMode": "r", "required": False,
     "dataType": {"type": "text", "specs": {"length": "32"}}}]})


@pytest.mark.parametrize(("text", "parsed"), [
    ("temperature > 38", Condition("temperature", ">", 38)),
    ("temperature>=38.5", Condition("temperature", ">=", 38.5)),
    ("humidity outside [20, 80]", Condition("humidity", "outside", (20, 80))),
    ("humidity inside [20,80]", Condition("humidity", "inside", (20, 80))),
    ('label == "x y"', Condition("label", "==", "x y")),
    ("label != auto", Condition("label", "!=", "auto")),
    ("door == true", Condition("door", "==", True)),
    (" silent ", Condition(None, "silent")),
])
def test_conditions_parse_as_people_write_them(text: str, parsed: Condition) -> None:
    assert parse_condition(text) == parsed


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"), ("temperature", "is not '<property>"), ("temperature > hot", "is not a number"),
    ("temperature > [1]", "not a number"), ("humidity inside [80, 20]", "low end"),
    ("temperature > NaN", "not a number"),
])
def test_bad_conditions_say_why(text: str, says: str) -> None:
    with pytest.raises(ParamError, match=says.replace("[", r"\[")):
        parse_condition(text)


def test_conditions_hold_only_for_values_of_their_type() -> None:
    above = Condition("t", ">", 38)
    assert above.holds(38.1) and not above.holds(38) and not above.holds("39") and not above.holds(True)
    outside = Condition("h", "outside", (20, 80))
    assert outside.holds(19.9) and outside.holds(81) and not outside.holds(20) and not outside.holds(80)
    assert Condition("m", "==", 2).holds(2.0) and not Condition("m", "==", 2).holds("2")
    assert Condition("l", "!=", "a").holds("b") and not Condition("l", "!=", "a").holds("a")


def test_the_model_decides_what_a_condition_may_say() -> None:
    assert compile_rule("door == true", None, None, MODEL).raise_when == Condition("door", "==", 1)  # TSL bool: 0/1
    assert compile_rule("mode == 2", "mode == 0", None, MODEL).clear_when == Condition("mode", "==", 0)
    for when, says in (("pressure > 1", "not in the product's thing model"), ("mode > 1", "needs a number"),
                       ("mode == 7", "not a value of enum mode"), ("door == 2", "is a bool"),
                       ("label > 3", "needs a number"), ("label == 3", "quoted string"),
                       ('temperature == "x"', "of type int")):
        with pytest.raises(ParamError, match=says):
            compile_rule(when, None, None, MODEL)
    assert compile_rule("pressure > 1", None, None, None).raise_when.property == "pressure"  # schemaless: any


@pytest.mark.parametrize(("when", "clear"), [
    ("temperature > 38", "temperature < 40"), ("temperature > 38", "temperature <= 38.5"),
    ("temperature < 0", "temperature >= -1"), ("humidity outside [20, 80]", "humidity inside [10, 90]"),
    ("temperature > 38", "temperature > 38"),
])
def test_a_clear_condition_that_overlaps_the_condition_is_refused(when: str, clear: str) -> None:
    with pytest.raises(ParamError, match="overlaps|flap"):
        compile_rule(when, clear, None, MODEL)


def test_silent_takes_neither_duration_nor_clear_condition() -> None:
    assert compile_rule("silent", None, None, MODEL).silent
    with pytest.raises(ParamError, match="no clear condition"):
        compile_rule("silent", "temperature < 3", None, MODEL)
    with pytest.raises(ParamError, match="no duration"):
        compile_rule("silent", None, 60, MODEL)
    with pytest.raises(ParamError, match="duration must be"):
        compile_rule("temperature > 3", None, -1, MODEL)


def test_hysteresis_keeps_a_wobbling_value_from_flapping() -> None:
    rule = compile_rule("temperature > 38", "temperature < 36", None, MODEL)
    track = Track()
    verdicts = [step(rule, track, v, i) for i, v in enumerate([37, 39, 37.9, 38.5, 36.5, 39, 35.9, 37, 38])]
    assert verdicts == [None, "raise", None, None, None, None, "clear", None, None]
    plain = compile_rule("temperature > 38", None, None, MODEL)  # no clear condition: flaps, as asked
    track = Track()
    assert [step(plain, track, v, i) for i, v in enumerate([39, 37, 39])] == ["raise", "clear", "raise"]


def test_a_duration_raises_only_when_the_condition_held_throughout() -> None:
    rule = compile_rule("temperature > 38", None, 120, MODEL)
    track = Track()
    assert step(rule, track, 39, 0) is None and track.pending_since_ms == 0
    assert step(rule, track, 40, 60_000) is None
    assert not tick(rule, track, 119_999)
    assert step(rule, track, 30, 100_000) is None and track.pending_since_ms is None  # broken: starts over
    assert step(rule, track, 39, 110_000) is None
    assert not tick(rule, track, 229_999) and tick(rule, track, 230_000) and track.open
    assert not tick(rule, track, 500_000)  # raised once
    assert step(rule, track, 39, 231_000) is None and step(rule, track, 20, 232_000) == "clear"
    assert step(rule, track, 41, 300_000) is None and step(rule, track, 41, 420_000) == "raise"  # by a report too
