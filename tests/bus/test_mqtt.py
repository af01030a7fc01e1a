"""MQTT sink against the real Mosquitto on 127.0.0.1:1883, received by a real MQTT subscriber.

What every broker sink does (order, throughput, outages, cancellation...) is tested in test_sink_contract.py;
what only this sink does is here.
"""

import uuid

import pytest

from tests.bus.services import MOSQUITTO, deliveries, require_service, run
from tests.bus.sinks import MqttUnderTest, Subscriber, expected
from thingport.bus.base import SinkConfigError
from thingport.bus.mqtt import MqttSink


@pytest.fixture(autouse=True)
def mosquitto() -> None:
    require_service(*MOSQUITTO)


@pytest.fixture
def prefix() -> str:
    return MqttUnderTest().prefix


def test_defaults_options_and_a_window_smaller_than_the_batch(prefix: str) -> None:
    sink = MqttSink({})
    assert (sink.host, sink.port, sink.topic_prefix, sink.timeout) == ("127.0.0.1", 1883, "thingport", 10.0)
    assert sink.client_id.startswith("thingport-") and sink.client_id != MqttSink({}).client_id
    numeric = MqttSink({"username": 1000, "password": 12345, "client_id": 7})  # as `key=123` arrives from the CLI
    assert (numeric.username, numeric.password, numeric.client_id) == ("1000", "12345", "7")

    async def body() -> None:
        with Subscriber(prefix) as sub:
            client_id = f"tptest-{uuid.uuid4().hex[:8]}"
            sink = MqttSink({"topic_prefix": prefix, "client_id": client_id, "max_in_flight": 5, "timeout": 5})
            batch = deliveries(60, "pkW")
            try:
                await sink.publish(batch)  # opens by itself; 60 through a window of 5
            finally:
                await sink.close()
            assert await sub.take(60) == expected(batch, prefix)

    run(body())


@pytest.mark.parametrize(
    "options, option",
    [
        ({"host": ""}, "host"),
        ({"host": "a b"}, "host"),
        ({"port": 0}, "port"),
        ({"port": "1883"}, "port"),
        ({"password": "x"}, "password"),
        ({"username": "u", "password": 1.5}, "password"),
        ({"username": ""}, "username"),
        ({"topic_prefix": "a/+/b"}, "topic_prefix"),
        ({"topic_prefix": "a//b"}, "topic_prefix"),
        ({"topic_prefix": "a/#"}, "topic_prefix"),
        ({"client_id": ""}, "client_id"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"timeout": float("nan")}, "timeout"),
        ({"qos": 2}, "qos"),
    ],
)
def test_bad_options_name_the_option(options: dict, option: str) -> None:
    with pytest.raises(SinkConfigError, match=f"'{option}'"):
        MqttSink(options)
