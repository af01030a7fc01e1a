"""The console's device list and product list show presence from the listing itself: online and last seen
per device (a disabled device never with a green dot), an online filter, devices counted per product; and
the message log offers its device filter only once a product is chosen. In a real browser."""

import httpx

from tests.console.test_console_browser import (  # noqa: F401 - fixtures used by name
    admin_key,
    browser,
    expect,
    expect_timeout,
    page,
    server,
    shot,
    sign_in,
)
from tests.support import ServerProcess


def test_presence_in_the_device_and_product_lists(page, server: ServerProcess, admin_key: str) -> None:  # noqa: F811
    with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10,
                      headers={"Authorization": f"Bearer {admin_key}"}) as api:
        pk = api.post("/api/products", json={"name": "presence"}).json()["productKey"]
        secrets = {n: api.post("/api/devices", json={"productKey": pk, "deviceName": n}).json()["deviceSecret"]
                   for n in ("web-on", "web-off", "web-never")}
        client = server.client()
        try:
            for name in ("web-on", "web-off"):
                token = client.token(pk, name, secrets[name])
                assert client.publish(f"/sys/{pk}/{name}/thing/event/property/post", b'{"params":{"t":1}}',
                                      token).json["code"] == 0
        finally:
            client.close()
        api.post(f"/api/devices/{pk}/web-off/disable")  # seen a moment ago, then disabled

    statuses: list[str] = []
    page.on("request", lambda r: statuses.append(r.url) if r.url.endswith("/status") else None)
    sign_in(page, admin_key)
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    page.get_by_test_id("nav-products").click()
    counts = page.locator(f'[data-testid="product-row"][data-product-key="{pk}"]').get_by_test_id("product-counts")
    expect(counts).to_have_attribute("data-total", "3", **expect_timeout)
    expect(counts).to_have_attribute("data-online", "1")
    expect(counts).to_have_attribute("data-disabled", "1")
    expect(counts).to_contain_text("3 total")
    shot(page, "presence-01-product-counts")

    counts.get_by_test_id("count-online").click()  # the online count lists those devices
    rows = page.get_by_test_id("device-row")
    expect(rows).to_have_count(1, **expect_timeout)
    expect(rows.first).to_have_attribute("data-device-name", "web-on")
    expect(page.get_by_test_id("devices-online")).to_have_value("true")

    page.get_by_test_id("devices-online").select_option("")
    page.get_by_test_id("devices-search").click()
    expect(rows).to_have_count(3, **expect_timeout)
    by_name = {name: page.locator(f'[data-testid="device-row"][data-device-name="{name}"]')
               for name in ("web-on", "web-off", "web-never")}
    expect(by_name["web-on"].get_by_test_id("status-dot")).to_have_attribute("data-state", "online")
    expect(by_name["web-on"].get_by_test_id("last-seen")).to_contain_text("ago")
    expect(by_name["web-off"].get_by_test_id("device-status")).to_have_text("disabled")
    expect(by_name["web-off"].get_by_test_id("status-dot")).to_have_attribute("data-state", "offline")
    expect(by_name["web-off"].get_by_test_id("last-seen")).to_contain_text("ago")  # when it was last seen
    expect(by_name["web-never"].get_by_test_id("last-seen")).to_have_text("never")
    for i in range(3):  # never a green dot beside a disabled badge
        row = rows.nth(i)
        if row.get_by_test_id("device-status").inner_text() == "disabled":
            assert row.locator(".dot.online").count() == 0
    shot(page, "presence-02-device-list")

    page.get_by_test_id("devices-online").select_option("false")
    page.get_by_test_id("devices-search").click()
    expect(rows).to_have_count(2, **expect_timeout)
    assert sorted(rows.nth(i).get_attribute("data-device-name") for i in range(2)) == ["web-never", "web-off"]
    assert statuses == []  # presence came with the listing: no request per device


def test_the_message_device_filter_waits_for_a_product(page, server: ServerProcess, admin_key: str) -> None:  # noqa: F811
    with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10,
                      headers={"Authorization": f"Bearer {admin_key}"}) as api:
        pk = api.post("/api/products", json={"name": "logged"}).json()["productKey"]
    sign_in(page, admin_key)
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    page.goto("/console/#/messages?deviceName=somebody")  # a device without its product: not sent, not kept
    device = page.get_by_test_id("messages-device")
    expect(device).to_be_disabled(**expect_timeout)
    expect(device).to_have_attribute("placeholder", "choose a product first")
    expect(page.get_by_test_id("error")).to_be_hidden()
    expect(page.get_by_test_id("messages-product").locator(f'option[value="{pk}"]')).to_have_count(1, **expect_timeout)
    page.get_by_test_id("messages-product").select_option(pk)
    expect(device).to_be_enabled()
    device.fill("nobody-here")
    page.get_by_test_id("messages-product").select_option("")
    expect(device).to_be_disabled()
    expect(device).to_have_value("")
    shot(page, "presence-03-message-filter")
