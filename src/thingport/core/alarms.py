"""Alarms: what a definition says (a condition on one property, or silence), how it is checked against a
product's thing model, and the per-device state machine that turns values and time into raise and clear.

Pure rules, no I/O: the evaluator (bus/alarm_evaluator.py) feeds it the log's values and a clock, and the
store keeps what it decides. A condition is written as people say it: ``temperature > 38``,
``humidity outside [20, 80]``, ``mode == 2``, ``door == true``, or ``silent``. A separate clear condition
gives hysteresis (raise ``> 38``, clear ``< 36``): a value between the two changes nothing, so a value
wobbling at the threshold does not flap.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from thingport.core.errors import ParamError
from thingport.core.thingmodel import ThingModel, ValueType

SEVERITIES = ("critical", "major", "minor", "warning")
STATES = ("active", "acknowledged", "cleared")
OPEN_STATES = ("active", "acknowledged")
SILENT = "silent"
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DURATION_MAX_S = 7 * 86400
DETAILS_MAX = 4096  # bytes of a raise's details, as JSON

_COMPARE = re.compile(r"\s*([A-Za-z0-9_]{1,64})\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*")
_RANGE = re.compile(r"\s*([A-Za-z0-9_]{1,64})\s+(inside|outside)\s*\[\s*([^,\]]+?)\s*,\s*([^,\]]+?)\s*\]\s*")
_NUMERIC_TYPES = frozenset({"int", "float", "double", "long", "decimal"})
_ORDERED_OPS = frozenset({">", ">=", "<", "<="})


def _literal(text: str, where: str) -> Any:
    """A condition's value: a JSON number, string, true or false; a bare word is a string (``mode == auto``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", text):
            return text
        raise ParamError(f"{where}: {text!r} is not a number, a quoted string, true or false") from None
    if not isinstance(value, (int, float, str, bool)) or (isinstance(value, float) and not math.isfinite(value)):
        raise ParamError(f"{where}: {text!r} is not a number, a quoted string, true or false")
    return value


def _number(text: str, where: str) -> float:
    value = _literal(text, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(f"{where}: {text!r} is not a number")
    return value


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True, slots=True)
class Condition:
    """``property op value``; ``op`` ``inside``/``outside`` take ``value`` as (low, high), both included in
    ``inside``; ``silent`` has no property."""

    property: str | None
    op: str
    value: Any = None

    def holds(self, v: Any) -> bool:
        """Whether value ``v`` meets it; a value of another type (a schemaless product's) never does."""
        op = self.op
        if op in _ORDERED_OPS or op in ("inside", "outside"):
            if not _is_number(v):
                return False
            if op == ">":
                return bool(v > self.value)
            if op == ">=":
                return bool(v >= self.value)
            if op == "<":
                return bool(v < self.value)
            if op == "<=":
                return bool(v <= self.value)
            lo, hi = self.value
            return bool(lo <= v <= hi) == (op == "inside")
        if op in ("==", "!="):
            same = type(v) is type(self.value) or (_is_number(v) and _is_number(self.value))
            return bool(same and v == self.value) == (op == "==")
        return False

    def text(self) -> str:
        if self.op == SILENT:
            return SILENT
        if self.op in ("inside", "outside"):
            return f"{self.property} {self.op} [{self.value[0]}, {self.value[1]}]"
        return f"{self.property} {self.op} {json.dumps(self.value)}"


def parse_condition(text: str, where: str = "condition") -> Condition:
    """``temperature > 38``, ``humidity inside [20, 80]``, ``mode == 2``, ``door == true``, or ``silent``."""
    if not isinstance(text, str) or not text.strip():
        raise ParamError(f"{where} is empty")
    if text.strip() == SILENT:
        return Condition(None, SILENT)
    if m := _RANGE.fullmatch(text):
        lo, hi = _number(m.group(3), where), _number(m.group(4), where)
        if lo > hi:
            raise ParamError(f"{where}: the range's low end {lo} is above its high end {hi}")
        return Condition(m.group(1), m.group(2), (lo, hi))
    if m := _COMPARE.fullmatch(text):
        op = m.group(2)
        value = _number(m.group(3), where) if op in _ORDERED_OPS else _literal(m.group(3), where)
        return Condition(m.group(1), op, value)
    raise ParamError(f"{where}: {text!r} is not '<property> <op> <value>' (op one of > >= < <= == !=),"
                     " '<property> inside|outside [<low>, <high>]', or 'silent'")


def _check_against(condition: Condition, vtype: ValueType, where: str) -> Condition:
    """The condition as the model's type wants it (a TSL bool compares to 0/1), or ParamError."""
    kind = vtype.type
    prop = condition.property
    if condition.op in _ORDERED_OPS or condition.op in ("inside", "outside"):
        if kind not in _NUMERIC_TYPES:
            raise ParamError(f"{where}: property {prop} is of type {kind}: '{condition.op}' needs a number")
        return condition
    value = condition.value
    if kind in _NUMERIC_TYPES:
        if not _is_number(value):
            raise ParamError(f"{where}: property {prop} is of type {kind}, not compared to {json.dumps(value)}")
    elif kind == "bool":  # TSL: 0 or 1
        if isinstance(value, bool):
            value = int(value)
        if value not in (0, 1) or not _is_number(value):
            raise ParamError(f"{where}: property {prop} is a bool (0 or 1), not {json.dumps(condition.value)}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ParamError(f"{where}: property {prop} is a boolean (true or false), not {json.dumps(value)}")
    elif kind == "enum":
        choices = vtype.choices
        if choices and all(isinstance(c, int) for c in choices):
            ok = _is_number(value) and value in choices
        else:
            ok = isinstance(value, str) and value in choices
        if not ok:
            shown = ", ".join(json.dumps(c) for c in choices)
            raise ParamError(f"{where}: {json.dumps(value)} is not a value of enum {prop} ({shown})")
    elif kind in ("text", "string", "date", "datetime"):
        if not isinstance(value, str):
            raise ParamError(f"{where}: property {prop} is of type {kind}: compare it to a quoted string")
    else:
        raise ParamError(f"{where}: property {prop} is of type {kind}, which alarms cannot compare")
    return Condition(prop, condition.op, value)


def _overlap_points(raise_when: Condition, clear_when: Condition) -> list[float]:
    """Values around every bound of both conditions: if none meets both, no value does (bounds are where a
    threshold condition's truth changes)."""
    bounds: list[float] = []
    for c in (raise_when, clear_when):
        bounds.extend(c.value if c.op in ("inside", "outside") else (c.value,))
    points: list[float] = []
    for b in bounds:
        points.extend((b, b - 1e-9 * max(1.0, abs(b)), b + 1e-9 * max(1.0, abs(b))))
    ordered = sorted(set(bounds))
    points.extend((a + b) / 2 for a, b in zip(ordered, ordered[1:], strict=False))
    points.extend((ordered[0] - 1, ordered[-1] + 1))
    return points


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """A definition's checked conditions: ``duration_ms`` the raise condition must hold before raising."""

    raise_when: Condition
    clear_when: Condition | None
    duration_ms: int

    @property
    def silent(self) -> bool:
        return self.raise_when.op == SILENT

    def clears(self, v: Any) -> bool:
        """Without a clear condition, the raise condition no longer holding clears."""
        return self.clear_when.holds(v) if self.clear_when is not None else not self.raise_when.holds(v)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ParamError("an alarm name is 1-64 letters, digits, '_', '.' or '-'")
    return name


def check_severity(severity: str) -> str:
    if severity not in SEVERITIES:
        raise ParamError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    return severity


def compile_rule(when: str, clear_when: str | None, duration_s: float | None, model: ThingModel | None) -> AlarmRule:
    """Check a definition's conditions (against ``model`` when the product has one) before anything is
    stored: an unknown property, a type the operator does not fit, a clear condition that overlaps the raise
    condition (it would flap) are refused with the reason."""
    raise_when = parse_condition(when, "condition")
    if duration_s is not None and (not math.isfinite(duration_s) or not 0 <= duration_s <= DURATION_MAX_S):
        raise ParamError(f"duration must be 0 to {DURATION_MAX_S} s")
    duration_ms = int((duration_s or 0) * 1000)
    if raise_when.op == SILENT:
        if clear_when is not None:
            raise ParamError("a 'silent' alarm clears when the device reports again: it takes no clear condition")
        if duration_ms:
            raise ParamError("a 'silent' alarm's duration is the product's presence timeout: it takes no duration")
        return AlarmRule(raise_when, None, 0)
    vtype = None
    if model is not None and not model.is_schemaless:
        vtype = model.property_types.get(raise_when.property or "")
        if vtype is None:
            raise ParamError(f"condition: property {raise_when.property} is not in the product's thing model")
        raise_when = _check_against(raise_when, vtype, "condition")
    clear = parse_condition(clear_when, "clear condition") if clear_when is not None else None
    if clear is not None:
        if clear.op == SILENT:
            raise ParamError("clear condition: 'silent' only raises")
        if clear.property != raise_when.property:
            raise ParamError(f"clear condition: it must be on {raise_when.property}, as the condition is,"
                             f" not {clear.property}")
        if vtype is not None:
            clear = _check_against(clear, vtype, "clear condition")
    if clear is not None:
        if all(_is_number(c.value) or c.op in ("inside", "outside") for c in (raise_when, clear)):
            both = [p for p in _overlap_points(raise_when, clear) if raise_when.holds(p) and clear.holds(p)]
            if both:
                raise ParamError(f"clear condition {clear.text()!r} overlaps condition {raise_when.text()!r}"
                                 f" (a value of {both[0]:g} meets both): the alarm would flap")
        elif clear.value == raise_when.value and clear.op == raise_when.op:
            raise ParamError("clear condition is the condition itself")
    return AlarmRule(raise_when, clear, duration_ms)


@dataclass(frozen=True, slots=True)
class AlarmDefinition:
    """One product's alarm: raised on each of its devices whose values (or silence) meet ``rule``."""

    id: int
    product_key: str
    name: str
    severity: str
    rule: AlarmRule
    created_ms: int

    def view(self) -> dict[str, Any]:
        r = self.rule
        return {"id": self.id, "productKey": self.product_key, "name": self.name, "severity": self.severity,
                "condition": r.raise_when.text(), "clearCondition": r.clear_when.text() if r.clear_when else None,
                "durationSeconds": r.duration_ms / 1000, "createdAt": self.created_ms}


def definition_from_row(row: tuple[Any, ...]) -> AlarmDefinition:
    """A stored definition (id, product_key, name, severity, condition, clear_condition, duration_ms,
    created_ms): its text was checked when it was defined, and is compiled again without the model."""
    did, pk, name, severity, when, clear, duration_ms, created_ms = row
    raise_when = parse_condition(when)
    rule = AlarmRule(raise_when, parse_condition(clear) if clear else None, int(duration_ms))
    return AlarmDefinition(did, pk, name, severity, rule, created_ms)


# --- the per-device state machine ---


@dataclass(slots=True)
class Track:
    """One device under one definition: whether its alarm is open, and since when the raise condition has
    held (a duration runs from there)."""

    open: bool = False
    pending_since_ms: int | None = None


def step(rule: AlarmRule, track: Track, value: Any, at_ms: int) -> str | None:
    """A new value of the definition's property at ``at_ms``: "raise", "clear" or None (nothing to say).
    Changes ``track``."""
    if track.open:
        if rule.clears(value):
            track.open, track.pending_since_ms = False, None
            return "clear"
        return None
    if not rule.raise_when.holds(value):
        track.pending_since_ms = None
        return None
    if track.pending_since_ms is None:
        track.pending_since_ms = at_ms
    if at_ms - track.pending_since_ms >= rule.duration_ms:
        track.open, track.pending_since_ms = True, None
        return "raise"
    return None


def tick(rule: AlarmRule, track: Track, now_ms: int) -> bool:
    """Time passed with no new value: True when a pending duration has run out (the alarm is raised)."""
    if not track.open and track.pending_since_ms is not None and now_ms - track.pending_since_ms >= rule.duration_ms:
        track.open, track.pending_since_ms = True, None
        return True
    return False


# --- alarms as stored ---


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm of one device: raised (``active``), perhaps ``acknowledged`` by an operator, then
    ``cleared``. ``source`` is ``definition`` (the product's alarm definition named ``name``) or ``service``
    (raised through ``Management.raise_alarm``, e.g. by a rule)."""

    id: int
    device_id: int
    product_key: str
    device_name: str
    iot_id: str
    name: str
    severity: str
    state: str
    source: str
    details: dict[str, Any]
    raised_ms: int
    acknowledged_ms: int | None = None
    acknowledged_by: str | None = None
    cleared_ms: int | None = None

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "productKey": self.product_key, "deviceName": self.device_name,
                "deviceId": self.iot_id, "name": self.name, "severity": self.severity, "state": self.state,
                "source": self.source, "details": self.details, "raisedAt": self.raised_ms,
                "acknowledgedAt": self.acknowledged_ms, "acknowledgedBy": self.acknowledged_by,
                "clearedAt": self.cleared_ms}


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One change of an alarm (``state`` is what it became), at ``at_ms``, by ``actor`` (an operator's API
    key or CLI user; None: the evaluator). It becomes one ``alarm`` message in the log."""

    id: int
    alarm: Alarm
    state: str
    at_ms: int
    actor: str | None

    def document(self) -> dict[str, Any]:
        """The ``alarm`` message's payload: ``eventId`` names the change, so a consumer that gets it twice
        (delivery is at least once) can tell."""
        return {"eventId": self.id, "alarmId": self.alarm.id, "state": self.state, "time": self.at_ms,
                "actor": self.actor, "alarm": self.alarm.view()}
