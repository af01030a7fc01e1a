"""The sans-I/O core without a server: requests it builds, how it reads replies, the token cache,
re-authentication, retries, single-flight authentication in both drivers, typed values."""

import asyncio
import datetime as dt
import enum
import json
import math
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from thingport.core.signing import aliyun_sign_matches, huawei_password
from thingport.device import (
    MAX_SUB_DEVICES,
    AuthError,
    DeviceError,
    RejectedError,
    Retry,
    ServerError,
    Service,
    ThrottledError,
    Timed,
    TokenError,
    TransportError,
)
from thingport.device.aliyun import AliyunCore
from thingport.device.errors import (
    ALIYUN_ERRORS,
    IOTDA_ERRORS,
    aliyun_error,
    iotda_error,
)
from thingport.device.huawei import HuaweiCore
from thingport.device.protocol import Flow, Request, Response, Sleep
from thingport.device.transport import AsyncTransport, SyncTransport
from thingport.device.values import alink_value, iotda_event_time, iotda_value

NO_WAIT = Retry(attempts=3, backoff_s=0.1, max_backoff_s=1, jitter=0)


def ok(info: dict) -> Response:
    return Response(200, json.dumps({"code": 0, "message": "success", "info": info}).encode())


def ali_error(code: int) -> Response:
    return Response(200, json.dumps({"code": code, "message": f"text of {code}"}).encode())


def iotda(status: int, doc: dict) -> Response:
    return Response(status, json.dumps(doc).encode())


class Script:
    """Answers requests in order from a list of (path, reply-or-exception); records what was asked."""

    def __init__(self, *steps: tuple[str, Response | Exception]) -> None:
        self.steps = list(steps)
        self.sent: list[Request] = []
        self.sleeps: list[float] = []

    def run(self, flow: Flow) -> object:
        """A minimal driver (the real ones are tested below): answers, records sleeps, throws errors in;
        AuthLock steps need nothing in one thread."""
        value: object = None
        error: Exception | None = None
        while True:
            try:
                step = flow.throw(error) if error else flow.send(value)  # type: ignore[arg-type]
            except StopIteration as done:
                return done.value
            value, error = None, None
            if isinstance(step, Sleep):
                self.sleeps.append(step.seconds)
            elif isinstance(step, Request):
                self.sent.append(step)
                path, reply = self.steps.pop(0)
                assert step.path == path, (step.path, path)
                if isinstance(reply, Exception):
                    error = reply
                else:
                    value = reply

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.sent]


def aliyun(**kw: object) -> AliyunCore:
    return AliyunCore("a1PK", "dev-1", "s3cret", retry=NO_WAIT, **kw)  # type: ignore[arg-type]


TOPIC = "/topic/sys/a1PK/dev-1/thing/event/property/post"


# --- requests ---

@pytest.mark.parametrize("method", ["hmacmd5", "hmacsha1", "hmacsha256"])
def test_aliyun_auth_request_is_signed_as_the_server_checks_it(method: str) -> None:
    core = aliyun(sign_method=method, client_id="sn-1")
    request = core.auth_request(1_732_200_000.123)
    doc = json.loads(request.body)
    assert (request.method, request.path, request.headers["Content-Type"]) == ("POST", "/auth", "application/json")
    assert doc["timestamp"] == "1732200000123" and doc["signmethod"] == method and doc["clientId"] == "sn-1"
    assert aliyun_sign_matches("s3cret", {k: v for k, v in doc.items() if k != "sign"}, method, doc["sign"])


def test_aliyun_options_are_checked_up_front() -> None:
    with pytest.raises(ValueError, match="sign_method"):
        aliyun(sign_method="sha256")
    with pytest.raises(ValueError, match="client_id"):
        aliyun(client_id="x" * 65)
    assert aliyun().client_id == "a1PK.dev-1"
    with pytest.raises(ValueError, match="starts with '/'"):
        aliyun().publish("a1PK/dev-1/user/x", b"")
    with pytest.raises(ValueError, match="identifier"):
        aliyun().post_event("bad id", {})


def test_huawei_auth_request_matches_the_spec_vector() -> None:
    core = HuaweiCore("pk_node-1", "12345678", sign_type=1)
    at = dt.datetime(2019, 12, 2, 19, 42, tzinfo=dt.UTC).timestamp()
    doc = json.loads(core.auth_request(at).body)
    assert doc == {"device_id": "pk_node-1", "sign_type": 1, "timestamp": "2019120219",
                   "password": "338ce4d607e62fdca760488716216fbe0a19771874db10ce30360e5c777c3e3c"}
    assert doc["password"] == huawei_password("12345678", "2019120219")
    with pytest.raises(ValueError):
        HuaweiCore("d", "s", sign_type=2)


def test_alink_documents_carry_typed_values_ids_and_times() -> None:
    core, script = aliyun(), Script(("/auth", ok({"token": "T"})), (TOPIC, ok({"messageId": 7})),
                                    ("/topic/sys/a1PK/dev-1/thing/event/alarm/post", ok({"messageId": 8})))
    assert script.run(core.post_properties({"on": True, "t": Timed(21.5, 1000), "n": 3})) == 7
    assert script.run(core.post_event("alarm", {"level": 2}, time_ms=2000)) == 8
    post, event = (json.loads(r.body) for r in script.sent[1:])
    assert post == {"id": "1", "version": "1.0", "method": "thing.event.property.post",
                    "params": {"on": 1, "t": {"value": 21.5, "time": 1000}, "n": 3}}
    assert event == {"id": "2", "version": "1.0", "method": "thing.event.alarm.post",
                     "params": {"value": {"level": 2}, "time": 2000}}
    assert script.sent[1].headers == {"Content-Type": "application/octet-stream", "password": "T"}


def test_an_alink_time_given_as_a_datetime_is_sent_to_the_millisecond() -> None:
    core, script = aliyun(), Script(("/auth", ok({"token": "T"})), (TOPIC, ok({"messageId": 7})))
    # float seconds times 1000 would send 17026640739
    at = dt.datetime(1970, 7, 17, 1, 37, 20, 740000, tzinfo=dt.UTC)
    assert script.run(core.post_properties({"t": Timed(21.5, at)})) == 7
    assert json.loads(script.sent[1].body)["params"] == {"t": {"value": 21.5, "time": 17026640740}}


def test_huawei_documents() -> None:
    core = HuaweiCore("pk_gw", "s", retry=NO_WAIT)
    base = "/v5/devices/pk_gw/sys/"
    script = Script(("/v5/device-auth", iotda(200, {"access_token": "T", "expires_in": 86399})),
                    (base + "properties/report", iotda(200, {"message_id": 1, "refused": [{"property": "x"}]})),
                    (base + "gateway/sub-devices/properties/report", iotda(200, {"message_ids": [2, 3]})),
                    (base + "messages/up", iotda(200, {"message_id": 4})))
    when = dt.datetime(2021, 8, 13, 10, 10, 10, 555000, tzinfo=dt.UTC)
    receipt = script.run(core.report_properties([Service("env", {"t": 1}), Service("b", {"on": True}, "X")], when))
    assert receipt.message_id == 1 and receipt.refused == ({"property": "x"},)
    assert json.loads(script.sent[1].body) == {"services": [
        {"service_id": "env", "properties": {"t": 1}, "event_time": "2021-08-13T10:10:10.555Z"},
        {"service_id": "b", "properties": {"on": True}, "event_time": "X"}]}
    assert script.sent[1].headers["access_token"] == "T"
    receipt = script.run(core.report_sub_devices({"c1": {"s": {"p": 1}}, "c2": [Service("s", {"p": 2})]}))
    assert receipt.message_ids == (2, 3)
    assert json.loads(script.sent[2].body)["devices"][1] == {"device_id": "c2", "services": [
        {"service_id": "s", "properties": {"p": 2}}]}
    script.run(core.message_up(b"\x00raw"))
    assert script.sent[3].body == b"\x00raw" and script.sent[3].headers["Content-Type"] == "application/octet-stream"


def test_sub_device_limits_are_checked_before_any_request() -> None:
    core = HuaweiCore("gw", "s")
    with pytest.raises(RejectedError) as refused:
        core.report_sub_devices({f"c{i}": {"s": {"p": i}} for i in range(MAX_SUB_DEVICES + 1)})
    assert (refused.value.code, refused.value.status) == ("IOTDA.021103", None)
    assert "at most 50" in refused.value.message
    for empty in ({}, {"c1": {}}):
        with pytest.raises(RejectedError) as refused:
            core.report_sub_devices(empty)
        assert refused.value.code == "IOTDA.000006"
    with pytest.raises(RejectedError):
        core.report_properties([])


# --- replies ---

@pytest.mark.parametrize("code,kind", sorted(ALIYUN_ERRORS.items()))
def test_aliyun_codes_map_to_the_hierarchy(code: int, kind: type) -> None:
    core = aliyun()
    with pytest.raises(kind) as raised:
        Script(("/auth", ali_error(code))).run(core.authenticate())
    assert isinstance(raised.value, DeviceError) and raised.value.code == code
    assert raised.value.message == f"text of {code}" and raised.value.status == 200


@pytest.mark.parametrize("code,kind", sorted(IOTDA_ERRORS.items()))
def test_iotda_codes_map_to_the_hierarchy(code: str, kind: type) -> None:
    core = HuaweiCore("d", "s", retry=NO_WAIT)
    with pytest.raises(kind) as raised:
        Script(("/v5/device-auth", iotda(403, {"error_code": code, "error_msg": "why"}))).run(core.authenticate())
    assert (raised.value.code, raised.value.message, raised.value.status) == (code, "why", 403)


def test_replies_that_are_not_the_protocol_are_server_errors() -> None:
    assert isinstance(aliyun_error(99999, "new"), ServerError)
    assert isinstance(iotda_error(401, None, ""), AuthError)
    assert isinstance(iotda_error(429, None, ""), ThrottledError)
    assert isinstance(iotda_error(404, "IOTDA.999999", ""), RejectedError)
    assert isinstance(iotda_error(502, None, ""), ServerError)
    with pytest.raises(ServerError) as raised:
        Script(("/auth", Response(502, b"<html>Bad Gateway</html>"))).run(aliyun().authenticate())
    assert raised.value.status == 502 and "Bad Gateway" in raised.value.message
    with pytest.raises(ServerError):
        Script(("/v5/device-auth", Response(502, b"<html>"))).run(HuaweiCore("d", "s").authenticate())
    with pytest.raises(ServerError):
        Script(("/auth", ok({}))).run(aliyun().authenticate())


# --- tokens ---

def test_the_token_is_cached_and_renewed_once_when_refused() -> None:
    core = aliyun()
    script = Script(("/auth", ok({"token": "T1"})), (TOPIC, ok({"messageId": 1})), (TOPIC, ok({"messageId": 2})))
    assert [script.run(core.post_properties({"n": i})) for i in (1, 2)] == [1, 2]
    assert script.paths.count("/auth") == 1
    for refusal in (20001, 20003):  # expired, revoked
        script = Script((TOPIC, ali_error(refusal)), ("/auth", ok({"token": "T2"})), (TOPIC, ok({"messageId": 3})))
        assert script.run(core.post_properties({"n": 3})) == 3
        assert script.sent[0].body == script.sent[2].body  # the same report, resent once
        assert script.sent[2].headers["password"] == "T2" and core.session.token == "T2"


def test_a_fresh_token_refused_too_is_an_error_not_a_loop() -> None:
    core = HuaweiCore("d", "s", retry=NO_WAIT)
    denied = iotda(403, {"error_code": "IOTDA.000004", "error_msg": "invalid access token"})
    granted = iotda(200, {"access_token": "T", "expires_in": 86399})
    report = "/v5/devices/d/sys/properties/report"
    script = Script(("/v5/device-auth", granted), (report, denied), ("/v5/device-auth", granted), (report, denied))
    with pytest.raises(TokenError) as raised:
        script.run(core.report_properties({"s": {"p": 1}}))
    assert isinstance(raised.value, AuthError) and raised.value.status == 403
    assert core.session.token is None


def test_iotda_tokens_are_renewed_before_they_expire() -> None:
    now = [1000.0]
    core = HuaweiCore("d", "s", retry=NO_WAIT)
    core.session._monotonic = lambda: now[0]
    report = "/v5/devices/d/sys/properties/report"
    granted = iotda(200, {"access_token": "T", "expires_in": 3600})
    script = Script(("/v5/device-auth", granted), (report, iotda(200, {"message_id": 1})))
    script.run(core.report_properties({"s": {"p": 1}}))
    now[0] += 3600 - 61  # still usable: renewal starts a minute before the deadline
    Script((report, iotda(200, {"message_id": 2}))).run(core.report_properties({"s": {"p": 1}}))
    now[0] += 2
    script = Script(("/v5/device-auth", granted), (report, iotda(200, {"message_id": 3})))
    assert script.run(core.report_properties({"s": {"p": 1}})).message_id == 3


# --- retries ---

def test_transport_errors_are_retried_with_doubling_backoff() -> None:
    core = aliyun()
    script = Script(("/auth", TransportError("refused")), ("/auth", TransportError("reset")),
                    ("/auth", ok({"token": "T"})))
    assert script.run(core.authenticate()) == "T"
    assert script.sleeps == [0.1, 0.2]


def test_retries_are_bounded_and_certificate_failures_are_not_retried() -> None:
    script = Script(*[("/auth", TransportError("refused"))] * 3)
    with pytest.raises(TransportError) as raised:
        script.run(aliyun().authenticate())
    assert raised.value.attempts == 3 and len(script.sleeps) == 2
    script = Script(("/auth", TransportError("bad certificate", retryable=False)))
    with pytest.raises(TransportError) as raised:
        script.run(aliyun().authenticate())
    assert raised.value.attempts == 1 and script.sleeps == []


def test_retry_policy() -> None:
    policy = Retry(attempts=10, backoff_s=1, max_backoff_s=5, jitter=0.5)
    for failures, base in ((1, 1), (2, 2), (3, 4), (4, 5), (9, 5)):
        assert all(base * 0.5 <= policy.delay(failures) <= base for _ in range(20))
    for bad in ({"attempts": 0}, {"backoff_s": -1}, {"jitter": 2}):
        with pytest.raises(ValueError):
            Retry(**bad)  # type: ignore[arg-type]


# --- the two drivers: single-flight authentication ---

def _fake_server(delay: Callable[[], object]) -> tuple[Callable[[Request], object], list[str]]:
    seen: list[str] = []

    def reply(request: Request) -> Response:
        seen.append(request.path)
        if request.path == "/auth":
            return ok({"token": "T"})
        return ok({"messageId": len(seen)})

    return reply, seen


def test_async_driver_authenticates_once_for_concurrent_reports() -> None:
    async def main() -> list[str]:
        reply, seen = _fake_server(lambda: None)
        transport = AsyncTransport("https://unused.invalid")

        async def send(request: Request) -> Response:
            await asyncio.sleep(0.01)
            return reply(request)

        transport.send = send  # type: ignore[method-assign]
        core = aliyun()
        ids = await asyncio.gather(*(transport.run(core.post_properties({"n": i})) for i in range(20)))
        await transport.close()
        assert len(set(ids)) == 20
        return seen

    seen = asyncio.run(main())
    assert seen.count("/auth") == 1 and len(seen) == 21


def test_sync_driver_authenticates_once_for_concurrent_threads_and_releases_on_failure() -> None:
    reply, seen = _fake_server(lambda: None)
    transport = SyncTransport("https://unused.invalid")

    def send(request: Request) -> Response:
        time.sleep(0.01)
        return reply(request)

    transport.send = send  # type: ignore[method-assign]
    core = aliyun()
    threads = [threading.Thread(target=transport.run, args=(core.post_properties({"n": i}),)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen.count("/auth") == 1 and len(seen) == 11

    def refuse(request: Request) -> Response:
        return ali_error(20000)

    transport.send = refuse  # type: ignore[method-assign]
    for _ in range(2):  # the lock was released after the failed authentication, or this would hang
        with pytest.raises(AuthError):
            transport.run(core.authenticate())
    assert transport._auth_lock.acquire(timeout=1)
    transport.close()


def test_drivers_sleep_between_attempts() -> None:
    transport = SyncTransport("https://127.0.0.1:9")  # nothing listens on the discard port
    core = AliyunCore("a1PK", "dev-1", "s", retry=Retry(attempts=3, backoff_s=0.05, jitter=0))
    started = time.monotonic()
    with pytest.raises(TransportError) as raised:
        transport.run(core.authenticate())
    assert raised.value.attempts == 3 and time.monotonic() - started >= 0.15
    transport.close()


# --- values ---

class Mode(enum.Enum):
    AUTO = 2


def test_typed_values_per_dialect() -> None:
    at = dt.datetime(2021, 11, 2, 7, 51, 2, tzinfo=dt.UTC)
    value = {"on": True, "at": at, "mode": Mode.AUTO, "price": Decimal("1.5"), "list": (1, False),
             "nested": {"off": False}, "none": None}
    assert alink_value(value) == {"on": 1, "at": "1635839462000", "mode": 2, "price": 1.5, "list": [1, 0],
                                  "nested": {"off": 0}, "none": None}
    assert iotda_value(value) == {"on": True, "at": "20211102T075102Z", "mode": 2, "price": 1.5,
                                  "list": [1, False], "nested": {"off": False}, "none": None}
    assert iotda_event_time(at.replace(microsecond=7000)) == "2021-11-02T07:51:02.007Z"
    with pytest.raises(TypeError):
        alink_value({"x": object()})
    with pytest.raises(ValueError):
        aliyun().post_properties({"x": math.nan})
    with pytest.raises(TypeError):
        aliyun().post_properties({"x": 1}, time_ms=1.5)  # type: ignore[arg-type]
