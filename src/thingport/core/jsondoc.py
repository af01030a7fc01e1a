"""Decoding JSON from devices: every way a hostile document can fail, in one place.

msgspec raises DecodeError for malformed JSON, but UnicodeDecodeError for invalid UTF-8 inside a string
and RecursionError for nesting deeper than about a thousand levels; all of them mean "not JSON we take".
"""

import msgspec

DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError)

decode = msgspec.json.Decoder().decode
