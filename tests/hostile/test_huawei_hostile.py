"""Hostile input against the IoTDA dialect over real HTTPS (property-based).

Every hostile request gets its row of the IoTDA error table (status + {"error_code","error_msg"}, never 5xx),
changes nothing in the database, and the server keeps serving afterwards.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.hostile.common import (
    assert_iotda_error,
    db_state,
    device_row_id,
    good_huawei_round_trip,
    hour,
    hw_auth_doc,
    hw_token,
    status_of,
)
from tests.hostile.strategies import broken_json, dumps, json_scalars, json_values, not_str_or_int
from tests.support import DeviceClient, ServerProcess
from thingport.core.signing import huawei_password
from thingport.core.tokens import DIALECT_ALIYUN, DIALECT_HUAWEI, TokenClaims, TokenCodec
from thingport.store.keys import KeyRing

# THINGPORT_HOSTILE_EXAMPLES=1000 for a deeper local run; 60 keeps CI well under a minute
EXAMPLES = int(os.environ.get("THINGPORT_HOSTILE_EXAMPLES", "60"))
HOSTILE = settings(
    max_examples=EXAMPLES, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
AUTH_LIMIT = 4096
BODY_LIMIT = 1024 * 1024

BAD_INPUT = (400, "IOTDA.000006")
AUTH_FAILED = (401, "IOTDA.000002")
BAD_TOKEN = (403, "IOTDA.000004")
NO_SUCH_API = (404, "IOTDA.000006")
NOT_A_CHILD = (400, "IOTDA.021104")
TOO_MANY_CHILDREN = (403, "IOTDA.021103")
TOO_LARGE = (403, "IOTDA.021105")


@dataclass
class Case:
    what: str
    path: str
    body: bytes
    expected: frozenset[tuple[int, str]]
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    method: str = "POST"
    http_layer_ok: bool = False


@pytest.fixture(scope="module")
def client(server: ServerProcess):  # type: ignore[no-untyped-def]
    c = server.client()
    yield c
    c.close()


@pytest.fixture(scope="module")
def tokens(server: ServerProcess, bed: dict, client: DeviceClient) -> dict[str, str]:
    h = bed["h"]
    codec = TokenCodec(KeyRing(server.data_dir).token_key)
    h_id = device_row_id(server.data_dir, h["productKey"], h["deviceName"])
    now = int(time.time())
    return {
        "h": hw_token(client, h),
        "a": hw_token(client, bed["a"]),
        "gw": hw_token(client, bed["gw"]),
        "child": hw_token(client, bed["child"]),
        "h_aliyun": client.token(h["productKey"], h["deviceName"], h["deviceSecret"]),
        "expired": codec.issue(TokenClaims(DIALECT_HUAWEI, h_id, 0, now * 1000 - 10_000, now - 1)),
        "future_epoch": codec.issue(TokenClaims(DIALECT_HUAWEI, h_id, 3, now * 1000, now + 3600)),
        "no_device": codec.issue(TokenClaims(DIALECT_HUAWEI, 2**40, 0, now * 1000, now + 3600)),
        "aliyun_minted": codec.issue(TokenClaims(DIALECT_ALIYUN, h_id, 0, now * 1000, now + 3600)),
        # issued before the device's newest token and not the one right before it: superseded
        "superseded": codec.issue(TokenClaims(DIALECT_HUAWEI, h_id, 0, now * 1000 - 3_600_000, now + 3600)),
    }


def check(server: ServerProcess, client: DeviceClient, case: Case, before: dict[str, Any]) -> None:
    note(f"{case.what}: {case.method} {case.path[:200]} {case.headers} body={case.body[:300]!r}"
         f" ({len(case.body)} bytes)")
    reply = client.request(case.method, case.path, case.body, case.headers)
    assert_iotda_error(reply, set(case.expected), case.http_layer_ok)
    assert db_state(server.data_dir) == before, f"state changed by {case.what}"


# --- /v5/device-auth ----------------------------------------------------------------------------

def auth_cases(bed: dict) -> st.SearchStrategy[Case]:
    h, a = bed["h"], bed["a"]
    path = "/v5/device-auth"

    def valid() -> dict:
        return hw_auth_doc(h)

    def case(what: str, doc: Any, *expected: tuple[int, str], raw: bytes | None = None) -> Case:
        return Case(what, path, raw if raw is not None else dumps(doc), frozenset(expected))

    @st.composite
    def missing(draw: st.DrawFn) -> Case:
        doc = valid()
        del doc[draw(st.sampled_from(sorted(doc)))]
        return case("a field missing", doc, BAD_INPUT)

    @st.composite
    def wrong_type(draw: st.DrawFn) -> Case:
        doc = valid()
        name = draw(st.sampled_from(["device_id", "sign_type", "timestamp", "password"]))
        value = draw(st.one_of(not_str_or_int, st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=20)))
        # what the protocol accepts for each field is not a wrong value
        if name == "sign_type" and (value in (0, 1) or value in ("0", "1")) and type(value) is not bool:
            value = 2
        if name == "device_id" and isinstance(value, str):
            value = value + "/"
        if name == "timestamp" and isinstance(value, str) and len(value) == 10 and value.isascii() and value.isdigit():
            value = value + "0"
        if name == "password" and isinstance(value, str) and len(value) == 64:
            value = value + "0"
        doc[name] = value
        return case(f"{name} = {value!r}"[:80], doc, BAD_INPUT)

    @st.composite
    def wrong_password(draw: st.DrawFn) -> Case:
        doc = valid()
        password = draw(st.one_of(
            st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64),
            st.text(min_size=64, max_size=64),
            st.sampled_from([huawei_password(a["deviceSecret"], doc["timestamp"]),       # another device's secret
                             huawei_password(h["deviceSecret"], hour(-5)),                # another hour's key
                             doc["password"][::-1], "0" * 64])))
        if password.lower() == doc["password"]:
            password = "f" * 64 if doc["password"] != "f" * 64 else "e" * 64
        doc["password"] = password
        return case("a wrong password", doc, AUTH_FAILED)

    @st.composite
    def stale_hour(draw: st.DrawFn) -> Case:
        offset = draw(st.one_of(st.integers(min_value=2, max_value=24 * 365 * 30),
                                st.integers(max_value=-2, min_value=-24 * 365 * 30)))
        ts = hour(offset)
        doc = hw_auth_doc(h, sign_type=draw(st.sampled_from([1, "1"])), timestamp=ts)
        return case(f"sign_type 1, {offset:+d} hours (replay outside the window)", doc, AUTH_FAILED)

    @st.composite
    def identity(draw: st.DrawFn) -> Case:
        doc = valid()
        kind = draw(st.sampled_from(["other", "unknown", "bad", "long"]))
        if kind == "other":  # a's id with h's password: impersonation
            doc["device_id"] = a["deviceId"]
            return case("another device's id", doc, AUTH_FAILED)
        if kind == "unknown":
            doc["device_id"] = draw(st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True).filter(
                lambda x: x not in {d["deviceId"] for d in bed.values()}))
            return case("an unknown device", doc, AUTH_FAILED)
        if kind == "long":
            doc["device_id"] = "d" * draw(st.integers(min_value=129, max_value=3000))
            return case("device_id too long", doc, BAD_INPUT)
        doc["device_id"] = draw(st.sampled_from(["", "a b", "a/b", "../x", "a\x00b", "ä", "a.b", "a:b", "a@b",
                                                 h["deviceId"] + "\n", "%2F", h["deviceId"] + "\u200b"]))
        return case("a malformed device_id", doc, BAD_INPUT)

    @st.composite
    def structure(draw: st.DrawFn) -> Case:
        return case("not a JSON object", None, BAD_INPUT, raw=draw(broken_json(dumps(valid()))))

    @st.composite
    def any_json(draw: st.DrawFn) -> Case:
        doc = draw(json_values)
        if isinstance(doc, dict):
            doc.pop("password", None)
        return case("arbitrary JSON", doc, BAD_INPUT)

    @st.composite
    def too_large(draw: st.DrawFn) -> Case:
        doc = {**valid(), "pad": "p" * draw(st.integers(min_value=AUTH_LIMIT, max_value=300_000))}
        return case("auth body over the limit", doc, BAD_INPUT)

    @st.composite
    def method(draw: st.DrawFn) -> Case:
        m = draw(st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]))
        return Case(f"method {m}", path, dumps(valid()), frozenset({BAD_INPUT}), method=m)

    return st.one_of(missing(), wrong_type(), wrong_password(), stale_hour(), identity(), structure(), any_json(),
                     too_large(), method())


def test_hostile_device_auth_requests_get_iotda_errors_and_change_nothing(
    server: ServerProcess, bed: dict, client: DeviceClient
) -> None:
    before = db_state(server.data_dir)
    status_before = status_of(server, bed["h"])

    @HOSTILE
    @given(auth_cases(bed))
    def hostile(case: Case) -> None:
        check(server, client, case, before)

    hostile()
    assert status_of(server, bed["h"]) == status_before
    good_huawei_round_trip(client, bed["h"])


# --- reports ------------------------------------------------------------------------------------

REPORT_APIS = ["properties/report", "messages/up", "gateway/sub-devices/properties/report"]


def test_hostile_tokens_and_paths_are_refused_and_store_nothing(
    server: ServerProcess, bed: dict, client: DeviceClient, tokens: dict[str, str]
) -> None:
    h, a = bed["h"], bed["a"]
    before = db_state(server.data_dir)
    body = dumps({"services": [{"service_id": "Environment", "properties": {"temperature": 20}}]})

    @st.composite
    def token_case(draw: st.DrawFn) -> Case:
        api = draw(st.sampled_from(REPORT_APIS))
        kind = draw(st.sampled_from(["missing", "empty", "junk", "named", "tampered", "wrong-device"]))
        headers = {"Content-Type": "application/json"}
        path = f"/v5/devices/{h['deviceId']}/sys/{api}"
        http_layer_ok = False
        if kind == "empty":
            headers["access_token"] = ""
        elif kind == "junk":
            headers["access_token"] = draw(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF),
                                                   min_size=1, max_size=120))
            http_layer_ok = True  # DEL and C1 controls may be refused by the HTTP layer
        elif kind == "named":
            headers["access_token"] = tokens[draw(st.sampled_from(
                ["a", "gw", "child", "h_aliyun", "expired", "future_epoch", "no_device", "aliyun_minted",
                 "superseded"]))]
        elif kind == "tampered":
            token = tokens["h"]
            i = draw(st.integers(min_value=0, max_value=len(token) - 1))
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            other = draw(st.sampled_from(alphabet).filter(lambda c: c != token[i]))
            headers["access_token"] = token[:i] + other + token[i + 1:]
        elif kind == "wrong-device":  # h's own token on another device's path
            headers["access_token"] = tokens["h"]
            victim = draw(st.sampled_from([a["deviceId"], bed["gw"]["deviceId"], bed["child"]["deviceId"], "nobody"]))
            path = f"/v5/devices/{victim}/sys/{api}"
        return Case(f"token {kind}", path, body, frozenset({BAD_TOKEN}), headers=headers, http_layer_ok=http_layer_ok)

    @st.composite
    def path_case(draw: st.DrawFn) -> Case:
        did = h["deviceId"]
        path = draw(st.sampled_from([
            f"/v5/devices/{did}/sys/properties/report/", f"/v5/devices/{did}/sys/properties", f"/v5/devices/{did}/sys/",
            f"/v5/devices/{did}/sys/properties/report/../../messages/up", f"/v5/devices/{did}/sys/commands/response",
            f"/v5/devices/{did}/sys/properties%2F%2Freport", f"/v5/devices/{did}%2F/sys/messages/up",
            f"/v5/devices//{did}/sys/messages/up", f"/v5/devices/{did}/SYS/messages/up",
            f"/v5/device/{did}/sys/messages/up",
            f"/v5/devices/{did}/sys/messages/up%00", f"/v5/devices/../devices/{did}/sys/messages/up",
            f"/v5/devices/{a['deviceId']}/../{did}/sys/messages/up", "/v5/", "/v5", "/v5/device-auth/", "/v5/devices",
            f"/v5/devices/{did}/sys/gateway/sub-devices/properties", f"/v5/devices/{did}/sys/messages/up/x",
        ]))
        headers = {"Content-Type": "application/json", "access_token": tokens["h"]}
        # "/v5" is not under "/v5/": the device app's not-found reply, Alibaba-shaped
        return Case(f"path {path}", path, body, frozenset({NO_SUCH_API, BAD_TOKEN, BAD_INPUT}), headers=headers)

    @HOSTILE
    @given(st.one_of(token_case(), path_case()))
    def hostile(case: Case) -> None:
        if case.path == "/v5":
            reply = client.request("POST", case.path, case.body, case.headers)
            assert reply.status == 404 and reply.json["code"] == 10001, reply.raw
            assert db_state(server.data_dir) == before
            return
        check(server, client, case, before)

    hostile()
    good_huawei_round_trip(client, h)


# properties every one of which the IoTDA model refuses: wrong type, out of range, unknown name
refused_property = st.one_of(
    st.tuples(st.just("temperature"), st.one_of(
        st.integers(min_value=51, max_value=2**70), st.integers(max_value=-11, min_value=-(2**70)),
        st.floats(allow_nan=False), st.booleans(), st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
        st.sampled_from([20.0, "20", [20], {"value": 20}])),
    ),
    st.tuples(st.just("humidity"), st.one_of(
        st.floats(min_value=100.0001, allow_nan=False), st.floats(max_value=-0.0001, allow_nan=False),
        st.integers(min_value=101, max_value=2**70), st.booleans(), st.none(), st.text(max_size=5),
        st.sampled_from(["50", [50], {"v": 1}]))),
    st.tuples(st.text(max_size=20).filter(lambda n: n not in ("temperature", "humidity")), json_values),
)


@st.composite
def refused_report(draw: st.DrawFn, service_id: str = "Environment") -> dict:
    kind = draw(st.sampled_from(["refused", "shape", "service"]))
    if kind == "refused":
        props = dict(draw(st.lists(refused_property, min_size=1, max_size=6)))
        event_time = draw(st.one_of(st.none(), json_scalars, st.sampled_from(
            ["2021-08-13T10:10:10.555Z", "20210813T101010Z", "99991313T999999Z", "0000-00-00T00:00:00.000Z"])))
        svc: dict[str, Any] = {"service_id": service_id, "properties": props}
        if event_time is not None:
            svc["event_time"] = event_time
        return {"services": [svc]}
    if kind == "service":  # a valid value under a service the model does not define
        return {"services": [{"service_id": draw(st.text(min_size=1, max_size=20).filter(lambda s: s != "Environment")),
                              "properties": {"temperature": 20}}]}
    return draw(st.sampled_from([
        {}, {"services": []}, {"services": None}, {"services": {}}, {"services": "x"}, {"services": [1]},
        {"services": [{}]}, {"services": [{"service_id": "", "properties": {"temperature": 20}}]},
        {"services": [{"service_id": 5, "properties": {"temperature": 20}}]},
        {"services": [{"service_id": "Environment"}]}, {"services": [{"service_id": "Environment", "properties": []}]},
        {"services": [{"service_id": "Environment", "properties": {"temperature": 20}}] * 101},
        {"Services": [{"service_id": "Environment", "properties": {"temperature": 20}}]},
    ]))


def test_hostile_property_reports_are_refused_and_change_no_running_status(
    server: ServerProcess, bed: dict, client: DeviceClient, tokens: dict[str, str]
) -> None:
    h = bed["h"]
    token = hw_token(client, h)
    before = db_state(server.data_dir)
    status_before = status_of(server, h)
    path = f"/v5/devices/{h['deviceId']}/sys/properties/report"
    valid = dumps({"services": [{"service_id": "Environment", "properties": {"temperature": 20}}]})

    @st.composite
    def report_case(draw: st.DrawFn) -> Case:
        headers = {"Content-Type": "application/json", "access_token": token}
        kind = draw(st.sampled_from(["refused", "broken", "large"]))
        if kind == "refused":
            return Case("refused report", path, dumps(draw(refused_report()), draw(st.booleans())),
                        frozenset({BAD_INPUT}), headers=headers)
        if kind == "broken":
            return Case("not a JSON object", path, draw(broken_json(valid)), frozenset({BAD_INPUT}), headers=headers)
        n = draw(st.sampled_from([BODY_LIMIT + 1, BODY_LIMIT + 10_000, 2 * BODY_LIMIT]))
        return Case(f"body of {n} bytes", path, b" " * (n - len(valid)) + valid, frozenset({TOO_LARGE}),
                    headers=headers)

    @HOSTILE
    @given(report_case())
    def hostile(case: Case) -> None:
        check(server, client, case, before)

    hostile()
    assert status_of(server, h) == status_before
    good_huawei_round_trip(client, h)


def test_hostile_gateway_reports_are_refused_and_store_nothing(
    server: ServerProcess, bed: dict, client: DeviceClient, tokens: dict[str, str]
) -> None:
    gw, child, h, a = bed["gw"], bed["child"], bed["h"], bed["a"]
    gw_token, h_token = hw_token(client, gw), hw_token(client, h)
    before = db_state(server.data_dir)

    @st.composite
    def gateway_case(draw: st.DrawFn) -> Case:
        kind = draw(st.sampled_from(["not-my-child", "not-a-gateway", "too-many", "shape", "child-refused"]))
        entry = {"device_id": child["deviceId"], "services": [{"service_id": "s", "properties": {"x": 1}}]}
        sender, token, expected = gw, gw_token, {NOT_A_CHILD}
        if kind == "not-my-child":  # another tenant's device, the gateway itself, an unknown id, mixed with a child
            others = [a["deviceId"], h["deviceId"], gw["deviceId"], "nobody", "", "x" * 300, "\x00",
                      "../" + child["deviceId"]]
            stranger = {"device_id": draw(st.sampled_from(others)), "services": entry["services"]}
            devices = draw(st.permutations([entry, stranger]))
            body: Any = {"devices": devices}
        elif kind == "not-a-gateway":  # h is no gateway: nobody is its child
            sender, token = h, h_token
            body = {"devices": [entry]}
        elif kind == "too-many":
            body = {"devices": [entry] * draw(st.integers(min_value=51, max_value=300))}
            expected = {TOO_MANY_CHILDREN}
        elif kind == "child-refused":  # the child's report is itself malformed
            services = draw(st.sampled_from([[], None, "x", [1], [{}]]))
            body = {"devices": [{"device_id": child["deviceId"], "services": services}]}
            expected = {BAD_INPUT}
        else:
            body = draw(st.sampled_from([{}, {"devices": []}, {"devices": {}}, {"devices": [1]}, {"devices": [{}]},
                                         {"devices": [{"device_id": 5}]}, {"devices": None}, [entry]]))
            expected = {BAD_INPUT}
        path = f"/v5/devices/{sender['deviceId']}/sys/gateway/sub-devices/properties/report"
        return Case(f"gateway report: {kind}", path, dumps(body), frozenset(expected),
                    headers={"Content-Type": "application/json", "access_token": token})

    @HOSTILE
    @given(gateway_case())
    def hostile(case: Case) -> None:
        check(server, client, case, before)

    hostile()
    good_huawei_round_trip(client, gw)


def test_hostile_message_up_bodies_over_the_limit_store_nothing(
    server: ServerProcess, bed: dict, client: DeviceClient
) -> None:
    h = bed["h"]
    token = hw_token(client, h)
    before = db_state(server.data_dir)
    for n in (BODY_LIMIT + 1, BODY_LIMIT * 3):
        reply = client.request("POST", f"/v5/devices/{h['deviceId']}/sys/messages/up", b"m" * n,
                               {"Content-Type": "application/octet-stream", "access_token": token})
        assert_iotda_error(reply, {TOO_LARGE})
    assert db_state(server.data_dir) == before
    good_huawei_round_trip(client, h)


# --- the property cap: at most 1000 properties per request (core/iotda.MAX_PROPERTIES) ----------------

MAX_PROPERTIES = 1000


def services_with(count: int, per_service: int = 300) -> list[dict]:
    """``count`` schemaless properties spread over services of at most ``per_service`` each."""
    services = []
    for start in range(0, count, per_service):
        names = range(start, min(start + per_service, count))
        services.append({"service_id": f"s{start}", "properties": {f"p{n}": n for n in names}})
    return services


def test_a_report_over_the_property_cap_is_refused_and_stores_nothing(
    server: ServerProcess, bed: dict, client: DeviceClient
) -> None:
    c = bed["c"]  # a schemaless product: every property would otherwise be a history row
    token = hw_token(client, c)
    before = db_state(server.data_dir)
    over = dumps({"services": services_with(MAX_PROPERTIES + 1)})
    reply = client.request("POST", f"/v5/devices/{c['deviceId']}/sys/properties/report", over,
                           {"Content-Type": "application/json", "access_token": token})
    assert_iotda_error(reply, {BAD_INPUT})
    assert reply.json["error_msg"] == f"at most {MAX_PROPERTIES} properties in one request, got {MAX_PROPERTIES + 1}"
    assert db_state(server.data_dir) == before

    at_cap = dumps({"services": services_with(MAX_PROPERTIES)})
    reply = client.request("POST", f"/v5/devices/{c['deviceId']}/sys/properties/report", at_cap,
                           {"Content-Type": "application/json", "access_token": token})
    assert reply.status == 200 and "refused" not in reply.json, reply.raw[:300]
    assert db_state(server.data_dir)["history"][0] == before["history"][0] + MAX_PROPERTIES


def test_a_gateway_report_over_the_property_cap_across_sub_devices_is_refused(
    server: ServerProcess, bed: dict, client: DeviceClient
) -> None:
    gw, child = bed["gw"], bed["child"]
    token = hw_token(client, gw)
    before = db_state(server.data_dir)
    half = MAX_PROPERTIES // 2 + 1  # each entry under the cap, the request over it
    body = dumps({"devices": [{"device_id": child["deviceId"], "services": services_with(half)}] * 2})
    reply = client.request("POST", f"/v5/devices/{gw['deviceId']}/sys/gateway/sub-devices/properties/report", body,
                           {"Content-Type": "application/json", "access_token": token})
    assert_iotda_error(reply, {BAD_INPUT})
    assert "properties in one request" in reply.json["error_msg"]
    assert db_state(server.data_dir) == before
