"""The server's logging, set up once: one handler on the root logger that every logger reaches (uvicorn's
included: it is given no handlers of its own), a filter on it that masks credentials, and quiet client
libraries.

Why a filter rather than care at each call: the lines that leaked were the libraries' own (httpx logs every
request's full URL, user info and query string, at INFO), and any exception text may quote a URL. The
filter masks every URL's user info and query values, ASGI scopes' query strings (uvicorn's TRACE lines)
and ``password=...``-like pairs in each record's message and traceback (``urls.redact_text``). Device
secrets, tokens and API keys are never handed to a logger in the first place (the dialects and the API log
none); the filter is the net under the libraries.
"""

import logging

from thingport.urls import redact_text

# Loggers of client libraries, and the least level they log at. httpx logs one INFO line per request (one
# per webhook batch, with the full URL): the webhook sink reports its own failures, so those lines go.
# httpcore's DEBUG lines (connection stages, no URL) stay: they tell why a sink cannot connect.
QUIET = {
    "httpx": logging.WARNING,
    "alembic.runtime.plugins": logging.WARNING,  # one INFO line per plugin on every schema check
}


class RedactSecrets(logging.Filter):
    """Masks credentials in a record's message and exception text before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def configure(level: int, fmt: str) -> None:
    """Root handler with ``fmt`` at ``level``, the filter on it, warnings through it, libraries quieted."""
    logging.basicConfig(level=level, format=fmt, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets())
    logging.captureWarnings(True)
    for name, least in QUIET.items():
        logging.getLogger(name).setLevel(max(level, least))
