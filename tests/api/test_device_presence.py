"""Online/offline and last seen in the API's device listings, and devices counted per product, against a
running server whose devices really authenticate and report."""

import httpx

from tests.support import ServerProcess


def test_listing_filters_by_online_and_products_count_their_devices(server: ServerProcess, api: httpx.Client) -> None:
    pk = api.post("/api/products", json={"name": "presence"}).json()["productKey"]
    secrets = {name: api.post("/api/devices", json={"productKey": pk, "deviceName": name}).json()["deviceSecret"]
               for name in ("pres-on", "pres-off", "pres-never")}
    client = server.client()
    for name in ("pres-on", "pres-off"):
        token = client.token(pk, name, secrets[name])
        topic = f"/sys/{pk}/{name}/thing/event/property/post"
        assert client.publish(topic, b'{"id":"1","params":{"t":1}}', token).json["code"] == 0
    assert api.post(f"/api/devices/{pk}/pres-off/disable").json()["status"] == "disabled"

    page = api.get("/api/devices", params={"productKey": pk}).json()
    listed = {d["deviceName"]: d for d in page["items"]}
    assert page["next"] is None and list(listed) == ["pres-on", "pres-off", "pres-never"]
    assert listed["pres-on"]["online"] is True and listed["pres-on"]["lastSeenAt"] > 0
    assert listed["pres-off"]["online"] is False and listed["pres-off"]["lastSeenAt"] > 0  # disabled: offline
    assert listed["pres-never"]["online"] is False and listed["pres-never"]["lastSeenAt"] is None
    for name, doc in listed.items():  # the listing says what each device's status says
        status = api.get(f"/api/devices/{pk}/{name}/status").json()
        assert (status["online"], status["lastSeenAt"]) == (doc["online"], doc["lastSeenAt"])

    online = api.get("/api/devices", params={"productKey": pk, "online": "true"}).json()["items"]
    offline = api.get("/api/devices", params={"productKey": pk, "online": "false"}).json()["items"]
    assert [d["deviceName"] for d in online] == ["pres-on"]
    assert [d["deviceName"] for d in offline] == ["pres-off", "pres-never"]
    bad = api.get("/api/devices", params={"online": "maybe"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"

    counts = {"total": 3, "online": 1, "disabled": 1}
    assert api.get(f"/api/products/{pk}").json()["devices"] == counts
    assert {p["productKey"]: p["devices"] for p in api.get("/api/products").json()}[pk] == counts
    assert "devices" not in api.patch(f"/api/products/{pk}", json={"validation": "whole-report"}).json()
    assert "online" not in api.get(f"/api/devices/{pk}/pres-on").json()  # one device: its status says it


def test_a_gateways_children_carry_their_presence(server: ServerProcess, api: httpx.Client) -> None:
    pk = api.post("/api/products", json={"name": "gw", "nodeType": "gateway"}).json()["productKey"]
    api.post("/api/devices", json={"productKey": pk, "deviceName": "gw-main"})
    api.post("/api/devices", json={"productKey": pk, "deviceName": "gw-child",
                                   "gateway": {"productKey": pk, "deviceName": "gw-main"}})
    children = api.get(f"/api/devices/{pk}/gw-main/children").json()
    assert [(c["deviceName"], c["online"], c["lastSeenAt"]) for c in children] == [("gw-child", False, None)]
