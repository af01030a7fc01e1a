"""Which time a reported value is for, and the device time formats the dialects carry."""

import datetime

MAX_FUTURE_MS = 24 * 3600 * 1000
_IOTDA_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y%m%dT%H%M%SZ")


def sample_time(device_ms: int | None, received_ms: int) -> int:
    """The device's time when present and sane (positive, at most 24 h ahead), else the receive time."""
    if device_ms is not None and 0 < device_ms <= received_ms + MAX_FUTURE_MS:
        return device_ms
    return received_ms


def parse_iotda_time(text: object) -> int | None:
    """IoTDA ``event_time`` (``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`` or ``yyyyMMdd'T'HHmmss'Z'``, UTC) in ms;
    None when absent or malformed (the caller then uses the receive time)."""
    if not isinstance(text, str) or len(text) > 32:
        return None
    for fmt in _IOTDA_FORMATS:
        try:
            at = datetime.datetime.strptime(text, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
        return int(at.timestamp() * 1000)
    return None
