"""The CLI's human output: aligned tables and ``key  value`` blocks with readable times, for people; ``--json``
prints the same documents as JSON, for programs.

Times are the documents' epoch milliseconds (fields named ``...At``, ``...Ms``, ``time``) shown as ISO 8601 in
UTC, marked ``Z``; nested values are compact JSON; a cell is cut at ``CELL_MAX`` characters, marked ``…``.
"""

import datetime
import json
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

CELL_MAX = 60
_TIME_FIELDS = ("At", "Ms")


def iso(ms: int) -> str:
    """``2026-12-04T11:22:33.123Z``: epoch milliseconds as ISO 8601 in UTC."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_time_field(name: str) -> bool:
    return name == "time" or name.endswith(_TIME_FIELDS)


def cell(name: str, value: Any, limit: int = CELL_MAX) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, int) and is_time_field(name) and value > 0:
        text = iso(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as columns under their names (the union of the rows' keys, in first-seen order)."""
    if not rows:
        return ""
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    cells = [[cell(column, row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip()]
    for line in cells:
        lines.append("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())
    return "\n".join(lines)


def block(doc: Mapping[str, Any]) -> str:
    """One document as ``name  value`` lines, names aligned."""
    if not doc:
        return ""
    width = max(len(key) for key in doc)
    width_left = max(20, shutil.get_terminal_size((120, 24)).columns - width - 2)
    return "\n".join(f"{key.ljust(width)}  {cell(key, value, width_left)}".rstrip() for key, value in doc.items())


def render(doc: Any) -> str:
    if isinstance(doc, list):
        if all(isinstance(item, Mapping) for item in doc):
            return table(doc)
        return "\n".join(cell("", item) for item in doc)
    if isinstance(doc, Mapping):
        return block(doc)
    return cell("", doc)
