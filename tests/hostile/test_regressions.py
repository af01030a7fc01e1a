"""Bugs found by the hostile suite and the fuzz targets: each test states what the protocol requires and is
``xfail(strict=True)`` while the bug lives in src/ (an XPASS then fails the run: remove the marker, and the
matching tolerance in fuzz/targets.py ``_known``).
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from contextlib import closing

import pytest

from tests.hostile.common import (
    assert_aliyun_error,
    assert_iotda_error,
    db_state,
    hw_post,
    hw_token,
)
from tests.support import DeviceClient, ServerProcess, cli
from thingport.core.model import StoredMessage

DEEP = b"[" * 1500 + b"]" * 1500                       # nesting past msgspec's ~1000-level recursion limit
DEEP_OBJECT = b'{"services":' + b"[" * 1200 + b"]" * 1200 + b"}"  # an object with a too-deep value (fits in 4 KB)
BAD_UTF8 = b'{"device_id":"\xff","productKey":"\xff"}'   # invalid UTF-8 inside JSON strings

MSGSPEC_ERRORS = (
    "thingport's JSON decoding catches only msgspec.DecodeError, but msgspec raises RecursionError for nesting "
    "deeper than ~1000 levels and UnicodeDecodeError for invalid UTF-8 inside a string; the generic handler "
    "then answers the internal-error row"
)


@pytest.fixture(scope="module")
def client(server: ServerProcess):  # type: ignore[no-untyped-def]
    c = server.client()
    yield c
    c.close()


# --- bad JSON answered with the internal-error row ------------------------------------------------

@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, BAD_UTF8], ids=["deep-array", "deep-object", "bad-utf8"])
def test_aliyun_auth_with_undecodable_json_is_a_param_error(server: ServerProcess, client: DeviceClient,
                                                          body: bytes) -> None:
    before = db_state(server.data_dir)
    reply = client.request("POST", "/auth", body, {"Content-Type": "application/json"})
    assert_aliyun_error(reply, {10001})  # observed: {"code":10000,"message":"common error: internal error"}
    assert db_state(server.data_dir) == before


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, BAD_UTF8], ids=["deep-array", "deep-object", "bad-utf8"])
def test_huawei_device_auth_with_undecodable_json_is_invalid_input(server: ServerProcess, client: DeviceClient,
                                                                 body: bytes) -> None:
    before = db_state(server.data_dir)
    reply = client.request("POST", "/v5/device-auth", body, {"Content-Type": "application/json"})
    assert_iotda_error(reply, {(400, "IOTDA.000006")})  # observed: 500 IOTDA.000001 "internal error"
    assert db_state(server.data_dir) == before


@pytest.mark.parametrize("api", ["properties/report", "gateway/sub-devices/properties/report"])
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, b'{"services":[{"service_id":"\xff"}]}'],
                         ids=["deep-array", "deep-object", "bad-utf8"])
def test_huawei_reports_with_undecodable_json_are_invalid_input(server: ServerProcess, client: DeviceClient,
                                                              bed: dict, api: str, body: bytes) -> None:
    token = hw_token(client, bed["gw"])
    before = db_state(server.data_dir)
    reply = hw_post(client, bed["gw"]["deviceId"], api, body, token)
    assert_iotda_error(reply, {(400, "IOTDA.000006")})  # observed: 500 IOTDA.000001 "internal error"
    assert db_state(server.data_dir) == before


def test_the_same_documents_one_level_shallower_are_param_errors(server: ServerProcess, client: DeviceClient) -> None:
    """Control for the tests above: below the decoder's limit the protocols answer as they should."""
    shallow = b"[" * 500 + b"]" * 500
    assert_aliyun_error(client.request("POST", "/auth", shallow, {"Content-Type": "application/json"}), {10001})
    assert_iotda_error(client.request("POST", "/v5/device-auth", shallow, {}), {(400, "IOTDA.000006")})
    valid_utf8 = '{"productKey":"é"}'.encode()
    assert_aliyun_error(client.request("POST", "/auth", valid_utf8, {"Content-Type": "application/json"}), {10001})


# --- a stored payload that poisons forwarding --------------------------------------------------------

def _message(payload: bytes) -> StoredMessage:
    return StoredMessage(
        1, 1, "a1pk", "dev-0001", "aliyun", "/a1pk/dev-0001/user/x", payload, 1, iot_id="a1pk_dev-0001"
    )


def test_envelope_of_a_deeply_nested_payload_falls_back_to_base64() -> None:
    from thingport.bus.envelope import envelope

    doc = envelope(_message(b"[" * 1200))  # observed: RecursionError
    assert doc["payloadEncoding"] == "base64"


def test_one_device_payload_cannot_stall_a_subscription(server: ServerProcess, client: DeviceClient, bed: dict) -> None:
    a = bed["a"]
    data = server.data_dir
    cli(data, "subscription", "create", "--name", "poison", "--product-key", a["productKey"], "--sink", "http",
        "--kinds", "raw")
    key = cli(data, "apikey", "create", "--name", "hostile", "--role", "admin")["key"]
    token = client.token(a["productKey"], a["deviceName"], a["deviceSecret"])
    topic = f"/{a['productKey']}/{a['deviceName']}/user/update"
    assert client.publish(topic, b"[" * 1200, token).json["code"] == 0  # opaque bytes: acknowledged, stored
    assert client.publish(topic, b"after", token).json["code"] == 0

    request = urllib.request.Request(f"http://127.0.0.1:{server.api_port}/api/subscriptions/poison/pull?max=10&wait=0",
                                     method="POST", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:  # observed: 500 Internal Server Error
        status, body = exc.code, {}
    assert status == 200
    assert [m["payloadEncoding"] for m in body["messages"]] == ["base64", "base64"]


# --- a URL fragment must not silently change the topic --------------------------------------------------
# uvicorn parses a '#fragment' off the path; runtime/bounded_http.py puts it back, so the dialects see the
# request target the device sent (RFC 9112 allows no fragment in it, and '#' is an MQTT wildcard, never a
# character of a topic name) and refuse it like any other bad topic character.

@pytest.mark.parametrize("suffix", ["user/a#b", "user/a#", "user/#"])
def test_a_topic_with_a_hash_is_refused_not_stored_elsewhere(server: ServerProcess, client: DeviceClient,
                                                           bed: dict, suffix: str) -> None:
    a = bed["a"]
    token = client.token(a["productKey"], a["deviceName"], a["deviceSecret"])
    before = db_state(server.data_dir)
    reply = client.publish(f"/{a['productKey']}/{a['deviceName']}/{suffix}", b"x", token)
    assert_aliyun_error(reply, {30001})  # was: code 0, stored with topic /pk/dn/user/a
    assert "custom topics must be" in reply.json["message"], reply.json
    assert db_state(server.data_dir) == before


def test_a_system_topic_with_a_fragment_is_refused(server: ServerProcess, client: DeviceClient, bed: dict) -> None:
    a = bed["a"]
    token = client.token(a["productKey"], a["deviceName"], a["deviceSecret"])
    before = db_state(server.data_dir)
    reply = client.publish(f"/sys/{a['productKey']}/{a['deviceName']}/thing/event/property/post#x",
                           b'{"id":"1","params":{"temperature":1}}', token)
    assert_aliyun_error(reply, {30001})
    assert db_state(server.data_dir) == before


def test_an_iotda_path_with_a_fragment_is_no_such_api(server: ServerProcess, client: DeviceClient, bed: dict) -> None:
    token = hw_token(client, bed["h"])
    before = db_state(server.data_dir)
    reply = hw_post(client, bed["h"]["deviceId"], "messages/up#frag", b'{"content":"x"}', token)
    assert_iotda_error(reply, {(404, "IOTDA.000006")})  # was: 200, stored on .../messages/up
    assert db_state(server.data_dir) == before


# --- thing model documents: ValueError instead of ThingModelError ----------------------------------------

HUGE_INT_TSL = {"properties": [{"identifier": "t", "dataType": {"type": "int", "specs": {"min": "1" * 4301}}}]}


def test_a_model_with_a_huge_integer_spec_is_a_thing_model_error() -> None:
    from thingport.core.thingmodel import ThingModel, ThingModelError

    with pytest.raises(ThingModelError):
        ThingModel.from_tsl(HUGE_INT_TSL)  # observed: ValueError "Exceeds the limit (4300 digits)"


def test_management_api_refuses_a_model_with_a_huge_integer_spec_with_400(server: ServerProcess, bed: dict) -> None:
    key = cli(server.data_dir, "apikey", "create", "--name", "hostile-model", "--role", "admin")["key"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.api_port}/api/products/{bed['c']['productKey']}/thing-model",
        data=json.dumps(HUGE_INT_TSL).encode(), method="PUT",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 400  # observed: 500 Internal Server Error


def test_the_fragment_finding_does_not_reach_another_devices_topic(server: ServerProcess, client: DeviceClient,
                                                                   bed: dict) -> None:
    """Control: whatever the fragment hides, the topic that is checked is the one stored, so a '#' never lets a
    device publish on another device's topic."""
    a, b = bed["a"], bed["b"]
    token = client.token(a["productKey"], a["deviceName"], a["deviceSecret"])
    before = db_state(server.data_dir)
    for topic in (f"/{b['productKey']}/{b['deviceName']}/user/x#/{a['productKey']}/{a['deviceName']}/user/x",
                  f"/{b['productKey']}/{b['deviceName']}/user/#"):
        assert_aliyun_error(client.publish(topic, b"x", token), {30001})
    assert db_state(server.data_dir) == before
    uri = f"file:{server.data_dir / 'thingport.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        found = conn.execute("SELECT count(*) FROM messages WHERE topic LIKE ?", (f"%{b['deviceName']}%",))
        assert found.fetchone()[0] == 0


# --- fuzz findings, at the unit level ------------------------------------------------------------------

FUZZ_FINDING_UTF8 = b'"\xf4"'  # fuzz/seeds/aliyun_auth_params/finding-invalid-utf8 (found in < 1 s, strict mode)


def test_auth_params_refuses_invalid_utf8_with_a_param_error() -> None:
    from thingport.core.errors import ParamError
    from thingport.dialects.aliyun import _auth_params

    with pytest.raises(ParamError):
        _auth_params(FUZZ_FINDING_UTF8)  # observed: UnicodeDecodeError


@pytest.mark.parametrize("body", [FUZZ_FINDING_UTF8, DEEP], ids=["bad-utf8", "deep"])
def test_huawei_json_object_refuses_undecodable_json_with_a_param_error(body: bytes) -> None:
    from thingport.core.errors import ParamError
    from thingport.dialects.huawei import _auth_fields, _json_object

    for parse in (_json_object, _auth_fields):
        with pytest.raises(ParamError):
            parse(body)  # observed: UnicodeDecodeError / RecursionError


def test_a_token_has_exactly_one_spelling() -> None:
    from thingport.core.errors import TokenInvalid
    from thingport.core.tokens import TokenClaims, TokenCodec

    codec = TokenCodec(b"k" * 32)
    token = next(t for t in (codec.issue(TokenClaims(1, i, 0, 1, 2**31)) for i in range(1000)) if "-" in t or "_" in t)
    alias = token.replace("-", "+").replace("_", "/")
    with pytest.raises(TokenInvalid):
        codec.verify(alias, 0)  # observed: the same claims as the real token


HUAWEI_STRING_MODEL = {"services": [{"service_id": "s", "properties": [
    {"property_name": "label", "data_type": "string", "max_length": "5.0"}]}]}


def test_an_accepted_huawei_model_exports_as_tsl() -> None:
    from thingport.core.thingmodel import ThingModel

    model = ThingModel.from_huawei(HUAWEI_STRING_MODEL)  # accepted
    assert model.to_tsl()["properties"][0]["dataType"]["specs"]["length"] == "5"  # observed: ValueError


def test_management_api_exports_an_accepted_huawei_model(
    server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = server.data_dir
    product = cli(data, "product", "create", "--name", "hostile-export")
    path = tmp_path_factory.mktemp("model") / "hw.json"
    path.write_text(json.dumps(HUAWEI_STRING_MODEL))
    cli(data, "product", "model", "import", "--product-key", product["productKey"], "--format", "huawei", str(path))
    key = cli(data, "apikey", "create", "--name", "hostile-export", "--role", "read")["key"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.api_port}/api/products/{product['productKey']}/thing-model/tsl",
        headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    assert status == 200  # observed: 500 Internal Server Error
