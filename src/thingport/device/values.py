"""Python values to what each dialect's thing model expects, so device code can pass ``True``,
``datetime``, ``Enum`` or ``Decimal`` and get a report the server accepts.

The dialects differ: an Alibaba TSL ``bool`` is ``0``/``1`` and a ``date`` is UTC milliseconds as a string;
an IoTDA ``boolean`` is ``true``/``false`` and a ``DateTime`` is ``yyyyMMdd'T'HHmmss'Z'``.
Naive datetimes follow Python's rule (local time).
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from thingport.core.timestamps import datetime_ms

UTC = _dt.UTC


@dataclass(frozen=True, slots=True)
class Timed:
    """A property value with the time it was sampled (Alink ``{"value": v, "time": ms}``)."""

    value: Any
    time_ms: int | _dt.datetime


@dataclass(frozen=True, slots=True)
class Service:
    """One IoTDA service's properties; ``event_time`` (when sampled) defaults to the report's."""

    service_id: str
    properties: Mapping[str, Any]
    event_time: _dt.datetime | str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an IoTDA report was acknowledged with: the stored message ids (one per device) and the
    properties the product model refused (the others were stored)."""

    message_ids: tuple[int, ...]
    refused: tuple[dict[str, Any], ...] = field(default=())

    @property
    def message_id(self) -> int:
        return self.message_ids[0]


def epoch_ms(at: int | _dt.datetime) -> int:
    """Milliseconds since the epoch of ``at`` (an int is taken as already in ms)."""
    if isinstance(at, _dt.datetime):
        return datetime_ms(at)
    if isinstance(at, bool) or not isinstance(at, int):
        raise TypeError(f"a time must be ms since the epoch or a datetime, not {type(at).__name__}")
    return at


def iotda_event_time(at: _dt.datetime | str) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`` in UTC (a string is passed through as already formatted)."""
    if isinstance(at, str):
        return at
    utc = at.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _convert(value: Any, leaf: Callable[[Any], Any]) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _convert(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_convert(v, leaf) for v in value]
    if isinstance(value, enum.Enum):
        return _convert(value.value, leaf)
    if isinstance(value, Decimal):
        return float(value)
    converted = leaf(value)
    if converted is not None and not isinstance(converted, (str, int, float)):
        raise TypeError(f"cannot report a {type(value).__name__} as a thing-model value")
    return converted


def _alink_leaf(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, _dt.datetime):
        return str(epoch_ms(value))
    return value


def _iotda_leaf(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value


def alink_value(value: Any) -> Any:
    """A value for an Alibaba TSL property: bool -> 0/1, datetime -> "ms", Enum -> its value."""
    return _convert(value, _alink_leaf)


def iotda_value(value: Any) -> Any:
    """A value for an IoTDA property: datetime -> yyyyMMdd'T'HHmmss'Z', Enum -> its value."""
    return _convert(value, _iotda_leaf)


def alink_params(properties: Mapping[str, Any], time_ms: int | _dt.datetime | None = None) -> dict[str, Any]:
    """Alink ``params``: plain values, or ``{"value","time"}`` for Timed values and when ``time_ms`` is given."""
    params: dict[str, Any] = {}
    for name, value in properties.items():
        if isinstance(value, Timed):
            params[name] = {"value": alink_value(value.value), "time": epoch_ms(value.time_ms)}
        elif time_ms is not None:
            params[name] = {"value": alink_value(value), "time": epoch_ms(time_ms)}
        else:
            params[name] = alink_value(value)
    return params


def iotda_services(
    services: Service | Sequence[Service] | Mapping[str, Mapping[str, Any]],
    event_time: _dt.datetime | str | None = None,
) -> list[dict[str, Any]]:
    """IoTDA ``services[]`` from Service objects or ``{service_id: {property: value}}``."""
    if isinstance(services, Service):
        services = [services]
    elif isinstance(services, Mapping):
        services = [Service(sid, props) for sid, props in services.items()]
    out: list[dict[str, Any]] = []
    for service in services:
        doc: dict[str, Any] = {"service_id": service.service_id, "properties": iotda_value(service.properties)}
        when = service.event_time if service.event_time is not None else event_time
        if when is not None:
            doc["event_time"] = iotda_event_time(when)
        out.append(doc)
    return out


def dumps(doc: Any) -> bytes:
    """Compact JSON; NaN and infinities are refused here rather than by the server."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
