"""Each sink's options struct is the one declaration of its options: the names a sink accepts, the ones the
CLI keeps as text, and the ones nobody is shown."""

from dataclasses import dataclass, is_dataclass
from pathlib import Path

import pytest

from tests.support import cli
from thingport.api.views import subscription_json
from thingport.bus.base import SinkConfigError
from thingport.bus.factory import PUSH_MODULES, create_sink, options_type
from thingport.bus.options import option_names, secret
from thingport.bus.rabbitmq import RabbitMQOptions, RabbitMQSink
from thingport.cli import parse_options
from thingport.core.model import Subscription


def subscription(sink: str, options: dict) -> Subscription:
    return Subscription(1, "s", ("pk",), ("raw",), None, sink, options, 0, True, 0)


@pytest.mark.parametrize("kind", list(PUSH_MODULES))
def test_a_sink_accepts_the_options_its_struct_declares_and_names_them_when_refusing_others(kind: str) -> None:
    struct = options_type(kind)
    assert struct is not None and is_dataclass(struct)
    with pytest.raises(SinkConfigError, match=f"known options: {', '.join(option_names(struct))}\\)"):
        create_sink(kind, {"bogus": 1})


def test_credentials_are_shown_as_stars_and_the_rest_as_given() -> None:
    hook = subscription_json(subscription("webhook", {"url": "https://u:p@h/in?t=1", "secret": "k", "timeout": 2}))
    assert hook["options"] == {"url": "***", "secret": "***", "timeout": 2}
    mqtt = subscription_json(subscription("mqtt", {"host": "h", "username": "u", "password": "p"}))
    assert mqtt["options"] == {"host": "h", "username": "u", "password": "***"}
    rabbit = subscription_json(subscription("rabbitmq", {"url": "amqp://u:p@h/", "exchange": "x"}))
    assert rabbit["options"] == {"url": "***", "exchange": "x"}


def test_options_of_a_sink_without_a_struct_are_all_hidden() -> None:
    shown = subscription_json(subscription("http", {"password": "p", "x": 1}))
    assert shown["options"] == {"password": "***", "x": "***"}


def test_the_cli_keeps_text_options_as_text_and_reads_numbers_in_the_others() -> None:
    assert parse_options("webhook", ("secret=1.50", "timeout=2.5")) == {"secret": "1.50", "timeout": 2.5}
    assert parse_options("mqtt", ("username=007", "port=1884", "max_in_flight=10")) == {
        "username": "007", "port": 1884, "max_in_flight": 10}


@dataclass(frozen=True)
class WithSasl(RabbitMQOptions):
    sasl_password: str | None = secret(None)


def test_a_secret_option_added_to_a_struct_is_accepted_kept_as_text_and_never_shown(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A future option needs its struct field only: masking, the CLI and the option check all follow."""
    monkeypatch.setattr(RabbitMQSink, "options_type", WithSasl)
    cli(data_dir, "product", "create", "--name", "sasl", "--product-key", "pkSasl00001")
    created = cli(data_dir, "subscription", "create", "--name", "sasl", "--product-key", "pkSasl00001",
                  "--sink", "rabbitmq", "--option", "sasl_password=12345", "--option", "exchange=tp-sasl", "--no-check")
    assert created["options"] == {"sasl_password": "***", "exchange": "tp-sasl"}
    listed = {s["name"]: s for s in cli(data_dir, "subscription", "list")}["sasl"]
    assert listed["options"] == {"sasl_password": "***", "exchange": "tp-sasl"}
    assert parse_options("rabbitmq", ("sasl_password=12345",)) == {"sasl_password": "12345"}
