"""What a simulated device sends: plausible values of a compiled thing model, shaped for either dialect.

Why one place, read from the compiled model (``ThingModel.property_types``, ``event_types``,
``service_types``): values built from the model document by hand drift from what the server checks, and
random values in range chart as noise. Here numbers walk within their range by the model's step, enums and
booleans switch now and then, texts keep to their length and dates are the time of sending, so every
report passes the model's own check and a chart looks like a device's. Pure: the randomness and the
clock are given (a seeded ``random.Random`` replays the same device).
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thingport.core.thingmodel import (
    DOUBLE_MAX,
    FLOAT32_MAX,
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    ThingModel,
    ValueType,
)

EVENT_EVERY = 10
"""One message in ten of a device whose model has events is one of them, from its fifth on (the 5th, 15th,
...: a short run sends some too); the others report properties."""

SWITCH_CHANCE = 0.1
"""How often an enum, boolean or text changes from one report to the next."""

STEPS_ACROSS = 50
"""A number without a step in the model moves in steps of 1/50 of its range (a walk, not a jump)."""

DEFAULT_SPAN = 100
"""The width walked by a number whose model gives no bound on one side (or none at all)."""

TSL_SERVICE_ID = "default"
"""The service a TSL's properties are reported in by the IoTDA dialect (a TSL product does not check it)."""

MAX_ARRAY_ITEMS = 3

_EVENT_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,50}")  # what an event topic can carry (no module prefix)
_TYPE_RANGE: dict[str, tuple[float, float]] = {
    "int": (INT32_MIN, INT32_MAX),
    "long": (INT64_MIN, INT64_MAX),
    "float": (-FLOAT32_MAX, FLOAT32_MAX),
    "double": (-DOUBLE_MAX, DOUBLE_MAX),
    "decimal": (-DOUBLE_MAX, DOUBLE_MAX),
}

Value = Callable[[], Any]
"""One value's walk: each call returns its next value."""


@dataclass(frozen=True, slots=True)
class PropertyReport:
    """Properties to report: flat (Alink ``params``) or ``{service_id: {property: value}}`` (IoTDA)."""

    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventPost:
    """One of the model's events with its output parameters."""

    identifier: str
    params: dict[str, Any]


def _window(vtype: ValueType) -> tuple[float, float]:
    """The bounds walked: the model's, or DEFAULT_SPAN wide next to the one bound given (or from 0)."""
    tmin, tmax = _TYPE_RANGE[vtype.type]
    lo, hi = vtype.lo, vtype.hi
    if lo is None:
        lo = 0.0 if hi is None else max(tmin, hi - DEFAULT_SPAN)
    if hi is None:
        hi = min(tmax, lo + DEFAULT_SPAN)
    if not math.isfinite(hi - lo):  # a double's whole range: walk its middle
        lo, hi = max(lo, -1e12), min(hi, 1e12)
    return lo, hi


def _decimals(step: float) -> int:
    """Digits after the point that show a value on the grid of ``step`` (0.25 -> 2, 5 -> 0)."""
    text = f"{step:.10f}".rstrip("0")
    return min(10, max(0, len(text.split(".")[1]) if "." in text else 0))


def _number(vtype: ValueType, rng: random.Random) -> Value:
    """A random walk on the grid lo + k·step, clamped to the range; a few steps across it at most per report."""
    integral = vtype.type in ("int", "long")
    lo, hi = _window(vtype)
    step = vtype.step or (hi - lo) / STEPS_ACROSS
    if integral:
        lo, hi, step = math.ceil(lo), math.floor(hi), max(1, round(step))
    slots = int((hi - lo) // step) if step > 0 and hi > lo else 0
    stride = max(1, slots // STEPS_ACROSS)
    digits = _decimals(step) if vtype.step else 2
    at = rng.randint(0, slots)

    def walk() -> Any:
        nonlocal at
        at = min(slots, max(0, at + stride * round(rng.gauss(0, 1))))
        if integral:
            return int(lo + at * step)
        return min(hi, max(lo, round(lo + at * step, digits)))

    return walk


def _switching(choices: tuple[Any, ...], rng: random.Random) -> Value:
    """Keeps its value, and now and then (SWITCH_CHANCE) changes to another of ``choices``."""
    current = rng.choice(choices)

    def walk() -> Any:
        nonlocal current
        if len(choices) > 1 and rng.random() < SWITCH_CHANCE:
            current = rng.choice([c for c in choices if c != current])
        return current

    return walk


def _text(length: int | None, rng: random.Random) -> Value:
    """ASCII (so bytes and characters count alike) no longer than ``length``, changing now and then."""
    state = _switching(tuple(f"sim-{n}" for n in range(1, 10)), rng)
    if length is None:
        return state
    return lambda: state()[-length:] if length else ""  # the changing end of it, when it must be cut


def _counter() -> Value:
    seq = 0

    def walk() -> dict[str, int]:
        nonlocal seq
        seq += 1
        return {"seq": seq}

    return walk


def value_walk(vtype: ValueType, rng: random.Random, clock: Callable[[], float] = time.time) -> Value:
    """The walk of one value of ``vtype`` (a property, an event parameter, a member or an array item)."""
    kind = vtype.type
    if kind in _TYPE_RANGE:
        return _number(vtype, rng)
    if kind in ("bool", "boolean", "enum"):
        return _switching(vtype.choices, rng)
    if kind in ("text", "string"):
        return _text(vtype.length, rng)
    if kind == "date":
        return lambda: str(int(clock() * 1000))
    if kind == "datetime":
        return lambda: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    if kind == "jsonobject":
        return _counter()
    if kind == "struct":
        members = {name: value_walk(member, rng, clock) for name, member in vtype.members}
        return lambda: {name: walk() for name, walk in members.items()}
    if kind == "array" and vtype.item is not None:
        items = [value_walk(vtype.item, rng, clock) for _ in range(min(vtype.size or 2, MAX_ARRAY_ITEMS))]
        return lambda: [walk() for walk in items]
    raise ValueError(f"cannot simulate values of type {kind!r}")


def _walks(types: dict[str, ValueType], rng: random.Random, clock: Callable[[], float]) -> dict[str, Value]:
    return {name: value_walk(vtype, rng, clock) for name, vtype in types.items()}


class SimulatedDevice:
    """One simulated device of a product: what it sends next, a property report or now and then an event.

    Shaped for ``dialect``: Alink params are one flat namespace, IoTDA reports are by service. An IoTDA
    model played in the Alibaba dialect posts its properties flat (the first service to define a name wins,
    as the model's own check decides) but not its booleans, which Alink would send as 0/1; a TSL played in
    the IoTDA dialect reports in one service (TSL_SERVICE_ID). Events are the TSL's, sent in the Alibaba
    dialect only (the IoTDA dialect has no event post).
    """

    def __init__(self, model: ThingModel, dialect: str, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if dialect not in ("aliyun", "huawei"):
            raise ValueError(f"unknown dialect {dialect!r}")
        rng = rng or random.Random()
        services = model.service_types
        self._services: dict[str, dict[str, Value]] | None = None
        self._flat: dict[str, Value] = {}
        if services is not None and dialect == "huawei":
            self._services = {sid: _walks(props, rng, clock) for sid, props in services.items() if props}
        else:
            props = model.property_types
            if services is not None:
                props = {name: vtype for name, vtype in props.items() if vtype.type != "boolean"}
            self._flat = _walks(props, rng, clock)
        events = model.event_types if dialect == "aliyun" else {}
        self._events = {ident: _walks(params, rng, clock) for ident, params in events.items()
                        if _EVENT_IDENTIFIER.fullmatch(ident)}
        self._event_order = list(self._events)
        self._sent = 0
        self._rng = rng
        self._dialect = dialect
        if not (self._flat or self._services or self._events):
            raise ValueError("the thing model has no properties or events this dialect can send")

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def next_message(self) -> PropertyReport | EventPost:
        """The next message: one in EVENT_EVERY is an event when the model has any (all are, when it has no
        properties to report)."""
        self._sent += 1
        reports = bool(self._flat or self._services)
        if self._events and (not reports or self._sent % EVENT_EVERY == EVENT_EVERY // 2):
            ident = self._rng.choice(self._event_order)
            return EventPost(ident, {name: walk() for name, walk in self._events[ident].items()})
        return PropertyReport(self.properties())

    def properties(self) -> dict[str, Any]:
        """The next values of every property, flat or by service as the dialect reports them."""
        if self._services is not None:
            return {sid: {name: walk() for name, walk in props.items()} for sid, props in self._services.items()}
        values = {name: walk() for name, walk in self._flat.items()}
        return {TSL_SERVICE_ID: values} if self._dialect == "huawei" else values
