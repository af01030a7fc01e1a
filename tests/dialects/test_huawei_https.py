"""The IoTDA dialect over real HTTPS: every row of the spec's error table, gateways, and the shared core."""

import datetime
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import DeviceClient, FakeClock, Reply, ServerProcess, ThreadServer, cli, free_port, wait_until
from thingport.cli import main
from thingport.core.signing import huawei_password
from thingport.core.tokens import TokenClaims, TokenCodec
from thingport.runtime.bootstrap import Overrides, build
from thingport.settings import load_settings
from thingport.store.keys import KeyRing

HUAWEI_MODEL = {
    "services": [
        {"service_id": "Environment", "service_type": "Environment", "properties": [
            {"property_name": "temperature", "data_type": "int", "required": False, "min": "-10", "max": "50",
             "method": "R"},
            {"property_name": "humidity", "data_type": "decimal", "required": False, "min": "0", "max": "100",
             "method": "R"},
        ]},
    ],
}


def hour(offset_hours: int = 0) -> str:
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=offset_hours)
    return at.strftime("%Y%m%d%H")


def hw_auth(
    client: DeviceClient, device_id: str, secret: str, sign_type: int = 0, timestamp: str | None = None
) -> Reply:
    ts = timestamp or hour()
    return client.post_json("/v5/device-auth", {"device_id": device_id, "sign_type": sign_type, "timestamp": ts,
                                                "password": huawei_password(secret, ts)})


def hw_token(client: DeviceClient, device: dict) -> str:
    reply = hw_auth(client, device["deviceId"], device["deviceSecret"])
    assert reply.status == 200, reply.raw
    return reply.json["access_token"]


def hw_post(client: DeviceClient, device_id: str, what: str, body: bytes | dict, token: str | None) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["access_token"] = token
    return client.request("POST", f"/v5/devices/{device_id}/sys/{what}", raw, headers)


def assert_error(reply: Reply, status: int, code: str, says: str = "") -> None:
    assert reply.status == status, (reply.status, reply.raw)
    assert int(reply.headers["content-length"]) == len(reply.raw)
    doc = reply.json
    assert set(doc) == {"error_code", "error_msg"} and doc["error_code"] == code, doc
    assert says in doc["error_msg"], doc


@pytest.fixture
def client(server: ServerProcess):  # type: ignore[no-untyped-def]
    c = server.client()
    yield c
    c.close()


@pytest.fixture
def modelled(server: ServerProcess, tmp_path: Path) -> dict:
    """A product with an IoTDA product model and one device created by its IoTDA device_id."""
    product = cli(server.data_dir, "product", "create", "--name", "env")
    (tmp_path / "model.json").write_text(json.dumps(HUAWEI_MODEL))
    cli(server.data_dir, "product", "model", "import", "--product-key", product["productKey"],
        str(tmp_path / "model.json"))
    return cli(server.data_dir, "device", "create", "--product-key", product["productKey"],
               "--device-id", f"{product['productKey']}_node-0001")


def report(temperature: object, event_time: str | None = None, service: str = "Environment") -> dict:
    svc = {"service_id": service, "properties": {"temperature": temperature, "humidity": 55.5}}
    if event_time:
        svc["event_time"] = event_time
    return {"services": [svc]}


# --- identity mapping ---

def test_a_device_is_addressable_in_both_dialects(server: ServerProcess, client: DeviceClient, device: dict) -> None:
    pk, dn = device["productKey"], device["deviceName"]
    assert device["deviceId"] == f"{pk}_{dn}"
    ali_token = client.token(pk, dn, device["deviceSecret"])
    post = f"/sys/{pk}/{dn}/thing/event/property/post"
    assert client.publish(post, b'{"id":"1","params":{"a":1}}', ali_token).json["code"] == 0
    hw = hw_token(client, device)
    reply = hw_post(client, device["deviceId"], "properties/report",
                    {"services": [{"service_id": "any", "properties": {"b": 2}}]}, hw)
    assert reply.status == 200 and isinstance(reply.json["message_id"], int)
    status = cli(server.data_dir, "device", "status", "--product-key", pk, "--name", dn)
    assert {k: v["value"] for k, v in status["properties"].items()} == {"a": 1, "b": 2}
    out = (
        CliRunner()
        .invoke(main, ["messages", "tail", "--limit", "2", "--json", "--data-dir", str(server.data_dir)])
        .output
    )
    kinds = [(json.loads(line)["dialect"], json.loads(line)["kind"]) for line in out.splitlines()]
    assert kinds == [("aliyun", "property_post"), ("huawei", "property_post")]
    # a token of one dialect is no token in the other
    assert_error(hw_post(client, device["deviceId"], "messages/up", b"x", ali_token), 403, "IOTDA.000004")


def test_device_created_by_device_id_gets_its_node_id_as_name(modelled: dict) -> None:
    assert modelled["deviceName"] == "node-0001" and modelled["deviceId"].endswith("_node-0001")


# --- /v5/device-auth ---

def test_auth_sign_type_0_ignores_the_clock_and_reports_remaining_seconds(client: DeviceClient, modelled: dict) -> None:
    reply = hw_auth(client, modelled["deviceId"], modelled["deviceSecret"], 0, "2019120219")
    assert reply.status == 200 and set(reply.json) == {"access_token", "expires_in"}
    assert 86399 <= reply.json["expires_in"] <= 86400 and len(reply.json["access_token"]) <= 64


@pytest.mark.parametrize(("offset", "ok"), [(-1, True), (0, True), (1, True), (-2, False), (2, False)])
def test_auth_sign_type_1_accepts_the_current_hour_and_its_neighbours(
    client: DeviceClient, modelled: dict, offset: int, ok: bool
) -> None:
    reply = hw_auth(client, modelled["deviceId"], modelled["deviceSecret"], 1, hour(offset))
    if ok:
        assert reply.status == 200
    else:
        assert_error(reply, 401, "IOTDA.000002", "timestamp")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{nope", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"sign_type":0,"timestamp":"2019120219","password":"' + b"a" * 64 + b'"}', "device_id"),
        (b'{"device_id":"d_1","sign_type":2,"timestamp":"2019120219","password":"' + b"a" * 64 + b'"}', "sign_type"),
        (b'{"device_id":"d_1","sign_type":0,"timestamp":"201912021","password":"' + b"a" * 64 + b'"}', "timestamp"),
        (b'{"device_id":"d_1","sign_type":0,"timestamp":"2019120219","password":"abc"}', "password"),
        (
            b'{"device_id":"bad id!","sign_type":0,"timestamp":"2019120219","password":"' + b"a" * 64 + b'"}',
            "device_id",
        ),
    ],
)
def test_auth_invalid_input_is_400(client: DeviceClient, body: bytes, says: str) -> None:
    assert_error(client.request("POST", "/v5/device-auth", body, {"Content-Type": "application/json"}),
                 400, "IOTDA.000006", says)


def test_auth_failures_are_401(server: ServerProcess, client: DeviceClient, modelled: dict) -> None:
    assert_error(hw_auth(client, "no_such_device", "whatever"), 401, "IOTDA.000002", "does not exist")
    assert_error(hw_auth(client, modelled["deviceId"], "wrong-secret"), 401, "IOTDA.000002", "password")
    cli(server.data_dir, "device", "disable", "--product-key", modelled["productKey"], "--name", modelled["deviceName"])
    assert_error(hw_auth(client, modelled["deviceId"], modelled["deviceSecret"]), 401, "IOTDA.000002", "disabled")


# --- reports ---

def test_property_report_with_both_event_time_formats(
    server: ServerProcess, client: DeviceClient, modelled: dict
) -> None:
    token = hw_token(client, modelled)
    reply = hw_post(client, modelled["deviceId"], "properties/report", report(21, "2021-08-13T10:10:10.555Z"), token)
    assert reply.status == 200 and "refused" not in reply.json
    assert (
        hw_post(client, modelled["deviceId"], "properties/report", report(22, "20210813T101011Z"), token).status == 200
    )
    assert hw_post(client, modelled["deviceId"], "properties/report", report(23, "garbage"), token).status == 200
    history = cli(server.data_dir, "device", "history", "--product-key", modelled["productKey"],
                  "--name", modelled["deviceName"], "--property", "temperature")
    received = history[0]
    assert received["value"] == 23 and received["time"] > 1_700_000_000_000  # malformed: receive time
    assert [(p["value"], p["time"]) for p in history[1:]] == [(22, 1628849411000), (21, 1628849410555)]


def test_invalid_properties_are_refused_and_valid_ones_kept(
    server: ServerProcess, client: DeviceClient, modelled: dict
) -> None:
    token = hw_token(client, modelled)
    reply = hw_post(client, modelled["deviceId"], "properties/report", report(99), token)
    assert reply.status == 200
    assert [(r["property"], r["service_id"]) for r in reply.json["refused"]] == [("temperature", "Environment")]
    status = cli(
        server.data_dir, "device", "status", "--product-key", modelled["productKey"], "--name", modelled["deviceName"]
    )
    assert "temperature" not in status["properties"] and status["properties"]["humidity"]["value"] == 55.5
    all_bad = {"services": [{"service_id": "Environment", "properties": {"temperature": "hot"}}]}
    assert_error(hw_post(client, modelled["deviceId"], "properties/report", all_bad, token), 400, "IOTDA.000006",
                 "temperature")
    unknown_service = report(20, service="Nope")
    assert_error(
        hw_post(client, modelled["deviceId"], "properties/report", unknown_service, token), 400, "IOTDA.000006", "Nope"
    )


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"{}", b'{"services":[]}', b'{"services":[1]}', b'{"services":[{"properties":{}}]}',
     b'{"services":[{"service_id":"Environment","properties":[]}]}'],
)
def test_malformed_reports_are_400_and_store_nothing(
    server: ServerProcess, client: DeviceClient, modelled: dict, body: bytes
) -> None:
    token = hw_token(client, modelled)
    assert_error(hw_post(client, modelled["deviceId"], "properties/report", body, token), 400, "IOTDA.000006")
    out = (
        CliRunner()
        .invoke(main, ["messages", "tail", "--limit", "5", "--json", "--data-dir", str(server.data_dir)])
        .output
    )
    mine = [m for m in map(json.loads, out.splitlines()) if m["productKey"] == modelled["productKey"]]
    assert [m["kind"] for m in mine] == ["status"]  # the auth's "online", and nothing of the report


def test_message_up_stores_any_body_unchanged(server: ServerProcess, client: DeviceClient, modelled: dict) -> None:
    token = hw_token(client, modelled)
    body = bytes(range(256))
    reply = hw_post(client, modelled["deviceId"], "messages/up", body, token)
    assert reply.status == 200
    app = build(server.settings())
    try:
        import asyncio

        stored = {m.message_id: m for m in asyncio.run(app.stores.log.newest(50))}
    finally:
        app.close()
    message = stored[reply.json["message_id"]]
    assert message.payload == body and message.dialect == "huawei" and message.kind == "custom"


def test_token_errors_are_403_000004(server: ServerProcess, client: DeviceClient, modelled: dict, device: dict) -> None:
    token = hw_token(client, modelled)
    up = "messages/up"
    assert_error(hw_post(client, modelled["deviceId"], up, b"x", None), 403, "IOTDA.000004", "access_token")
    assert_error(hw_post(client, modelled["deviceId"], up, b"x", "garbage"), 403, "IOTDA.000004")
    assert_error(hw_post(client, device["deviceId"], up, b"x", token), 403, "IOTDA.000004", "another device")
    codec = TokenCodec(KeyRing(server.data_dir).token_key)
    claims = codec.verify(token, time.time())
    expired = codec.issue(
        TokenClaims(claims.dialect, claims.device_id, claims.epoch, claims.issued_ms, int(time.time()) - 1)
    )
    assert_error(hw_post(client, modelled["deviceId"], up, b"x", expired), 403, "IOTDA.000004", "expired")
    cli(server.data_dir, "device", "reset-secret", "--product-key", modelled["productKey"],
        "--name", modelled["deviceName"])
    wait_until(lambda: hw_post(client, modelled["deviceId"], up, b"x", token).status != 200,
               "the token refused after a secret reset", 1.0)


def test_disable_and_delete_kill_tokens(server: ServerProcess, client: DeviceClient, modelled: dict) -> None:
    who = ("--product-key", modelled["productKey"], "--name", modelled["deviceName"])
    for change, says in (("disable", "disabled"), ("delete", "no longer exists")):
        token = hw_token(client, modelled)
        assert hw_post(client, modelled["deviceId"], "messages/up", b"x", token).status == 200
        cli(server.data_dir, "device", change, *who)
        reply = wait_until(lambda t=token: hw_post(client, modelled["deviceId"], "messages/up", b"x", t),
                           f"the token refused after device {change}", 1.0, accept=lambda r: r.status != 200)
        assert_error(reply, 403, "IOTDA.000004", says)
        if change == "disable":
            cli(server.data_dir, "device", "enable", *who)


def test_whole_report_validation_refuses_a_report_with_one_bad_property(
    server: ServerProcess, client: DeviceClient, modelled: dict
) -> None:
    cli(server.data_dir, "product", "set", "--product-key", modelled["productKey"], "--validation", "whole-report")
    token = hw_token(client, modelled)
    reply = wait_until(  # the running server picks the setting up within a second
        lambda: hw_post(client, modelled["deviceId"], "properties/report", report(99), token),
        "a partly invalid report refused under whole-report", 2.0, 0.05, accept=lambda r: r.status != 200)
    assert_error(reply, 400, "IOTDA.000006", "temperature")
    status = cli(
        server.data_dir, "device", "status", "--product-key", modelled["productKey"], "--name", modelled["deviceName"]
    )
    assert status["properties"] == {}  # nothing of the refused reports was stored
    assert hw_post(client, modelled["deviceId"], "properties/report", report(21), token).json["message_id"] > 0


@pytest.mark.parametrize("what", ["messages/up", "properties/report"])
def test_one_megabyte_limit(client: DeviceClient, modelled: dict, what: str) -> None:
    token = hw_token(client, modelled)
    mb = 1024 * 1024
    if what == "messages/up":
        fits, over = b"m" * mb, b"m" * (mb + 1)
    else:  # a report padded with spaces (valid JSON) to exactly the limit, and one byte past it
        doc = json.dumps(report(21)).encode()
        fits, over = doc + b" " * (mb - len(doc)), doc + b" " * (mb - len(doc) + 1)
    assert hw_post(client, modelled["deviceId"], what, fits, token).status == 200
    assert_error(hw_post(client, modelled["deviceId"], what, over, token), 403, "IOTDA.021105")


def test_gateway_batch_over_one_megabyte_is_refused(server: ServerProcess, client: DeviceClient) -> None:
    gw_product = cli(server.data_dir, "product", "create", "--name", "gw", "--node-type", "gateway")
    gw = cli(server.data_dir, "device", "create", "--product-key", gw_product["productKey"], "--name", "gateway-mb")
    child = cli(server.data_dir, "device", "create", "--product-key", gw_product["productKey"], "--name", "child-mb",
                "--gateway", f"{gw['productKey']}/{gw['deviceName']}")
    token = hw_token(client, gw)
    doc = json.dumps(batch([child])).encode()
    fits = doc + b" " * (1024 * 1024 - len(doc))
    assert hw_post(client, gw["deviceId"], "gateway/sub-devices/properties/report", fits, token).status == 200
    over = doc + b" " * (1024 * 1024 - len(doc) + 1)
    assert_error(hw_post(client, gw["deviceId"], "gateway/sub-devices/properties/report", over, token),
                 403, "IOTDA.021105")


def test_unknown_api_and_methods(client: DeviceClient, modelled: dict) -> None:
    token = hw_token(client, modelled)
    reply = hw_post(client, modelled["deviceId"], "properties/set", b"{}", token)
    assert reply.status == 404 and reply.json["error_code"] == "IOTDA.000006"
    assert_error(client.request("GET", "/v5/device-auth"), 400, "IOTDA.000006", "only POST")


# --- gateways ---

@pytest.fixture
def gateway_setup(server: ServerProcess) -> dict:
    gw_product = cli(server.data_dir, "product", "create", "--name", "gw", "--node-type", "gateway")
    gw = cli(server.data_dir, "device", "create", "--product-key", gw_product["productKey"], "--name", "gateway-1")
    child_product = cli(server.data_dir, "product", "create", "--name", "child")
    children = [cli(server.data_dir, "device", "create", "--product-key", child_product["productKey"],
                    "--name", f"child-{i:02d}", "--gateway", f"{gw['productKey']}/{gw['deviceName']}")
                for i in range(51)]
    stranger = cli(
        server.data_dir, "device", "create", "--product-key", child_product["productKey"], "--name", "stranger"
    )
    return {"gw": gw, "children": children, "stranger": stranger}


def batch(devices: list[dict]) -> dict:
    return {"devices": [{"device_id": d["deviceId"], "services": [
        {"service_id": "s", "properties": {"p1": i, "p2": f"v{i}"}}]} for i, d in enumerate(devices)]}


def test_gateway_children_are_listed(server: ServerProcess, gateway_setup: dict) -> None:
    gw = gateway_setup["gw"]
    listed = cli(server.data_dir, "device", "children", "--product-key", gw["productKey"], "--name", gw["deviceName"])
    assert [c["deviceName"] for c in listed] == [f"child-{i:02d}" for i in range(51)]
    assert listed[0]["gateway"] == {"productKey": gw["productKey"], "deviceName": gw["deviceName"]}


def test_gateway_batch_of_50_lands_on_each_child(
    server: ServerProcess, client: DeviceClient, gateway_setup: dict
) -> None:
    gw, children = gateway_setup["gw"], gateway_setup["children"]
    token = hw_token(client, gw)
    reply = hw_post(client, gw["deviceId"], "gateway/sub-devices/properties/report", batch(children[:50]), token)
    assert reply.status == 200 and len(reply.json["message_ids"]) == 50
    last = children[49]
    status = cli(server.data_dir, "device", "status", "--product-key", last["productKey"], "--name", last["deviceName"])
    assert {k: v["value"] for k, v in status["properties"].items()} == {"p1": 49, "p2": "v49"}


def test_gateway_batch_limits_refuse_the_whole_request(
    server: ServerProcess, client: DeviceClient, gateway_setup: dict
) -> None:
    gw, children, stranger = gateway_setup["gw"], gateway_setup["children"], gateway_setup["stranger"]
    token = hw_token(client, gw)
    path = "gateway/sub-devices/properties/report"
    assert_error(hw_post(client, gw["deviceId"], path, batch(children), token), 403, "IOTDA.021103", "at most 50")
    assert_error(hw_post(client, gw["deviceId"], path, batch([children[0], stranger]), token), 400, "IOTDA.021104",
                 stranger["deviceId"])
    ghost = {"devices": [{"device_id": "ghost_device", "services": []}]}
    assert_error(hw_post(client, gw["deviceId"], path, ghost, token), 400, "IOTDA.021104")
    first = children[0]
    status = cli(
        server.data_dir, "device", "status", "--product-key", first["productKey"], "--name", first["deviceName"]
    )
    assert status["properties"] == {}  # nothing of the refused requests was stored


def test_only_gateways_take_sub_devices(server: ServerProcess, device: dict) -> None:
    result = CliRunner().invoke(main, ["device", "create", "--product-key", device["productKey"], "--name", "sub-x",
                                       "--gateway", f"{device['productKey']}/{device['deviceName']}",
                                       "--data-dir", str(server.data_dir)])
    assert result.exit_code == 1 and "not a gateway" in result.output


# --- servers of their own ---

def test_device_and_instance_rate_limits(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    product = cli(data_dir, "product", "create", "--name", "p")
    a = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-a")
    b = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-b")
    env = {"THINGPORT_DEVICE_REPORT_RATE": "0.1", "THINGPORT_DEVICE_REPORT_BURST": "2",
           "THINGPORT_INSTANCE_REPORT_RATE": "0.1", "THINGPORT_INSTANCE_REPORT_BURST": "3"}
    srv = ServerProcess(data_dir, env).start()
    try:
        client = srv.client()
        ta, tb = hw_token(client, a), hw_token(client, b)
        statuses = [hw_post(client, a["deviceId"], "messages/up", b"x", ta).status for _ in range(2)]
        assert statuses == [200, 200]
        assert_error(hw_post(client, a["deviceId"], "messages/up", b"x", ta), 403, "IOTDA.021101")
        assert hw_post(client, b["deviceId"], "messages/up", b"x", tb).status == 200  # third of the instance's 3
        assert_error(hw_post(client, b["deviceId"], "messages/up", b"x", tb), 403, "IOTDA.021102")
        client.close()
    finally:
        srv.stop()


def test_superseded_token_lives_exactly_30_seconds_and_internal_errors_are_500(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    product = cli(data_dir, "product", "create", "--name", "p")
    d = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-c")
    clock = FakeClock(1_900_000_000.0)
    settings = load_settings(data_dir=data_dir, host="127.0.0.1", port=free_port(), log_level="critical")
    app = build(settings, Overrides(clock=clock))
    stores = app.stores
    with ThreadServer(app) as srv:
        client = srv.client()
        first = hw_token(client, d)
        clock.advance(10)
        second = hw_token(client, d)
        assert first != second
        clock.advance(29.999)  # 29.999 s after the new token: the old one still works
        assert hw_post(client, d["deviceId"], "messages/up", b"x", first).status == 200
        clock.advance(0.001)  # exactly 30 s: dead
        assert_error(hw_post(client, d["deviceId"], "messages/up", b"x", first), 403, "IOTDA.000004", "superseded")
        assert hw_post(client, d["deviceId"], "messages/up", b"x", second).status == 200
        clock.advance(86400)  # the newest dies of old age
        assert_error(hw_post(client, d["deviceId"], "messages/up", b"x", second), 403, "IOTDA.000004", "expired")

        real_append = stores.log.append

        async def broken(message):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug")

        stores.log.append = broken  # type: ignore[method-assign]
        third = hw_token(client, d)
        assert_error(hw_post(client, d["deviceId"], "messages/up", b"x", third), 500, "IOTDA.000001")
        stores.log.append = real_append  # type: ignore[method-assign]
        client.close()


def test_json_bodies_with_a_trailing_nul_are_read_and_stored_as_received(
    server: ServerProcess, client: DeviceClient
) -> None:
    """C clients that send strlen(body) + 1 bytes: auth, property and gateway reports read past one trailing NUL
    (and whitespace); the stored payload keeps it."""
    gw_product = cli(server.data_dir, "product", "create", "--name", "nulgw", "--node-type", "gateway")
    gw = cli(server.data_dir, "device", "create", "--product-key", gw_product["productKey"], "--name", "nul-gateway")
    child = cli(server.data_dir, "device", "create", "--product-key", gw_product["productKey"], "--name", "nul-child",
                "--gateway", f"{gw['productKey']}/{gw['deviceName']}")
    ts = hour()
    auth = json.dumps({"device_id": gw["deviceId"], "sign_type": 1, "timestamp": ts,
                       "password": huawei_password(gw["deviceSecret"], ts)}).encode() + b"\x00"
    reply = client.request("POST", "/v5/device-auth", auth, {"Content-Type": "application/json"})
    assert reply.status == 200, reply.raw
    token = reply.json["access_token"]
    report_body = b'{"services":[{"service_id":"s","properties":{"nul":1}}]}\x00'
    reply = hw_post(client, gw["deviceId"], "properties/report", report_body, token)
    assert reply.status == 200, reply.raw
    gateway_body = json.dumps({"devices": [{"device_id": child["deviceId"], "services": [
        {"service_id": "s", "properties": {"sub": 2}}]}]}).encode() + b"\n\x00\r\n"
    assert hw_post(client, gw["deviceId"], "gateway/sub-devices/properties/report", gateway_body, token).status == 200
    for d, values in ((gw, {"nul": 1}), (child, {"sub": 2})):
        status = cli(server.data_dir, "device", "status", "--product-key", d["productKey"], "--name", d["deviceName"])
        assert {k: v["value"] for k, v in status["properties"].items()} == values
    app = build(server.settings())
    try:
        import asyncio

        stored = {m.message_id: m for m in asyncio.run(app.stores.log.newest(50))}
    finally:
        app.close()
    assert any(m.payload == report_body for m in stored.values())  # as received, NUL included
    # two NULs are not the C SDKs' habit: invalid input, nothing stored
    assert_error(
        hw_post(client, gw["deviceId"], "properties/report", report_body + b"\x00", token), 400, "IOTDA.000006"
    )


def test_three_tokens_back_to_back_each_superseded_one_lives_30_s_on_every_instance(tmp_path: Path) -> None:
    """T1, T2, T3 issued 10 s apart by two instances sharing PostgreSQL: T1 lives until T2's issue + 30 s, T2
    until T3's + 30 s, on both (T1 used to die as soon as T3 existed)."""
    from tests.postgres import fresh_database

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "thingport.toml").write_text(f'database_url = "{fresh_database()}"\n')
    product = cli(data_dir, "product", "create", "--name", "p")
    d = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-t")
    clock = FakeClock(1_900_000_000.0)

    def instance(worker: int) -> ThreadServer:
        settings = load_settings(data_dir=data_dir, host="127.0.0.1", port=free_port(), log_level="critical",
                                 worker_id=worker, registry_poll_s=0.05)
        return ThreadServer(build(settings, Overrides(clock=clock)))

    def alive(client: DeviceClient, token: str) -> bool:
        reply = hw_post(client, d["deviceId"], "messages/up", b"x", token)
        assert reply.status in (200, 403), reply.raw
        return reply.status == 200

    with instance(1) as a, instance(2) as b:
        ca, cb = a.client(), b.client()
        t1 = hw_token(ca, d)
        clock.advance(10)
        t2 = hw_token(cb, d)
        clock.advance(10)
        t3 = hw_token(ca, d)
        t3_ms = int(clock.now * 1000)

        def knows_t3(srv: ThreadServer) -> bool:  # each instance follows the registry's change feed
            cached = srv.app.cache.known_by_device_id(d["deviceId"])
            return cached is not None and cached.token_ms == t3_ms and len(cached.superseded_tokens) == 2

        wait_until(lambda: knows_t3(a) and knows_t3(b), "both instances have T3 and the two it superseded")
        for client in (ca, cb):
            assert [alive(client, t) for t in (t1, t2, t3)] == [True, True, True]
        clock.advance(19.999)  # T2's issue + 29.999 s
        for client in (ca, cb):
            assert [alive(client, t) for t in (t1, t2, t3)] == [True, True, True]
        clock.advance(0.001)  # T2's issue + 30 s: T1 is dead
        for client in (ca, cb):
            assert [alive(client, t) for t in (t1, t2, t3)] == [False, True, True]
        assert_error(hw_post(cb, d["deviceId"], "messages/up", b"x", t1), 403, "IOTDA.000004", "superseded")
        clock.advance(9.999)  # T3's issue + 29.999 s
        for client in (ca, cb):
            assert [alive(client, t) for t in (t1, t2, t3)] == [False, True, True]
        clock.advance(0.001)
        for client in (ca, cb):
            assert [alive(client, t) for t in (t1, t2, t3)] == [False, False, True]
        ca.close()
        cb.close()


def _replayed(client: DeviceClient, d: dict) -> list[int]:
    """A password captured five hours ago, sent as sign_type 1 and as sign_type 0; then a fresh sign_type 1."""
    stale = hour(-5)
    return [hw_auth(client, d["deviceId"], d["deviceSecret"], 1, stale).status,
            hw_auth(client, d["deviceId"], d["deviceSecret"], 0, stale).status,
            hw_auth(client, d["deviceId"], d["deviceSecret"], 1).status]


def test_a_product_may_require_sign_type_1_and_refuse_a_replayed_sign_type_0(
    server: ServerProcess, client: DeviceClient
) -> None:
    """sign_type 0 is the platform's "do not check the time": a five-hour-old password still works unless the
    product requires sign_type 1, set when it is created or later, from the CLI."""
    loose = cli(server.data_dir, "product", "create", "--name", "loose")
    assert loose["requireSignType1"] is None  # the server's setting (off by default)
    d = cli(server.data_dir, "device", "create", "--product-key", loose["productKey"], "--name", "loose-1")
    assert _replayed(client, d) == [401, 200, 200]  # the platform's behaviour: sign_type 0 replays

    strict = cli(server.data_dir, "product", "create", "--name", "strict", "--require-sign-type-1", "yes")
    assert strict["requireSignType1"] is True
    s = cli(server.data_dir, "device", "create", "--product-key", strict["productKey"], "--name", "strict-1")
    assert _replayed(client, s) == [401, 401, 200]
    assert_error(hw_auth(client, s["deviceId"], s["deviceSecret"], 0), 401, "IOTDA.000002", "sign_type 0")
    # a wrong password is told as such, not as the product's rule
    assert_error(hw_auth(client, s["deviceId"], "wrong-secret", 0), 401, "IOTDA.000002", "password")

    shown = cli(server.data_dir, "product", "set", "--product-key", loose["productKey"], "--require-sign-type-1", "yes")
    assert shown["requireSignType1"] is True
    wait_until(lambda: hw_auth(client, d["deviceId"], d["deviceSecret"], 0, hour(-5)).status == 401,
               "the running server requires sign_type 1", interval=0.1)
    cli(server.data_dir, "product", "set", "--product-key", loose["productKey"], "--require-sign-type-1", "server")
    assert cli(server.data_dir, "product", "show", "--product-key", loose["productKey"])["requireSignType1"] is None
    wait_until(lambda: hw_auth(client, d["deviceId"], d["deviceSecret"], 0, hour(-5)).status == 200,
               "the running server accepts sign_type 0 again", interval=0.1)


def test_the_server_may_require_sign_type_1_and_a_product_may_opt_out(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    default = cli(data_dir, "product", "create", "--name", "default")
    d = cli(data_dir, "device", "create", "--product-key", default["productKey"], "--name", "dev-1")
    legacy = cli(data_dir, "product", "create", "--name", "legacy", "--require-sign-type-1", "no")
    old = cli(data_dir, "device", "create", "--product-key", legacy["productKey"], "--name", "dev-2")
    srv = ServerProcess(data_dir, {"THINGPORT_HUAWEI_REQUIRE_SIGN_TYPE_1": "true"}).start()
    try:
        client = srv.client()
        assert _replayed(client, d) == [401, 401, 200]
        assert_error(hw_auth(client, d["deviceId"], d["deviceSecret"], 0), 401, "IOTDA.000002", "sign_type 1")
        assert _replayed(client, old) == [401, 200, 200]  # the product said no: its old firmware keeps working
        client.close()
    finally:
        srv.stop()
