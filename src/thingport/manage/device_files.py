"""Device files: the CSV and JSON lines that `device import` reads and `device export` writes.

One row a device. Columns (CSV header, or JSON object keys): ``deviceName``, ``deviceSecret`` (empty or
absent: generated), ``deviceId`` (IoTDA device_id; absent: derived), ``productKey`` (absent: the one the
import names). What an export adds and an import cannot set (``status``, ``createdAt``, ``lastAuthAt``,
``gateway``) is accepted and ignored, so an export imports again as it is. Any other column refuses the
whole file: a misspelt ``deviceSecret`` column must not quietly become generated secrets.

Parsing never raises on a bad row: the row carries what is wrong with it, for the import's report.
"""

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from thingport.core.errors import ParamError
from thingport.core.model import Device

FORMATS = ("csv", "jsonl")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
IMPORTED = ("productKey", "deviceName", "deviceId", "deviceSecret")
IGNORED = ("status", "createdAt", "lastAuthAt", "gateway")
EXPORTED = ("productKey", "deviceName", "deviceId", "status", "createdAt", "lastAuthAt")
MAX_LINE_CHARS = 4096  # a row is a few hundred characters at most; a longer line is refused, not parsed


@dataclass(slots=True)
class DeviceRow:
    """One row of a device file: ``line`` is its line number (1-based) for the report; ``error`` says why
    the row could not be read at all (the other fields are then what could be read, maybe None)."""

    line: int
    device_name: str | None = None
    device_secret: str | None = None
    device_id: str | None = None
    product_key: str | None = None
    error: str | None = None


def format_of(name: str | None, given: str | None) -> str:
    """The format ``given``, else the one a file name's extension says."""
    if given is not None:
        if given not in FORMATS:
            raise ParamError(f"format must be one of {', '.join(FORMATS)}")
        return given
    suffix = "" if name is None else name[name.rfind("."):].lower() if "." in name else ""
    if suffix not in EXTENSIONS:
        raise ParamError("cannot tell the format from the file name: give --format csv or --format jsonl")
    return EXTENSIONS[suffix]


def parse(lines: Iterable[str], file_format: str) -> Iterator[DeviceRow]:
    """The rows of a device file, given as its text lines (with or without their line ends)."""
    if file_format == "csv":
        return _parse_csv(lines)
    if file_format == "jsonl":
        return _parse_jsonl(lines)
    raise ParamError(f"format must be one of {', '.join(FORMATS)}")


def _check_columns(columns: Iterable[str]) -> None:
    unknown = [c for c in columns if c not in IMPORTED and c not in IGNORED]
    if unknown:
        raise ParamError(f"unknown column {unknown[0]!r}: columns are {', '.join(IMPORTED)}")


def _row(line: int, values: dict[str, Any]) -> DeviceRow:
    row = DeviceRow(line)
    for key, attr in (("deviceName", "device_name"), ("deviceSecret", "device_secret"), ("deviceId", "device_id"),
                      ("productKey", "product_key")):
        value = values.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            row.error = f"{key} must be a string"
            continue
        setattr(row, attr, value)
    if row.error is None and row.device_name is None and row.device_id is None:
        row.error = "a row needs a deviceName or a deviceId"
    return row


def _numbered(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(lines, 1):
        if number == 1:
            line = line.removeprefix("\ufeff")  # a spreadsheet's byte order mark
        yield number, line.rstrip("\r\n")


def _parse_csv(lines: Iterable[str]) -> Iterator[DeviceRow]:
    numbered = ((n, text) for n, text in _numbered(lines) if text.strip())
    header = next(numbered, None)
    if header is None:
        raise ParamError("the file is empty: a CSV device file starts with a header, e.g. deviceName,deviceSecret")
    columns = [c.strip() for c in next(csv.reader([header[1]]))]
    _check_columns(columns)
    if "deviceName" not in columns and "deviceId" not in columns:
        raise ParamError("the CSV header names no deviceName (nor deviceId) column, e.g. deviceName,deviceSecret")
    if len(set(columns)) != len(columns):
        raise ParamError("the CSV header names a column twice")
    for number, text in numbered:
        if len(text) > MAX_LINE_CHARS:
            yield DeviceRow(number, error=f"line longer than {MAX_LINE_CHARS} characters")
            continue
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            yield DeviceRow(number, error=f"not CSV: {exc}")
            continue
        if len(fields) != len(columns):
            yield DeviceRow(number, error=f"{len(fields)} fields, the header has {len(columns)}")
            continue
        yield _row(number, dict(zip(columns, (f.strip() for f in fields), strict=True)))


def _parse_jsonl(lines: Iterable[str]) -> Iterator[DeviceRow]:
    for number, text in _numbered(lines):
        if not text.strip():
            continue
        if len(text) > MAX_LINE_CHARS:
            yield DeviceRow(number, error=f"line longer than {MAX_LINE_CHARS} characters")
            continue
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            yield DeviceRow(number, error=f"not JSON: {exc.msg}")
            continue
        if not isinstance(values, dict):
            yield DeviceRow(number, error="not a JSON object")
            continue
        try:
            _check_columns(values)
        except ParamError as exc:
            yield DeviceRow(number, error=str(exc))
            continue
        yield _row(number, values)


def export_record(device: Device, with_secret: bool) -> dict[str, Any]:
    """A device as an export writes it (and an import reads it back)."""
    doc: dict[str, Any] = {
        "productKey": device.product_key,
        "deviceName": device.device_name,
        "deviceId": device.device_id,
        "status": "enabled" if device.enabled else "disabled",
        "createdAt": device.created_ms,
        "lastAuthAt": device.last_auth_ms,
    }
    if with_secret:
        doc["deviceSecret"] = device.secret
    return doc


def export_columns(with_secret: bool) -> tuple[str, ...]:
    return (*EXPORTED, "deviceSecret") if with_secret else EXPORTED


SECRET_COLUMNS = ("productKey", "deviceName", "deviceId", "deviceSecret")  # what an import's --out receives


class _Line:
    """A file-like sink for csv.writer that keeps the last line written."""

    text = ""

    def write(self, text: str) -> int:
        self.text = text
        return len(text)


class LineWriter:
    """Records as lines of a device file (each ending in a newline), in the given columns."""

    def __init__(self, file_format: str, columns: tuple[str, ...]) -> None:
        self._csv = file_format == "csv"
        self._columns = columns
        self._sink = _Line()
        self._writer = csv.writer(self._sink, lineterminator="\n")

    def header(self) -> str:
        """The CSV header line; nothing for JSON lines."""
        if not self._csv:
            return ""
        self._writer.writerow(self._columns)
        return self._sink.text

    def line(self, record: dict[str, Any]) -> str:
        if not self._csv:
            return json.dumps({c: record[c] for c in self._columns}, ensure_ascii=False) + "\n"
        self._writer.writerow(["" if record[c] is None else record[c] for c in self._columns])
        return self._sink.text
