"""The one validation policy both dialects run (core/validation.py)."""

import pytest

from thingport.core.model import ValuesAt
from thingport.core.validation import verdict

GOOD = {1000: {"temperature": 21}, 2000: {"humidity": 60}}


@pytest.mark.parametrize("whole_report", [False, True])
def test_a_report_without_refusals_keeps_every_value(whole_report: bool) -> None:
    judged = verdict(GOOD, [], whole_report)
    assert judged.values == (ValuesAt(1000, {"temperature": 21}), ValuesAt(2000, {"humidity": 60}))
    assert (judged.refused, judged.rejected) == ([], False)


def test_per_property_keeps_the_accepted_values_and_names_the_refused() -> None:
    judged = verdict(GOOD, ["x"], whole_report=False)
    assert (len(judged.values), judged.refused, judged.rejected) == (2, ["x"], False)


def test_whole_report_keeps_nothing_once_one_value_is_refused() -> None:
    judged = verdict(GOOD, ["x"], whole_report=True)
    assert (judged.values, judged.refused, judged.rejected) == ((), ["x"], True)


@pytest.mark.parametrize("whole_report", [False, True])
def test_a_report_whose_every_value_was_refused_is_rejected_in_either_mode(whole_report: bool) -> None:
    assert verdict({}, ["x"], whole_report).rejected


def test_an_empty_report_is_not_rejected() -> None:
    judged = verdict({}, [], whole_report=True)
    assert (judged.values, judged.rejected) == ((), False)
