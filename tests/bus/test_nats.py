"""NATS JetStream sink against the real server on 127.0.0.1:4222, read back by a real JetStream consumer."""

import asyncio
import time
import uuid
from collections.abc import Iterator

import nats
import pytest

from tests.bus.services import NATS, deliveries, eventually, require_service, run
from tests.bus.tcp_proxy import TcpProxy
from thingport.bus.base import Delivery, SinkConfigError, SinkError
from thingport.bus.nats import NatsSink

URL = "nats://127.0.0.1:4222"


@pytest.fixture(autouse=True)
def nats_server() -> None:
    require_service(*NATS)


@pytest.fixture
def names() -> Iterator[dict]:
    """A stream and subject prefix of this test alone; the stream is deleted afterwards."""
    token = uuid.uuid4().hex[:12]
    options = {"stream": f"TP_TEST_{token}", "subject_prefix": f"tptest.{token}"}
    yield options

    async def delete() -> None:
        nc = await nats.connect(URL)
        try:
            await nc.jetstream().delete_stream(options["stream"])
        except nats.js.errors.NotFoundError:
            pass
        finally:
            await nc.close()

    run(delete())


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 4222) as p:
        yield p


async def read_stream(stream: str, subjects: str, count: int, limit: float = 5.0) -> list:
    """Every message of the stream, in stream order (an ephemeral pull consumer), checking there are ``count``."""
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        assert info.state.messages == count
        sub = await js.pull_subscribe(subjects, stream=stream)
        got: list = []
        deadline = time.monotonic() + limit
        while len(got) < count and time.monotonic() < deadline:
            for msg in await sub.fetch(min(500, count - len(got)), timeout=limit):
                await msg.ack()
                got.append(msg)
        return got
    finally:
        await nc.close()


def assert_stored(messages: list, batch: list[Delivery], prefix: str) -> None:
    assert [m.subject for m in messages] == [d.route(".", prefix) for d in batch]
    assert [m.data for m in messages] == [d.body for d in batch]
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [str(d.message_id) for d in batch]


def test_batches_arrive_in_order_with_subjects_and_ids(names: dict) -> None:
    async def body() -> None:
        batches = [deliveries(1, "pkA"), deliveries(50, "pkA", start=2), deliveries(200, "pkB", start=52)]
        sink = NatsSink(names)
        try:
            await sink.open()  # creates the stream
            for batch in batches:
                await sink.publish(batch)
            await sink.publish([])
        finally:
            await sink.close()
        everything = [d for batch in batches for d in batch]
        prefix = names["subject_prefix"]
        assert_stored(await read_stream(names["stream"], f"{prefix}.>", len(everything)), everything, prefix)

    run(body())


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


def test_throughput_5000_in_batches_of_500(names: dict) -> None:
    async def body() -> float:
        batch_size, total = 500, 5000
        messages = deliveries(total, "pkT")
        sink = NatsSink(names)
        try:
            await sink.open()
            started = time.perf_counter()
            for i in range(0, total, batch_size):
                await sink.publish(messages[i : i + batch_size])
            elapsed = time.perf_counter() - started
        finally:
            await sink.close()
        prefix = names["subject_prefix"]
        got = await read_stream(names["stream"], f"{prefix}.>", total, limit=10)
        assert [m.data for m in got] == [d.body for d in messages]
        return elapsed

    elapsed = run(body())
    print(f"\nnats: 5000 deliveries of ~200 B in batches of 500: {elapsed:.2f} s, {5000 / elapsed:,.0f}/s")


def test_outage_fails_the_batch_then_reconnects(names: dict, proxy: TcpProxy) -> None:
    async def body() -> None:
        a, b, c = deliveries(100, "pkO"), deliveries(100, "pkO", start=101), deliveries(100, "pkO", start=201)
        sink = NatsSink({**names, "url": f"nats://127.0.0.1:{proxy.port}", "timeout": 2})
        try:
            await sink.publish(a)
            proxy.cut()
            for _ in range(2):  # the dead connection, then a refused reconnect
                started = time.monotonic()
                with pytest.raises(SinkError):
                    await sink.publish(b)
                assert time.monotonic() - started < 3
            proxy.restore()
            await sink.publish(b)  # reconnected by itself
            await sink.publish(c)
        finally:
            await sink.close()
        prefix = names["subject_prefix"]
        # exactly once in the stream: whatever of b got in before the cut was deduplicated on the retry
        assert_stored(await read_stream(names["stream"], f"{prefix}.>", 300), a + b + c, prefix)

    run(body())


def test_hung_server_times_out_then_recovers(names: dict, proxy: TcpProxy) -> None:
    async def body() -> None:
        a, b = deliveries(20, "pkH"), deliveries(20, "pkH", start=21)
        sink = NatsSink({**names, "url": f"nats://127.0.0.1:{proxy.port}", "timeout": 1})
        try:
            await sink.publish(a)
            proxy.stall()
            for _ in range(2):  # the hung connection, then a reconnect that hangs in the handshake
                started = time.monotonic()
                with pytest.raises(SinkError):
                    await sink.publish(b)
                assert time.monotonic() - started < 1.5
            proxy.restore()
            await sink.publish(b)
        finally:
            await sink.close()
        prefix = names["subject_prefix"]
        assert_stored(await read_stream(names["stream"], f"{prefix}.>", 40), a + b, prefix)
        assert await eventually(lambda: proxy.connections == 0)  # the abandoned connections were closed, not leaked

    run(body())


def test_a_connection_lost_mid_batch_fails_it_at_once(names: dict, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = NatsSink({**names, "url": f"nats://127.0.0.1:{proxy.port}", "timeout": 5})
        try:
            await sink.publish(deliveries(5, "pkL"))
            proxy.stall()  # the batch goes out, no confirm comes back...
            task = asyncio.create_task(sink.publish(deliveries(200, "pkL", start=6)))
            await asyncio.sleep(0.3)
            proxy.cut()  # ...and then the connection drops
            started = time.monotonic()
            with pytest.raises(SinkError):
                await task
            assert time.monotonic() - started < 1  # noticed at once, not at the 5 s timeout
            proxy.restore()
            await sink.publish(deliveries(200, "pkL", start=6))
        finally:
            await sink.close()

    run(body())


def test_cancelled_publish_raises_cancelled_and_the_sink_recovers(names: dict, proxy: TcpProxy) -> None:
    async def body() -> None:
        sink = NatsSink({**names, "url": f"nats://127.0.0.1:{proxy.port}", "timeout": 5})
        try:
            await sink.publish(deliveries(5, "pkX"))
            proxy.stall()
            task = asyncio.create_task(sink.publish(deliveries(5, "pkX", start=6)))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task  # a forwarder shutting down is not told "SinkError"
            proxy.restore()
            await sink.publish(deliveries(5, "pkX", start=6))
        finally:
            await sink.close()

    run(body())


def test_unreachable_server_fails_fast() -> None:
    async def body() -> None:
        with TcpProxy("127.0.0.1", 4222) as proxy:
            proxy.cut()  # a port where nothing listens
            sink = NatsSink({"url": f"nats://user:secret-pw@127.0.0.1:{proxy.port}", "timeout": 5})
            started = time.monotonic()
            with pytest.raises(SinkError) as failure:
                await sink.open()
            with pytest.raises(SinkError):
                await sink.publish(deliveries(1, "pkU"))
            assert time.monotonic() - started < 2
            assert "secret-pw" not in str(failure.value)
            await sink.close()
            await sink.close()

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
