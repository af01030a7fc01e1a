"""The CLI's human output: aligned tables and ``key  value`` blocks with readable times, for people; ``--json``
prints the same documents as JSON, for programs.

Times are the documents' epoch milliseconds (fields named ``...At``, ``...Ms``, ``time``) shown as ISO 8601 in
UTC, marked ``Z``; nested values are compact JSON; a cell is cut at ``CELL_MAX`` characters, marked ``…``.
"""

import datetime
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

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


class Progress:
    """Progress of a long task, on ``out`` (standard error, so ``--json`` output stays clean): on a terminal
    one line redrawn in place (carriage return) at most every ``redraw_s``; anywhere else (a log file, a
    pipe) plain lines, at most one every ``line_s``, so a log holds no redraws and is not flooded."""

    def __init__(self, out: TextIO, redraw_s: float = 0.5, line_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._out = out
        self.redraw = out.isatty()
        self._every = redraw_s if self.redraw else line_s
        self._clock = clock
        self._last: float | None = None
        self._width = 0

    def update(self, line: str) -> None:
        """Show ``line`` if the last one shown is old enough (the first one always)."""
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            return
        self._last = now
        self._write(line, end=False)

    def done(self, line: str) -> None:
        """Show ``line`` now, ending a redrawn one: the next output starts on a line of its own."""
        self._last = None
        self._write(line, end=True)

    def _write(self, line: str, end: bool) -> None:
        if self.redraw:
            self._out.write("\r" + line.ljust(self._width) + ("\n" if end else ""))
            self._width = 0 if end else len(line)
        else:
            self._out.write(line + "\n")
        self._out.flush()
