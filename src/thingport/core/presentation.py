"""How a property's value reads to a person: its unit and, for bool and enum, the model's label for it
(``mode = 1 (run)``, ``temperature = 21.5 °C``), from the thing model's TSL view (a Huawei model's too)."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Presentation:
    unit: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # value as text -> label (bool, enum)


def presentations(tsl: Mapping[str, Any]) -> dict[str, Presentation]:
    """Per property identifier, what the TSL document says about showing its values."""
    shown: dict[str, Presentation] = {}
    for prop in tsl.get("properties") or []:
        data_type = prop.get("dataType") or {}
        specs = data_type.get("specs")
        kind = data_type.get("type")
        unit, labels = "", {}
        if isinstance(specs, Mapping):
            if kind in ("int", "float", "double"):
                unit = str(specs.get("unit") or "")
            elif kind in ("bool", "enum"):
                labels = {str(key): str(label) for key, label in specs.items()}
        shown[str(prop.get("identifier"))] = Presentation(unit, labels)
    return shown


def show(value: Any, presentation: Presentation | None) -> str:
    """``value`` as JSON, with its label or unit when the model gives one."""
    text = json.dumps(value, ensure_ascii=False)
    if presentation is None:
        return text
    if presentation.labels:
        key = str(int(value)) if isinstance(value, (bool, int)) else str(value)
        label = presentation.labels.get(key)
        return f"{text} ({label})" if label else text
    if presentation.unit and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{text} {presentation.unit}"
    return text
