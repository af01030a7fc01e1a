"""The validation policy of every dialect, once: what a report whose values the thing model judged keeps.

A product validates ``per-property`` (the accepted values are kept, the refused ones named in the reply) or
``whole-report`` (one refused value refuses every value of the report). Either way a report none of whose
values was accepted is *rejected*: what a rejected report means on the wire is its dialect's (Alibaba stores
it with an Alink reply naming the refusals, IoTDA refuses the request); which reports are rejected and what
is kept is this module's.
"""

from collections.abc import Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from thingport.core.model import ValuesAt, values_by_time

Refusal = TypeVar("Refusal")


class Verdict(NamedTuple, Generic[Refusal]):
    """The values of one report to store, and what was refused (in the form its dialect reports it). A
    tuple: one is built per validated report."""

    values: tuple[ValuesAt, ...]
    refused: Sequence[Refusal]
    rejected: bool  # nothing is kept: every value refused, or any one under whole-report


def verdict(groups: dict[int, dict[str, Any]], refused: Sequence[Refusal], whole_report: bool) -> Verdict[Refusal]:
    """``groups``: the accepted values by time; ``refused``: the refused ones; ``whole_report``: the product's
    mode."""
    rejected = bool(refused) and (whole_report or not groups)
    return Verdict((), refused, True) if rejected else Verdict(values_by_time(groups), refused, False)
