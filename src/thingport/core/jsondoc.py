"""Decoding JSON from devices: every way a hostile document can fail, in one place.

msgspec raises DecodeError for malformed JSON, but UnicodeDecodeError for invalid UTF-8 inside a string
and RecursionError for nesting deeper than about a thousand levels; all of them mean "not JSON we take".

Device bodies may end in one NUL: older C SDKs send ``strlen(payload) + 1`` bytes. ``decode_device``
reads past it (and past trailing whitespace), without copying the body; the stored payload keeps it.
"""

import msgspec

DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError)

decode = msgspec.json.Decoder().decode

_WHITESPACE = b" \t\r\n"
_TRAILING = frozenset(b"\x00" + _WHITESPACE)


def without_trailing_nul(body: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """``body`` without trailing whitespace and one NUL before it (a view, not a copy); as it is when it ends
    in neither (the common case costs one byte check). Whitespace before the NUL is JSON's own."""
    if not body or body[-1] not in _TRAILING:
        return body
    end = len(body)
    while end and body[end - 1] in _WHITESPACE:
        end -= 1
    if end and body[end - 1] == 0:
        end -= 1
    return memoryview(body)[:end]


def decode_device(body: bytes | bytearray | memoryview) -> object:
    """``decode`` of a device's body, tolerating the trailing NUL of C SDKs."""
    return decode(without_trailing_nul(body))
