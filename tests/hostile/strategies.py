"""Hypothesis strategies for hostile device input: JSON of every shape, nasty strings, topic tricks."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Nesting that stays below the JSON decoder's recursion limit (about 1000 levels, see
# test_regressions.py for what happens above it): the property tests probe the rest of the parser.
SAFE_DEPTH = 800

NASTY_TEXT = [
    "", " ", "\x00", "a\x00b", "\x00" * 64, "\u202e", "\ufeff", "\u2028", "\ud7ff", "\U0001f600" * 3,
    "ｄｅｖ－ａ００１", "İ", "ß", "\u0130\u0131", "..", "../..", "/", "//", "%2F", "%00", "+", "#", "$SYS", "?",
    "null", "true", "0", "-0", "1e309", "NaN", "Infinity", "0x10", "\\", "\"", "'", "<script>", "' OR 1=1 --",
    "a" * 65, "a" * 4097, "é" * 40, "\t\r\n",
]

_text = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(max_size=24),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=24),
    st.integers(min_value=1, max_value=3000).map(lambda n: "x" * n),
)

_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, -0.0, 1e308, -1e308, 5e-324, 3.4028235e38, 21.0]),
)

json_scalars = st.one_of(st.none(), st.booleans(), _numbers, _text)

json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(_text, inner, max_size=4),
    ),
    max_leaves=12,
)

# values that are neither a JSON string nor a JSON integer (what /auth requires of every field)
not_str_or_int = st.one_of(
    st.none(), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
)


def nested(depth: int, leaf: str = "1", kind: str = "[") -> bytes:
    if kind == "[":
        return ("[" * depth + leaf + "]" * depth).encode()
    return ('{"a":' * depth + leaf + "}" * depth).encode()


deep_json = st.builds(nested, st.integers(min_value=1, max_value=SAFE_DEPTH), st.just("1"), st.sampled_from(["[", "{"]))


def dumps(doc: Any, ascii_only: bool = True) -> bytes:
    """JSON bytes, raw UTF-8 when ``ascii_only`` is false. Never invalid UTF-8: a lone surrogate goes out as a
    ``\\udxxx`` escape (invalid UTF-8 inside a JSON string is a known bug, see test_regressions.py)."""
    text = json.dumps(doc, ensure_ascii=ascii_only)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc).encode()


@st.composite
def broken_json(draw: st.DrawFn, valid: bytes, bad_utf8: bool = False) -> bytes:
    """A body that is not a JSON object: truncated, wrapped, spliced with NUL / invalid UTF-8, random bytes.

    ``bad_utf8``: also invalid UTF-8 (which may land inside a JSON string: the known bug of
    test_regressions.py, so only for decoders that handle it)."""
    how = draw(st.sampled_from(["truncate", "array", "scalar", "nul", "bytes", "deep", "trailing", "bom"]
                               + (["bad-utf8"] if bad_utf8 else [])))
    if how == "truncate":
        return valid[: draw(st.integers(min_value=0, max_value=len(valid) - 1))]
    if how == "array":
        return b"[" + valid + b"]"
    if how == "scalar":
        return dumps(draw(json_scalars))
    if how == "nul":
        i = draw(st.integers(min_value=1, max_value=len(valid) - 1))
        return valid[:i] + b"\x00" + valid[i:]
    if how == "bad-utf8":
        i = draw(st.integers(min_value=1, max_value=len(valid) - 1))
        return (
            valid[:i]
            + draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
            + valid[i:]
        )
    if how == "bytes":
        data = draw(st.binary(max_size=200))
        if not bad_utf8:  # random bytes that decode as UTF-8, or one that cannot start any JSON text
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                return b"\xff" + data
        return data if not data.strip().startswith(b"{") else b"\x00" + data
    if how == "deep":
        return draw(deep_json)
    if how == "trailing":
        # one trailing NUL is the C SDKs' strlen + 1 and is read past; two, or one and more, are not
        return valid + draw(st.sampled_from([b"x", b"{}", b"\x00\x00", b"\x00x", b",", b"]"]))
    return b"\xef\xbb\xbf" + valid


# --- topics -----------------------------------------------------------------------------------

# levels that can never be a valid topic level (each holds a character outside [A-Za-z0-9_] or is empty);
# "#" is a whole level only: the HTTP layer drops a URL fragment, see test_regressions.py
BAD_LEVELS = [
    "", ".", "..", "+", "#", "%2F", "%2f", "%252F", "%00", "%2E%2E", "%C0%AF", "%E2%80%AE", "%EF%BC%8F",
    "a%20b", "a+b", "$SYS", "%23", "a-b", "a.b", "%u002F", "%", "%zz", "~", "user*", "a%0Ab", "%FF",
]


def topic_variants(own: dict, others: list[dict]) -> st.SearchStrategy[str]:
    """Topics device ``own`` may NOT publish to (the part after ``/topic``), percent-encoded where needed."""
    pk, dn = own["productKey"], own["deviceName"]
    foreign = [
        t
        for o in others
        for t in (
            f"/{o['productKey']}/{o['deviceName']}/user/update",
            f"/sys/{o['productKey']}/{o['deviceName']}/thing/event/property/post",
            f"/sys/{o['productKey']}/{o['deviceName']}/thing/event/property/batch/post",
            f"/sys/{o['productKey']}/{o['deviceName']}/thing/event/alarm/post",
            f"/sys/{o['productKey']}/{o['deviceName']}/thing/deviceinfo/update",
            f"/ota/device/inform/{o['productKey']}/{o['deviceName']}",
            f"/{pk}/{o['deviceName']}/user/update",
            f"/{o['productKey']}/{dn}/user/update",
            f"/{pk}/{dn}/user/../../{o['productKey']}/{o['deviceName']}/user/update",
        )
    ]
    own_denied = [
        f"/{pk.upper()}/{dn}/user/update", f"/{pk}/{dn.upper()}/user/update", f"/{pk}/{dn}/update",
        f"/{pk}/{dn}/user", f"/{pk}/{dn}/user/", f"/{pk}/{dn}", f"/{pk}", "/", "", f"{pk}/{dn}/user/update",
        f"/sys/{pk}/{dn}/thing/event/property/set", f"/sys/{pk}/{dn}/thing/service/property/set",
        f"/sys/{pk}/{dn}/thing/event/property/post/reply", f"/sys/{pk}/{dn}/thing/event/property/post_reply",
        f"/sys/{pk}/{dn}/thing/event//post", f"/sys/{pk}/{dn}/thing/event/{'e' * 51}/post",
        f"/sys/{pk}/{dn}/thing/event/property/post",  # (a valid base: a bad level gets inserted below)
        f"/{pk}/{dn}/user/" + "a/" * 300 + "a",
        f"/ota/device/inform/{pk}/{dn}/x", f"/ota/device/upgrade/{pk}/{dn}",
        f"/shadow/update/{pk}/{dn}", f"/ext/session/{pk}/{dn}/combine/login", f"/$SYS/{pk}/{dn}/user/update",
    ]
    valid_own = [f"/{pk}/{dn}/user/update", f"/{pk}/{dn}/user/a/b_c/D9",
                 f"/sys/{pk}/{dn}/thing/deviceinfo/update", f"/ota/device/inform/{pk}/{dn}"]

    @st.composite
    def build(draw: st.DrawFn) -> str:
        base = draw(st.sampled_from(foreign + own_denied + valid_own))
        levels = base.split("/")
        must_spoil = base in valid_own or base == f"/sys/{pk}/{dn}/thing/event/property/post"
        for _ in range(draw(st.integers(min_value=1 if must_spoil else 0, max_value=2))):
            how = draw(st.sampled_from(["insert", "replace", "slash"]))
            if how == "slash" and len(levels) > 2:
                # join two levels with an encoded slash instead of "/"
                i = draw(st.integers(min_value=1, max_value=len(levels) - 2))
                levels[i:i + 2] = [levels[i] + draw(st.sampled_from(["%2F", "%2f", "%252F", "%5C"])) + levels[i + 1]]
            elif how == "replace" and len(levels) > 1:
                levels[draw(st.integers(min_value=1, max_value=len(levels) - 1))] = draw(st.sampled_from(BAD_LEVELS))
            else:
                levels.insert(draw(st.integers(min_value=1, max_value=len(levels))), draw(st.sampled_from(BAD_LEVELS)))
        return "/".join(levels)

    return build()
