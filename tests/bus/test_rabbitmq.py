"""RabbitMQ sink against the real broker on 127.0.0.1:5672, consumed by a real aio-pika consumer.

What every broker sink does (order, throughput, outages, cancellation...) is tested in test_sink_contract.py;
what only this sink does is here.
"""

import uuid
from collections.abc import Iterator

import pytest

from tests.bus.services import RABBITMQ, deliveries, require_service, run
from tests.bus.sinks import RABBITMQ_URL as URL
from tests.bus.sinks import Consumer, RabbitMQUnderTest, assert_delivered
from thingport.bus.base import SinkConfigError, SinkError
from thingport.bus.rabbitmq import RabbitMQSink


@pytest.fixture(autouse=True)
def rabbitmq() -> None:
    require_service(*RABBITMQ)


@pytest.fixture
def exchange() -> Iterator[str]:
    """An exchange name of this test alone; the exchange is deleted afterwards."""
    under_test = RabbitMQUnderTest()
    yield under_test.exchange
    under_test.cleanup()


def test_publish_opens_by_itself_and_default_options() -> None:
    sink = RabbitMQSink({})
    assert (sink.url, sink.exchange_name, sink.timeout, sink.mandatory) == (URL, "thingport", 10.0, False)

    async def body(exchange: str) -> None:
        async with Consumer(exchange) as consumer:
            sink = RabbitMQSink({"exchange": exchange, "url": URL, "timeout": 5})
            try:
                batch = deliveries(10, "pkC")
                await sink.publish(batch)  # no open() first
            finally:
                await sink.close()
            assert_delivered(await consumer.take(10), batch)

    run(body(f"thingport-test-{uuid.uuid4().hex[:12]}"))


def test_mandatory_fails_a_batch_nobody_is_bound_for(exchange: str) -> None:
    async def body() -> None:
        sink = RabbitMQSink({"exchange": exchange, "mandatory": True, "timeout": 5})
        try:
            with pytest.raises(SinkError, match="unconfirmed: AmqpError: the broker returned a message: 312 NO_ROUTE"):
                await sink.publish(deliveries(5, "pkM"))
        finally:
            await sink.close()

    run(body())


def test_wrong_credentials_fail_open() -> None:
    async def body() -> None:
        sink = RabbitMQSink({"url": "amqp://guest:not-the-password@127.0.0.1:5672/", "timeout": 5})
        with pytest.raises(SinkError, match="the broker closed the connection: 403 ACCESS_REFUSED") as failure:
            await sink.open()
        assert "not-the-password" not in str(failure.value)
        await sink.close()

    run(body())


@pytest.mark.parametrize(
    "options, option",
    [
        ({"url": "http://127.0.0.1/"}, "url"),
        ({"url": 5672}, "url"),
        ({"url": "amqp://127.0.0.1:notaport/"}, "url"),
        ({"exchange": ""}, "exchange"),
        ({"exchange": "has space"}, "exchange"),
        ({"exchange": "amq.topic"}, "exchange"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"mandatory": "yes"}, "mandatory"),
        ({"exchnage": "typo"}, "exchnage"),
    ],
)
def test_bad_options_name_the_option(options: dict, option: str) -> None:
    with pytest.raises(SinkConfigError, match=f"'{option}'"):
        RabbitMQSink(options)
