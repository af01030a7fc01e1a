"""A rule's actions in their stored and API form: ``{"kind": "forward", "sink": ..., "options": {...}}`` or
``{"kind": "alarm", "name": ..., "severity": ..., "clear": false}``.

One place reads and writes them, so a new kind of action is added here and in ``model.RuleAction`` and
nowhere else is the list of kinds spelt out.
"""

from collections.abc import Mapping
from typing import Any

from thingport.core.alarms import check_name, check_severity
from thingport.core.errors import ParamError
from thingport.core.model import AlarmAction, ForwardAction, RuleAction

ACTION_KINDS = (ForwardAction.kind, AlarmAction.kind)
MAX_ACTIONS = 10


class ActionError(ValueError):
    """An action that is not one (the message names the action by its position and what is wrong)."""


def action_doc(action: RuleAction) -> dict[str, Any]:
    """The stored form (options in clear: the caller seals the whole list, as a subscription's options)."""
    if isinstance(action, AlarmAction):
        return {"kind": action.kind, "name": action.name, "severity": action.severity, "clear": action.clear}
    return {"kind": action.kind, "sink": action.sink, "options": dict(action.options)}


def action_text(action: RuleAction) -> str:
    """How an action is named in a rule's states and errors."""
    if isinstance(action, AlarmAction):
        return f"{'clear' if action.clear else 'raise'} alarm {action.name}"
    return f"forward to {action.sink}"


def action_from_doc(doc: Any, position: int = 1) -> RuleAction:
    """An action from its stored or API form; ActionError when it is not one."""
    where = f"action {position}"
    if not isinstance(doc, Mapping):
        raise ActionError(f"{where} must be an object with a kind")
    kind = doc.get("kind")
    if kind == AlarmAction.kind:
        return _alarm_action(doc, where)
    if kind != ForwardAction.kind:
        raise ActionError(f"{where}: kind must be one of {', '.join(ACTION_KINDS)}, not {kind!r}")
    unknown = sorted(set(doc) - {"kind", "sink", "options"})
    if unknown:
        raise ActionError(f"{where}: unknown field(s) {', '.join(unknown)} (a forward action has sink and options)")
    sink, options = doc.get("sink"), doc.get("options", {})
    if not isinstance(sink, str) or not sink:
        raise ActionError(f"{where}: a forward action needs a sink")
    if not isinstance(options, Mapping):
        raise ActionError(f"{where}: options must be an object")
    return ForwardAction(sink, dict(options))


def _alarm_action(doc: Mapping[str, Any], where: str) -> AlarmAction:
    unknown = sorted(set(doc) - {"kind", "name", "severity", "clear"})
    if unknown:
        raise ActionError(f"{where}: unknown field(s) {', '.join(unknown)} (an alarm action has name, severity and "
                          "clear)")
    clear = doc.get("clear", False)
    if not isinstance(clear, bool):
        raise ActionError(f"{where}: clear must be true or false")
    severity = doc.get("severity", "major" if clear else None)
    try:
        return AlarmAction(check_name(doc.get("name")), check_severity(severity), clear)  # type: ignore[arg-type]
    except ParamError as exc:
        raise ActionError(f"{where}: {exc}") from None


def actions_from_docs(docs: Any) -> tuple[RuleAction, ...]:
    """Every action of a rule (at least one, at most ``MAX_ACTIONS``)."""
    if not isinstance(docs, list) or not docs:
        raise ActionError("a rule needs at least one action")
    if len(docs) > MAX_ACTIONS:
        raise ActionError(f"a rule has at most {MAX_ACTIONS} actions")
    return tuple(action_from_doc(doc, i) for i, doc in enumerate(docs, start=1))
