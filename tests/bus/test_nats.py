"""NATS JetStream sink against the real server on 127.0.0.1:4222, read back by a real JetStream consumer.

What every broker sink does (order, throughput, outages, cancellation...) is tested in test_sink_contract.py;
what only this sink does (deduplication, existing streams, JetStream's refusals...) is here.
"""

from collections.abc import Iterator

import nats
import pytest

from tests.bus.services import NATS, deliveries, require_service, run
from tests.bus.sinks import NATS_URL as URL
from tests.bus.sinks import NatsUnderTest, assert_stored, read_stream
from thingport.bus.base import Delivery, SinkConfigError, SinkError
from thingport.bus.nats import NatsSink


@pytest.fixture(autouse=True)
def nats_server() -> None:
    require_service(*NATS)


@pytest.fixture
def names() -> Iterator[dict]:
    """A stream and subject prefix of this test alone; the stream is deleted afterwards."""
    under_test = NatsUnderTest()
    yield under_test.options
    under_test.cleanup()


def test_a_batch_offered_again_is_stored_once(names: dict) -> None:
    async def body() -> None:
        batch = deliveries(30, "pkD")
        sink = NatsSink(names)
        try:
            await sink.publish(batch)  # opens by itself
            await sink.publish(batch)  # as the forwarder would after a lost ack: Nats-Msg-Id dedups
            await sink.publish(batch[10:])
        finally:
            await sink.close()
        prefix = names["subject_prefix"]
        assert_stored(await read_stream(names["stream"], f"{prefix}.>", 30), batch, prefix)

    run(body())


def test_defaults_and_an_existing_stream_is_used_as_it_is(names: dict) -> None:
    sink = NatsSink({})
    assert (sink.url, sink.stream, sink.subject_prefix, sink.timeout) == (URL, "THINGPORT", "thingport", 10.0)

    async def body() -> None:
        prefix = names["subject_prefix"]
        nc = await nats.connect(URL)
        try:  # made beforehand, with a wider subject filter than the sink would choose
            await nc.jetstream().add_stream(name=names["stream"], subjects=[f"{prefix}.>", "elsewhere.>"])
        finally:
            await nc.close()
        sink = NatsSink({**names, "url": URL, "timeout": 5, "max_in_flight": 7})
        batch = deliveries(40, "pkE")
        try:
            await sink.publish(batch)  # 40 through a window of 7
        finally:
            await sink.close()
        assert_stored(await read_stream(names["stream"], f"{prefix}.>", 40), batch, prefix)
        nc = await nats.connect(URL)
        try:
            info = await nc.jetstream().stream_info(names["stream"])
            assert info.config.subjects == [f"{prefix}.>", "elsewhere.>"]
        finally:
            await nc.close()

    run(body())


def test_a_subject_no_stream_takes_fails(names: dict) -> None:
    async def body() -> None:
        prefix = names["subject_prefix"]
        nc = await nats.connect(URL)
        try:  # the stream exists but does not cover the sink's subjects
            await nc.jetstream().add_stream(name=names["stream"], subjects=[f"{prefix}.other.>"])
        finally:
            await nc.close()
        sink = NatsSink({**names, "timeout": 2})
        try:
            with pytest.raises(SinkError, match="not acked: no stream takes its subject"):
                await sink.publish(deliveries(3, "pkS"))
        finally:
            await sink.close()

    run(body())


def test_a_window_smaller_than_the_batch(names: dict) -> None:
    async def body() -> None:
        sink = NatsSink({**names, "max_in_flight": 3, "timeout": 5})
        batch = deliveries(100, "pkW")
        try:
            await sink.publish(batch)  # 100 through a window of 3: the sender must be woken by the acks
        finally:
            await sink.close()
        prefix = names["subject_prefix"]
        assert_stored(await read_stream(names["stream"], f"{prefix}.>", 100), batch, prefix)

    run(body())


def test_a_jetstream_error_ack_fails_the_batch_with_its_reason(names: dict) -> None:
    async def body() -> None:
        prefix = names["subject_prefix"]
        nc = await nats.connect(URL)
        try:  # an existing stream is used as it is: this one refuses messages over 100 bytes
            await nc.jetstream().add_stream(name=names["stream"], subjects=[f"{prefix}.>"], max_msg_size=100)
        finally:
            await nc.close()
        sink = NatsSink({**names, "timeout": 5})
        try:
            small = [Delivery(1, 901, "pkE", "dev-1", "raw", b"{}")]
            await sink.publish(small)
            with pytest.raises(SinkError, match="not acked: JetStream error"):
                await sink.publish(small + [Delivery(2, 902, "pkE", "dev-1", "raw", b'"' + b"x" * 200 + b'"')])
        finally:
            await sink.close()

    run(body())


@pytest.mark.parametrize(
    "options, option",
    [
        ({"url": "http://127.0.0.1:4222"}, "url"),
        ({"url": ""}, "url"),
        ({"url": "nats://127.0.0.1:4222,amqp://x"}, "url"),
        ({"stream": "has.dot"}, "stream"),
        ({"stream": ""}, "stream"),
        ({"subject_prefix": "a.*"}, "subject_prefix"),
        ({"subject_prefix": "a..b"}, "subject_prefix"),
        ({"subject_prefix": ""}, "subject_prefix"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"timeout": -1}, "timeout"),
        ({"subjectprefix": "x"}, "subjectprefix"),
    ],
)
def test_bad_options_name_the_option(options: dict, option: str) -> None:
    with pytest.raises(SinkConfigError, match=f"'{option}'"):
        NatsSink(options)
