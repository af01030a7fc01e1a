"""Credentials in URLs are masked wherever a URL is shown: urls.redact_text, and the log filter that runs
it on every record's message and traceback."""

import logging
import sys

import pytest

from thingport.logs import RedactSecrets
from thingport.urls import redact, redact_text


@pytest.mark.parametrize("text, shown", [
    ('HTTP Request: POST http://ops:Passw0rd@host/in?api_token=abc&x=1 "HTTP/1.1 200 OK"',
     'HTTP Request: POST http://ops:***@host/in?api_token=***&x=*** "HTTP/1.1 200 OK"'),
    ("nats://tok@h1:4222,nats://u:p@ss@h2", "nats://***@h1:4222,nats://u:***@h2"),
    ("scope={'path': '/in', 'query_string': b'api_token=zz'}", "scope={'path': '/in', 'query_string': b'***'}"),
    ("webhook: HTTP 500: no route for /fail?api_token=zz", "webhook: HTTP 500: no route for /fail?api_token=***"),
    ("host=x password=hunter2 dbname=y", "host=x password=*** dbname=y"),
    ("postgresql://u:pw@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=***"),
    ("amqp://guest@127.0.0.1:5672/", "amqp://***@127.0.0.1:5672/"),
    ("nothing to hide? no: 1/2 = 0.5 and a@b.c", "nothing to hide? no: 1/2 = 0.5 and a@b.c"),
])
def test_redact_text_masks_user_info_and_query_values(text: str, shown: str) -> None:
    assert redact_text(text) == shown


def test_redact_keeps_a_url_without_credentials() -> None:
    assert redact("postgresql://db.internal:5432/thingport") == "postgresql://db.internal:5432/thingport"


def test_the_filter_masks_messages_arguments_and_tracebacks() -> None:
    try:
        raise ConnectionError("cannot reach amqp://guest:s3cret@127.0.0.1:5672/")
    except ConnectionError:
        record = logging.LogRecord("lib", logging.ERROR, __file__, 1, "POST %s", ("http://a:s3cret@h/?t=tok",),
                                   exc_info=sys.exc_info())
    assert RedactSecrets().filter(record)
    text = logging.Formatter().format(record)
    assert "s3cret" not in text and "tok" not in text
    assert "http://a:***@h/?t=***" in text and "amqp://guest:***@127.0.0.1:5672/" in text
