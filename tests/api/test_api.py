"""The management API over real HTTP against a running server."""

import base64
import re
import time

import httpx
import pytest

from tests.dialects.test_alink_reports_https import SEED_004_TSL
from tests.support import ServerProcess, cli


def fill_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1234", path)


def test_every_endpoint_but_health_needs_a_key(anonymous: httpx.Client) -> None:
    spec = anonymous.get("/openapi.json").json()
    checked = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            reply = anonymous.request(method, fill_path(path))
            if path in ("/healthz", "/readyz"):
                assert reply.status_code == 200, path
                continue
            assert reply.status_code == 401, (method, path, reply.status_code)
            assert reply.json()["error"]["code"] == "unauthorized"
            checked += 1
    assert checked >= 25
    bad = anonymous.get("/api/products", headers={"Authorization": "Bearer tpk_not-a-real-key"})
    assert bad.status_code == 401 and bad.json()["error"]["message"] == "unknown API key"


def test_read_keys_read_but_cannot_change_anything(server: ServerProcess, read_key: str, api: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {read_key}"}
    assert api.get("/api/products", headers=headers).status_code == 200
    for method, path, body in [
        ("POST", "/api/products", {"name": "nope"}),
        ("POST", "/api/apikeys", {"name": "escalate"}),
        ("GET", "/api/apikeys", None),
    ]:
        reply = api.request(method, path, json=body, headers=headers)
        assert reply.status_code == 403 and reply.json()["error"]["code"] == "forbidden", (method, path)
    assert "nope" not in [p["name"] for p in api.get("/api/products").json()]


def test_product_and_device_lifecycle(server: ServerProcess, api: httpx.Client) -> None:
    created = api.post("/api/products", json={"name": "collector", "thingModel": SEED_004_TSL,
                                              "topics": [{"topic": "user/get", "operation": "sub"}]})
    assert created.status_code == 201, created.text
    product = created.json()
    pk = product["productKey"]
    assert product["modelVersion"] and product["topics"] == [{"topic": "user/get", "operation": "sub"}]
    assert api.get(f"/api/products/{pk}/thing-model").json()["format"] == "tsl"
    assert api.get(f"/api/products/{pk}/thing-model/tsl").json()["properties"] == SEED_004_TSL["properties"]
    assert api.patch(f"/api/products/{pk}", json={"validation": "whole-report"}).json()["validation"] == "whole-report"
    assert api.patch(f"/api/products/{pk}", json={"presenceTimeout": 90}).json()["presenceTimeout"] == 90
    assert api.patch(f"/api/products/{pk}", json={"presenceTimeout": 0}).json()["presenceTimeout"] is None
    assert api.get(f"/api/products/{pk}").json()["requireSignType1"] is None
    assert api.patch(f"/api/products/{pk}", json={"requireSignType1": True}).json()["requireSignType1"] is True
    assert api.patch(f"/api/products/{pk}", json={"validation": "whole-report"}).json()["requireSignType1"] is True
    assert api.patch(f"/api/products/{pk}", json={"requireSignType1": False}).json()["requireSignType1"] is False
    assert api.patch(f"/api/products/{pk}", json={"followServerSignType1": True}).json()["requireSignType1"] is None
    strict = api.post("/api/products", json={"name": "strict", "requireSignType1": True}).json()
    assert strict["requireSignType1"] is True

    device = api.post("/api/devices", json={"productKey": pk, "deviceName": "api-dev-1"}).json()
    assert len(device["deviceSecret"]) == 32 and device["deviceId"] == f"{pk}_api-dev-1"
    assert "deviceSecret" not in api.get(f"/api/devices/{pk}/api-dev-1").json()
    assert api.get(f"/api/devices/{pk}/api-dev-1/secret").json() == {"deviceSecret": device["deviceSecret"]}

    client = server.client()
    token = client.token(pk, "api-dev-1", device["deviceSecret"])
    topic = f"/sys/{pk}/api-dev-1/thing/event/property/post"
    for t in (21, 22, 23):
        assert client.publish(topic, b'{"id":"1","params":{"temperature":%d}}' % t, token).json["code"] == 0
    assert client.publish(f"/{pk}/api-dev-1/user/get", b"x", token).json["code"] == 30001  # declared sub only

    status = api.get(f"/api/devices/{pk}/api-dev-1/status").json()
    assert status["online"] and status["properties"]["temperature"]["value"] == 23
    history = api.get(f"/api/devices/{pk}/api-dev-1/history", params={"property": "temperature", "limit": 2}).json()
    assert [p["value"] for p in history] == [23, 22]
    messages = api.get(f"/api/devices/{pk}/api-dev-1/messages").json()["items"]
    assert (
        messages[0]["payload"] == '{"id":"1","params":{"temperature":23}}' and messages[0]["payloadEncoding"] == "text"
    )
    assert int(messages[0]["messageIdText"]) == messages[0]["messageId"]
    raw = api.get("/api/messages", params={"productKey": pk, "deviceName": "api-dev-1", "encoding": "base64",
                                           "limit": 1}).json()
    assert base64.b64decode(raw["items"][0]["payload"]) == b'{"id":"1","params":{"temperature":23}}'
    older = api.get("/api/messages", params={"productKey": pk, "before": raw["next"], "limit": 1}).json()["items"]
    assert older[0]["messageId"] < raw["items"][0]["messageId"]

    assert api.post(f"/api/devices/{pk}/api-dev-1/revoke-tokens").status_code == 200
    deadline = time.monotonic() + 1
    while client.publish(topic, b'{"params":{}}', token).json["code"] != 20003:
        assert time.monotonic() < deadline, "token alive 1 s after revocation through the API"
    token = client.token(pk, "api-dev-1", device["deviceSecret"])  # may authenticate again
    assert api.post(f"/api/devices/{pk}/api-dev-1/disable").json()["status"] == "disabled"
    assert client.auth(pk, "api-dev-1", device["deviceSecret"]).json["code"] == 20000
    reset = api.post(f"/api/devices/{pk}/api-dev-1/reset-secret").json()
    assert reset["deviceSecret"] != device["deviceSecret"]
    assert api.delete(f"/api/devices/{pk}/api-dev-1").status_code == 200
    assert api.get(f"/api/devices/{pk}/api-dev-1").status_code == 404
    client.close()


def test_device_listing_filters_and_pages(api: httpx.Client) -> None:
    pk = api.post("/api/products", json={"name": "paged"}).json()["productKey"]
    for i in range(5):
        api.post("/api/devices", json={"productKey": pk, "deviceName": f"pg-{i:03d}"})
    api.post(f"/api/devices/{pk}/pg-003/disable")
    first = api.get("/api/devices", params={"productKey": pk, "limit": 2}).json()
    second = api.get("/api/devices", params={"productKey": pk, "limit": 2, "after": first["next"]}).json()
    third = api.get("/api/devices", params={"productKey": pk, "limit": 2, "after": second["next"]}).json()
    names = [d["deviceName"] for page in (first, second, third) for d in page["items"]]
    assert names == [f"pg-{i:03d}" for i in range(5)] and third["next"] is None
    disabled = api.get("/api/devices", params={"productKey": pk, "status": "disabled"}).json()["items"]
    assert [d["deviceName"] for d in disabled] == ["pg-003"]
    prefixed = api.get("/api/devices", params={"productKey": pk, "namePrefix": "pg-00"}).json()["items"]
    assert len(prefixed) == 5


def test_gateway_children_through_the_api(api: httpx.Client) -> None:
    gw_pk = api.post("/api/products", json={"name": "gw", "nodeType": "gateway"}).json()["productKey"]
    api.post("/api/devices", json={"productKey": gw_pk, "deviceName": "gw-1"})
    child = api.post("/api/devices", json={"productKey": gw_pk, "deviceId": f"{gw_pk}_kid-1",
                                           "gateway": {"productKey": gw_pk, "deviceName": "gw-1"}})
    assert child.status_code == 201 and child.json()["deviceName"] == "kid-1"
    assert [d["deviceName"] for d in api.get(f"/api/devices/{gw_pk}/gw-1/children").json()] == ["kid-1"]
    refused = api.delete(f"/api/devices/{gw_pk}/gw-1")
    assert refused.status_code == 409 and "sub-devices" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field_or_words"),
    [
        ("POST", "/api/products", {"name": ""}, 400, "name"),
        ("POST", "/api/products", {"name": "x", "nodeType": "router"}, 400, "nodeType"),
        ("POST", "/api/products", {"name": "x", "thingModel": {"properties": [{"identifier": "time"}]}}, 400,
         "invalid thing model"),
        ("POST", "/api/products", {"name": "x", "topics": [{"topic": "get", "operation": "pub"}]}, 400, "user/"),
        ("POST", "/api/devices", {"productKey": "nope1", "deviceName": "dev-x"}, 404, "does not exist"),
        ("POST", "/api/devices", {"deviceName": "dev-x"}, 400, "productKey"),
        ("GET", "/api/devices/nope1/none", None, 404, "does not exist"),
        ("GET", "/api/messages?limit=0", None, 400, "limit"),
        ("GET", "/api/products/zz/thing-model", None, 404, "does not exist"),
    ],
)
def test_errors_are_json_with_a_code_and_name_the_field(
    api: httpx.Client, method: str, path: str, body: dict | None, status: int, field_or_words: str
) -> None:
    reply = api.request(method, path, json=body)
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] in ("invalid", "not_found") and field_or_words in f"{error['field']} {error['message']}"


def test_conflicts_and_invalid_products_create_nothing(api: httpx.Client) -> None:
    api.post("/api/products", json={"name": "dup", "productKey": "dupKey01"})
    again = api.post("/api/products", json={"name": "dup", "productKey": "dupKey01"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    before = len(api.get("/api/products").json())
    api.post("/api/products", json={"name": "badmodel", "thingModel": {"properties": "nope"}})
    assert len(api.get("/api/products").json()) == before


def test_api_keys_are_shown_once_and_deleted_keys_stop_working(api: httpx.Client, server: ServerProcess) -> None:
    created = api.post("/api/apikeys", json={"name": "temp", "role": "read"}).json()
    key = created["key"]
    assert key.startswith("tpk_") and created["prefix"] == key[:10]
    listed = api.get("/api/apikeys").json()
    assert all("key" not in k for k in listed) and created["id"] in [k["id"] for k in listed]
    headers = {"Authorization": f"Bearer {key}"}
    assert api.get("/api/products", headers=headers).status_code == 200
    assert api.delete(f"/api/apikeys/{created['id']}").status_code == 204
    assert api.get("/api/products", headers=headers).status_code == 401
    db = (server.data_dir / "thingport.db").read_bytes()
    assert key.encode() not in db  # stored hashed


def test_health_readiness_and_metrics(anonymous: httpx.Client, api: httpx.Client, server: ServerProcess) -> None:
    assert anonymous.get("/healthz").json()["status"] == "ok"
    ready = anonymous.get("/readyz").json()
    assert ready == {"status": "ready", "checks": {"database": "ok", "writes": "ok"}}
    client = server.client()
    client.request("POST", "/auth", b"{}", {"Content-Type": "application/json"})
    client.close()
    text = api.get("/metrics").text
    assert 'thingport_requests_total{code="10001",dialect="aliyun",endpoint="auth"}' in text
    assert "thingport_request_seconds_bucket" in text and "thingport_auth_total" in text
    assert "# TYPE thingport_store_write_failures_total counter" in text


def test_interactive_docs_are_served_without_a_cdn(anonymous: httpx.Client) -> None:
    page = anonymous.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    script = anonymous.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert anonymous.get("/openapi.json").json()["info"]["title"] == "thingport management API"


def test_cli_apikey_json(server: ServerProcess) -> None:
    created = cli(server.data_dir, "apikey", "create", "--name", "ci", "--role", "read")
    assert created["key"].startswith("tpk_") and created["role"] == "read"
    assert "key" not in cli(server.data_dir, "apikey", "list")[0]


def test_a_thing_model_without_any_section_is_refused_and_changes_nothing(api: httpx.Client) -> None:
    refused = api.post("/api/products", json={"name": "sectionless", "thingModel": {"foo": 1}})
    assert refused.status_code == 400 and "needs a properties or events or services list" in refused.text
    assert "sectionless" not in [p["name"] for p in api.get("/api/products").json()]
    created = api.post("/api/products", json={"name": "empty-sections", "thingModel": {"properties": []}})
    pk = created.json()["productKey"]
    version = api.get(f"/api/products/{pk}").json()["modelVersion"]
    for fmt in ("auto", "tsl", "huawei"):
        put = api.put(f"/api/products/{pk}/thing-model", params={"format": fmt}, json={"foo": 1})
        assert put.status_code == 400 and "this document has none (its keys: foo)" in put.text, put.text
    assert api.get(f"/api/products/{pk}").json()["modelVersion"] == version
