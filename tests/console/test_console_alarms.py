"""The console's alarms page in a real browser: the fleet's open alarms raised by a real device's reports,
filtered by product, severity and state, and acknowledged with a button (a read key is told it may not)."""

import json

import httpx

from tests.console.test_console_browser import (  # noqa: F401 - fixtures used by name
    admin_key,
    browser,
    create_api_key,
    error_text,
    expect,
    expect_timeout,
    page,
    report,
    server,
    shot,
    sign_in,
)
from tests.dialects.test_alink_reports_https import SEED_004_TSL
from tests.support import ServerProcess, wait_until


def test_alarms_page_lists_filters_and_acknowledges(page, server: ServerProcess, admin_key: str) -> None:  # noqa: F811
    with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10,
                      headers={"Authorization": f"Bearer {admin_key}"}) as api:
        pk = api.post("/api/products", json={"name": "greenhouse", "thingModel": SEED_004_TSL}).json()["productKey"]
        devices = [api.post("/api/devices", json={"productKey": pk, "deviceName": f"house-{i}"}).json()
                   for i in range(2)]
        for body in ({"name": "overheat", "severity": "critical", "condition": "temperature > 38",
                      "clearCondition": "temperature < 36"},
                     {"name": "dry-air", "severity": "minor", "condition": "humidity < 20"}):
            assert api.post(f"/api/products/{pk}/alarm-definitions", json=body).status_code == 201
        client = server.client()
        try:
            for d, values in zip(devices, ({"temperature": 41, "humidity": 15}, {"temperature": 39}), strict=True):
                token = client.token(pk, d["deviceName"], d["deviceSecret"])
                report(client, d, values, token)
        finally:
            client.close()
        wait_until(lambda: len(api.get("/api/alarms", params={"productKey": pk}).json()) == 3, "three alarms raised")

    sign_in(page, admin_key)
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    page.get_by_test_id("nav-alarms").click()
    expect(page.locator("#view")).to_have_attribute("data-page", "alarms", **expect_timeout)
    page.get_by_test_id("alarms-product").select_option(pk)
    page.get_by_test_id("alarms-search").click()
    rows = page.get_by_test_id("alarm-row")
    expect(rows).to_have_count(3, **expect_timeout)
    expect(page.locator('[data-testid="alarm-row"][data-severity="critical"]')).to_have_count(2)
    expect(rows.first).to_contain_text(pk)
    shot(page, "alarms-01-open-alarms")

    page.get_by_test_id("alarms-severity").select_option("critical")
    page.get_by_test_id("alarms-search").click()
    expect(rows).to_have_count(2, **expect_timeout)
    first = rows.first
    alarm_id = first.get_attribute("data-alarm-id")
    page.get_by_test_id(f"ack-{alarm_id}").click()
    expect(page.get_by_test_id("notice")).to_contain_text("acknowledged", **expect_timeout)
    acked = page.locator(f'[data-testid="alarm-row"][data-alarm-id="{alarm_id}"]')
    expect(acked).to_have_attribute("data-state", "acknowledged", **expect_timeout)
    expect(acked.get_by_test_id("alarm-acknowledged")).to_contain_text("apikey:console-admin")
    expect(page.get_by_test_id(f"ack-{alarm_id}")).to_have_count(0)
    shot(page, "alarms-02-acknowledged")

    page.get_by_test_id("alarms-state").select_option("acknowledged")
    page.get_by_test_id("alarms-severity").select_option("")
    page.get_by_test_id("alarms-search").click()
    expect(rows).to_have_count(1, **expect_timeout)
    assert json.loads(json.dumps(page.url)).endswith("state=acknowledged")


def test_a_read_key_sees_alarms_but_may_not_acknowledge(page, server: ServerProcess, admin_key: str) -> None:  # noqa: F811
    with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10,
                      headers={"Authorization": f"Bearer {admin_key}"}) as api:
        pk = api.post("/api/products", json={"name": "quiet"}).json()["productKey"]
        d = api.post("/api/devices", json={"productKey": pk, "deviceName": "quiet-1"}).json()
        assert api.post(f"/api/products/{pk}/alarm-definitions", json={
            "name": "loud", "severity": "warning", "condition": "noise > 80"}).status_code == 201
        client = server.client()
        try:
            report(client, d, {"noise": 90}, client.token(pk, "quiet-1", d["deviceSecret"]))
        finally:
            client.close()
        wait_until(lambda: api.get("/api/alarms", params={"productKey": pk}).json(), "the alarm raised")
    sign_in(page, create_api_key(server, "console-reader", "read"))
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    page.goto(f"/console/#/alarms?productKey={pk}")
    row = page.get_by_test_id("alarm-row")
    expect(row).to_have_count(1, **expect_timeout)
    row.get_by_role("button", name="Acknowledge").click()
    expect(error_text(page)).to_contain_text("read-only", **expect_timeout)
    expect(row).to_have_attribute("data-state", "active")
