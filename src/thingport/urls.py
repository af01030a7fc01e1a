"""URLs that carry credentials (database, brokers, webhooks), shown without them.

A URL's secrets sit in two places: its user info (``amqp://user:password@host``, ``nats://token@host``) and
its query string (``https://host/in?api_token=...``, libpq's ``?password=...``). Both are masked wherever a
URL is shown: banners, error messages, and every log line (``thingport.logs`` runs ``redact_text`` on each).
"""

import re

MASK = "***"

# scheme://userinfo@ : userinfo runs to the last @ before the path (a password may hold an @)
_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#@'\"<>]*(?:@[^\s/?#@'\"<>]*)*)@"
)
# a query string after a URL (scheme://...?q) or after a request target ( /path?q): names kept, values masked
_QUERY = re.compile(
    r"(?P<before>(?:\b[A-Za-z][A-Za-z0-9+.\-]*://|(?<![\w.~/-])/)[^\s?#'\"<>]*)\?(?P<query>[^\s#'\"<>]+)"
)
# uvicorn's TRACE lines show the ASGI scope: 'query_string': b'...'
_SCOPE_QUERY = re.compile(
    r"(?P<key>['\"]query_string['\"]:\s*b)(?P<quote>['\"])(?P<query>(?:(?!(?P=quote)).)+)(?P=quote)"
)
# key=value pairs that name a secret (a libpq conninfo string, a form body in an error message)
_SECRET_PAIR = re.compile(
    r"(?i)\b(?P<key>password|passwd|pwd|secret|token|access_token|api_?key|api_token)=(?P<value>[^\s&;,'\"<>]+)"
)


def _userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match["userinfo"].partition(":")
    shown = f"{user}:{MASK}" if sep else MASK  # a lone user info is a token (nats://token@host)
    return f"{match['scheme']}{shown}@"


def _masked_query(query: str) -> str:
    return "&".join(f"{pair.partition('=')[0]}={MASK}" if "=" in pair else MASK for pair in query.split("&"))


def redact_text(text: str) -> str:
    """``text`` with the user info and query values of every URL in it masked, ASGI scopes' query strings
    too, and ``password=...``-like pairs."""
    if "@" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "?" in text:
        text = _QUERY.sub(lambda m: f"{m['before']}?{_masked_query(m['query'])}", text)
    if "query_string" in text:
        text = _SCOPE_QUERY.sub(lambda m: f"{m['key']}{m['quote']}{MASK}{m['quote']}", text)
    if "=" in text:
        text = _SECRET_PAIR.sub(lambda m: f"{m['key']}={MASK}", text)
    return text


def redact(url: str) -> str:
    """The URL (or comma-separated URLs) with passwords, tokens and query values replaced by ``***``, for
    messages and banners."""
    return redact_text(url)
