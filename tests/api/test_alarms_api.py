"""Alarms over the management API: definitions (admin keys define and delete, any key reads), the fleet's
alarms with filters, a device's history, acknowledging (admin keys only), and /metrics' open alarms."""

import httpx

from tests.api.test_metrics import scrape, value
from tests.dialects.test_alink_reports_https import SEED_004_TSL
from tests.support import ServerProcess, wait_until


def test_alarms_over_the_api(server: ServerProcess, api: httpx.Client, read_key: str, admin_key: str) -> None:
    pk = api.post("/api/products", json={"name": "alarmed", "thingModel": SEED_004_TSL}).json()["productKey"]
    device = api.post("/api/devices", json={"productKey": pk, "deviceName": "hot-1"}).json()
    reader = httpx.Client(base_url=str(api.base_url), headers={"Authorization": f"Bearer {read_key}"}, timeout=10)
    definitions = f"/api/products/{pk}/alarm-definitions"
    body = {"name": "overheat", "severity": "critical", "condition": "temperature > 38",
            "clearCondition": "temperature < 36"}
    assert reader.post(definitions, json=body).status_code == 403
    bad = api.post(definitions, json={**body, "condition": "pressure > 3"})
    assert bad.status_code == 400 and "not in the product's thing model" in bad.json()["error"]["message"]
    assert api.post(definitions, json={**body, "severity": "awful"}).status_code == 400
    assert api.post("/api/products/pkNothing99/alarm-definitions", json=body).status_code == 404
    assert reader.get(definitions).json() == []  # nothing was stored by the refusals
    created = api.post(definitions, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["clearCondition"] == "temperature < 36"
    assert api.post(definitions, json=body).status_code == 409
    assert [d["name"] for d in reader.get(definitions).json()] == ["overheat"]

    client = server.client()
    token = client.token(pk, device["deviceName"], device["deviceSecret"])
    topic = f"/sys/{pk}/hot-1/thing/event/property/post"
    assert client.publish(topic, b'{"id":"1","params":{"temperature":45}}', token).json["code"] == 0
    mine = wait_until(lambda: reader.get("/api/alarms", params={"productKey": pk}).json(), "the alarm raised")
    alarm = mine[0]
    assert (alarm["name"], alarm["state"], alarm["details"]["value"], alarm["deviceName"]) == (
        "overheat", "active", 45, "hot-1")
    assert reader.get("/api/alarms", params={"productKey": pk, "severity": "minor"}).json() == []
    assert reader.get("/api/alarms", params={"productKey": pk, "state": "cleared"}).json() == []
    assert reader.get(f"/api/alarms/{alarm['id']}").json() == alarm
    assert reader.get("/api/alarms/999999999").status_code == 404

    ack = f"/api/alarms/{alarm['id']}/acknowledge"
    assert reader.post(ack).status_code == 403
    acked = api.post(ack)
    assert acked.status_code == 200 and acked.json()["acknowledgedBy"] == "apikey:admin-test"
    assert api.post(ack).status_code == 409
    metrics = wait_until(lambda: (t := scrape(server, admin_key)) and value(
        t, "thingport_alarms", product=pk, severity="critical", state="acknowledged") == 1 and t,
        "the acknowledged alarm counted")
    assert value(metrics, "thingport_alarms", product=pk, severity="critical", state="active") == 0

    assert client.publish(topic, b'{"id":"2","params":{"temperature":30}}', token).json["code"] == 0
    client.close()
    wait_until(lambda: reader.get(f"/api/alarms/{alarm['id']}").json()["state"] == "cleared", "cleared")
    history = reader.get(f"/api/devices/{pk}/hot-1/alarms").json()
    assert [(c["state"], c["by"]) for c in history[0]["changes"]] == [
        ("active", None), ("acknowledged", "apikey:admin-test"), ("cleared", None)]
    assert reader.get(f"/api/devices/{pk}/nobody/alarms").status_code == 404
    wait_until(lambda: value(scrape(server, admin_key), "thingport_alarms", product=pk, severity="critical",
                             state="acknowledged") == 0, "no longer counted")
    assert reader.delete(f"{definitions}/overheat").status_code == 403
    assert api.delete(f"{definitions}/overheat").json() == {"productKey": pk, "name": "overheat", "alarmsCleared": 0}
    assert api.delete(f"{definitions}/overheat").status_code == 404
    reader.close()
