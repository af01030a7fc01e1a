"""A property's history as CSV: what ``GET …/history.csv`` and ``device history --csv`` write.

Columns ``time`` (ISO 8601, UTC, milliseconds: what a spreadsheet reads), ``timeMs`` (ms since the epoch,
exact), ``value`` (a string as it is, anything else as JSON: ``21.5``, ``true``, ``{"a":1}``), ``label``
(the thing model's label of a bool or enum value, or its unit, empty otherwise) and ``messageId``.
"""

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from thingport.core.presentation import Presentation

HEADER = ("time", "timeMs", "value", "label", "messageId")


def iso_utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _label(value: Any, shown: Presentation | None) -> str:
    if shown is None:
        return ""
    if shown.labels:
        key = str(int(value)) if isinstance(value, (bool, int)) else str(value)
        return shown.labels.get(key, "")
    if shown.unit and isinstance(value, (int, float)) and not isinstance(value, bool):
        return shown.unit
    return ""


def csv_text(rows: Iterable[tuple[int, Any, int]], shown: Presentation | None, header: bool = False) -> str:
    """CSV lines (CRLF, as RFC 4180 says) for (time, value, messageId) rows, with the header first if asked."""
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(HEADER)
    for at, value, message_id in rows:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        writer.writerow((iso_utc(at), at, text, _label(value, shown), message_id))
    return out.getvalue()
