"""Webhook sink against a real local HTTP receiver (http.server on a thread) that checks the signature."""

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.bus.services import deliveries, run
from tests.bus.tcp_proxy import TcpProxy
from thingport.bus.base import Delivery, SinkConfigError, SinkError
from thingport.bus.webhook import WebhookSink, envelope_batch, signature, signing_key, standard_signature

SECRET = "per-subscription-secret"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class Receiver:
    """What the receiving application does: verify X-Thingport-Signature, record, answer ``status``."""

    secret: str = SECRET
    status: int = 204
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(self.headers.get("X-Thingport-Signature", ""), expected)
                receiver.requests.append(Received(dict(self.headers), body, ok))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status if ok else 401
                reply = b"" if status == 204 else json.dumps({"status": status}).encode()
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # connections the tests cut on purpose


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = _Server(("127.0.0.1", 0), receiver.handler())
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def url(receiver: Receiver, port: int | None = None) -> str:
    return f"http://127.0.0.1:{port or receiver.port}/hooks/thingport?token=abc"


def test_one_signed_post_per_batch_with_the_envelopes_in_order(receiver: Receiver) -> None:
    batches = [deliveries(1, "pkA"), deliveries(300, "pkB", start=2)]

    async def body() -> None:
        sink = WebhookSink({"url": url(receiver), "secret": SECRET})
        try:
            await sink.open()
            for batch in batches:
                await sink.publish(batch)
            await sink.publish([])  # nothing to send: no request
        finally:
            await sink.close()

    run(body())
    assert len(receiver.requests) == 2
    for request, batch in zip(receiver.requests, batches, strict=True):
        assert request.signature_ok
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["X-Thingport-Delivery"] == str(batch[0].seq)
        # the envelopes' own bytes, joined: not re-encoded
        assert request.body == b'{"messages":[' + b",".join(d.body for d in batch) + b"]}"
        assert json.loads(request.body) == {"messages": [json.loads(d.body) for d in batch]}


def test_signature_value() -> None:
    # reference value from: printf '{"messages":[{"a":1}]}' | openssl dgst -sha256 -hmac "s3cret-key"
    body = envelope_batch([Delivery(1, 1, "pk", "dev", "raw", b'{"a":1}')])
    assert body == b'{"messages":[{"a":1}]}'
    assert signature("s3cret-key", body) == "sha256=a31021163d267db5898712233cb083f2429f5c9311e2c05c7e36e9d43e970c83"
    assert signature(b"s3cret-key", body) == signature("s3cret-key", body)
    assert signature("other-key", body) != signature("s3cret-key", body)


def test_a_receiver_with_another_secret_rejects_the_batch(receiver: Receiver) -> None:
    receiver.secret = "not-the-same-secret"

    async def body() -> None:
        sink = WebhookSink({"url": url(receiver), "secret": SECRET})
        try:
            with pytest.raises(SinkError, match="HTTP 401"):
                await sink.publish(deliveries(3, "pkS"))
        finally:
            await sink.close()

    run(body())
    assert len(receiver.requests) == 1 and not receiver.requests[0].signature_ok


@pytest.mark.parametrize("status", [500, 503, 429, 400, 404, 302])
def test_a_non_2xx_reply_fails_the_batch(receiver: Receiver, status: int) -> None:
    async def body() -> None:
        sink = WebhookSink({"url": url(receiver), "secret": SECRET, "timeout": 5})
        batch = deliveries(5, "pkF", start=41)
        try:
            receiver.status = status
            with pytest.raises(SinkError, match=f"HTTP {status} for the batch of 5 from seq 41") as failure:
                await sink.publish(batch)
            assert "token=abc" not in str(failure.value)  # the query may carry a credential
            receiver.status = 200
            await sink.publish(batch)  # the same batch, offered again, now goes through
        finally:
            await sink.close()

    run(body())
    assert len(receiver.requests) == 2  # redirects are not followed
    assert receiver.requests[0].body == receiver.requests[1].body
    assert receiver.requests[1].headers["X-Thingport-Delivery"] == "41"


def test_a_slow_receiver_times_out(receiver: Receiver) -> None:
    receiver.delay = 4.0

    async def body() -> None:
        sink = WebhookSink({"url": url(receiver), "secret": SECRET, "timeout": 0.5})
        try:
            started = time.monotonic()
            with pytest.raises(SinkError, match="no reply within 0.5 s"):
                await sink.publish(deliveries(2, "pkT"))
            assert time.monotonic() - started < 3.0  # gave up, not waited for the 4 s reply (slack for a loaded CI)
            receiver.delay = 0
            await sink.publish(deliveries(2, "pkT"))
        finally:
            await sink.close()

    run(body())


def test_outage_fails_the_batch_then_recovers(receiver: Receiver) -> None:
    async def body() -> None:
        with TcpProxy("127.0.0.1", receiver.port) as proxy:
            sink = WebhookSink({"url": url(receiver, proxy.port), "secret": SECRET, "timeout": 1})
            try:
                await sink.publish(deliveries(2, "pkO"))
                proxy.cut()
                started = time.monotonic()
                with pytest.raises(SinkError):
                    await sink.publish(deliveries(2, "pkO", start=3))
                assert time.monotonic() - started < 1.5
                proxy.restore()
                await sink.publish(deliveries(2, "pkO", start=3))
                proxy.stall()
                with pytest.raises(SinkError, match="no reply within 1 s"):
                    await sink.publish(deliveries(2, "pkO", start=5))
                proxy.restore()
                await sink.publish(deliveries(2, "pkO", start=5))
            finally:
                await sink.close()

    run(body())
    seqs = [r.headers["X-Thingport-Delivery"] for r in receiver.requests]
    assert seqs[0] == "1" and seqs[1] == "3" and seqs[-1] == "5"


def test_throughput_5000_in_batches_of_500(receiver: Receiver) -> None:
    async def body() -> float:
        messages = deliveries(5000, "pkT")
        sink = WebhookSink({"url": url(receiver), "secret": SECRET})
        try:
            started = time.perf_counter()
            for i in range(0, 5000, 500):
                await sink.publish(messages[i : i + 500])
            return time.perf_counter() - started
        finally:
            await sink.close()

    elapsed = run(body())
    assert len(receiver.requests) == 10 and all(r.signature_ok for r in receiver.requests)
    print(f"\nwebhook: 5000 deliveries of ~200 B in batches of 500: {elapsed:.2f} s, {5000 / elapsed:,.0f}/s")


def test_unreachable_receiver_fails_fast() -> None:
    async def body() -> None:
        with TcpProxy("127.0.0.1", 9) as proxy:
            proxy.cut()  # a port where nothing listens
            sink = WebhookSink({"url": f"http://127.0.0.1:{proxy.port}/", "secret": SECRET, "timeout": 5})
            started = time.monotonic()
            with pytest.raises(SinkError, match="request failed"):
                await sink.publish(deliveries(1, "pkU"))
            assert time.monotonic() - started < 2
            await sink.close()
            await sink.close()

    run(body())


@pytest.mark.parametrize(
    "options, option",
    [
        ({"secret": SECRET}, "url"),
        ({"url": "ftp://127.0.0.1/", "secret": SECRET}, "url"),
        ({"url": "/relative/path", "secret": SECRET}, "url"),
        ({"url": 8080, "secret": SECRET}, "url"),
        ({"url": "http://[::1/", "secret": SECRET}, "url"),
        ({"url": "https://example.com/"}, "secret"),
        ({"url": "https://example.com/", "secret": ""}, "secret"),
        ({"url": "https://example.com/", "secret": 1.5}, "secret"),
        ({"url": "https://example.com/", "secret": "whsec_not base64!"}, "secret"),
        ({"url": "https://example.com/", "secret": "whsec_"}, "secret"),
        ({"url": "https://example.com/", "secret": SECRET, "timeout": 0}, "timeout"),
        ({"url": "https://example.com/", "secret": SECRET, "timeout": float("inf")}, "timeout"),
        ({"url": "https://example.com/", "secret": SECRET, "retries": 3}, "retries"),
    ],
)
def test_bad_options_name_the_option(options: dict, option: str) -> None:
    with pytest.raises(SinkConfigError, match=f"'{option}'"):
        WebhookSink(options)


def test_a_numeric_secret_is_used_as_its_text(receiver: Receiver) -> None:
    # the CLI turns `--option secret=424242` into the number 424242
    receiver.secret = "424242"

    async def body() -> None:
        sink = WebhookSink({"url": url(receiver), "secret": 424242})
        try:
            await sink.publish(deliveries(1, "pkN"))
        finally:
            await sink.close()

    run(body())
    assert receiver.requests[0].signature_ok


STANDARD_SECRET = "whsec_" + base64.b64encode(b"thirty-two bytes of webhook key!").decode()


@pytest.mark.parametrize("secret", [STANDARD_SECRET, SECRET])
def test_standard_webhooks_receivers_verify_with_its_library_and_refuse_replays(
    receiver: Receiver, secret: str
) -> None:
    """The Standard Webhooks project's own library verifies every request: a whsec_ secret as given, any
    other as its UTF-8 bytes. The id names the batch (a retry repeats it), the timestamp the attempt."""
    from standardwebhooks import Webhook, WebhookVerificationError

    receiver.secret = secret
    receiver.status = 503  # the first attempt fails: the batch is offered again
    batch, other = deliveries(3, "pkW"), deliveries(2, "pkW", start=4)

    async def body() -> None:
        sink = WebhookSink({"url": url(receiver), "secret": secret})
        try:
            with pytest.raises(SinkError):
                await sink.publish(batch)
            receiver.status = 204
            await sink.publish(batch)
            await sink.publish(other)
            await sink.check()
            await sink.check()
        finally:
            await sink.close()

    run(body())
    verifier = Webhook(secret) if secret.startswith("whsec_") else Webhook(secret.encode())
    first, retry, second, check1, check2 = receiver.requests
    for request in receiver.requests:
        assert request.signature_ok  # X-Thingport-Signature too, as before
        assert verifier.verify(request.body, request.headers, json_parse=False) is None
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 300
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] != second.headers["webhook-id"]
    assert check1.headers["webhook-id"] != check2.headers["webhook-id"]  # two checks, not a replay
    assert first.body == retry.body

    tampered = {**second.headers, "webhook-id": first.headers["webhook-id"]}
    with pytest.raises(WebhookVerificationError):
        verifier.verify(second.body, tampered)
    replayed = {**first.headers, "webhook-timestamp": str(int(time.time()) - 3600)}  # an old capture
    with pytest.raises(WebhookVerificationError):
        verifier.verify(first.body, replayed)
    with pytest.raises(WebhookVerificationError):
        Webhook(base64.b64encode(b"another key")).verify(first.body, first.headers)


def test_standard_signature_value() -> None:
    # by hand: printf 'msg_1.1700000000.{"messages":[]}' | openssl dgst -sha256 -hmac "key" -binary | base64
    assert signing_key("whsec_" + base64.b64encode(b"key").decode()) == b"key" == signing_key("key")
    assert standard_signature(b"key", "msg_1", 1700000000, b'{"messages":[]}') == (
        "v1,pF/1ozZdJFgOwc6PR7MmVDJ/wxYsAGTJIHqrkB24fEs=")
