"""The device page's charts (time range, server-side downsampling, gaps, step lines with the model's labels,
units, CSV), its events panel, the product page's events and services, and the console at phone width, in
a real browser. Screenshots go where the other console tests put theirs."""

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.console.test_console_browser import (  # noqa: F401 - fixtures used by name
    WAIT_MS,
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

TSL = {
    "properties": [
        {"identifier": "temperature", "name": "Temperature", "accessMode": "r",
         "dataType": {"type": "float", "specs": {"min": "-40", "max": "100", "unit": "°C"}}},
        {"identifier": "mode", "name": "Mode", "accessMode": "rw",
         "dataType": {"type": "enum", "specs": {"0": "off", "1": "eco", "2": "boost"}}},
        {"identifier": "power", "name": "Power", "accessMode": "rw",
         "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
    ],
    "events": [
        {"identifier": "overheat", "name": "Overheat", "type": "alert",
         "outputData": [
             {"identifier": "level", "name": "Level", "dataType": {"type": "int", "specs": {"min": "1", "max": "3"}}},
             {"identifier": "where", "name": "Where", "dataType": {"type": "text", "specs": {"length": "32"}}}]},
    ],
    "services": [
        {"identifier": "reboot", "name": "Reboot", "callType": "async",
         "inputData": [{"identifier": "delay", "name": "Delay", "dataType": {"type": "int", "specs": {"unit": "s"}}}],
         "outputData": []},
    ],
}
MINUTE = 60_000


def admin_api(proc: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{proc.api_port}", timeout=10,
                        headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def thermostat(server: ServerProcess, admin_key: str) -> Iterator[dict]:  # noqa: F811
    """A device that reported every 30 s from 50 to 30 minutes ago, was silent for 20 minutes, then reported
    every 30 s again until a minute ago; and posted two events."""
    now = int(time.time() * 1000)
    early = [now - 50 * MINUTE + i * 30_000 for i in range(41)]  # -50 .. -30 min
    late = [now - 10 * MINUTE + i * 30_000 for i in range(19)]  # -10 .. -1 min
    times = early + late
    with admin_api(server, admin_key) as api:
        pk = api.post("/api/products", json={"name": "thermostats", "thingModel": TSL}).json()["productKey"]
        secret = api.post("/api/devices", json={"productKey": pk, "deviceName": "thermo-1"}).json()["deviceSecret"]
    client = server.client()
    try:
        token = client.token(pk, "thermo-1", secret)
        props = {"temperature": [{"value": round(20 + (i % 10) * 0.4, 1), "time": at} for i, at in enumerate(times)],
                 "mode": [{"value": (i // 15) % 3, "time": at} for i, at in enumerate(times)],
                 "power": [{"value": int(at > now - 40 * MINUTE), "time": at} for at in times]}
        doc = {"id": "1", "version": "1.0", "params": {"properties": props},
               "method": "thing.event.property.batch.post"}
        reply = client.publish(f"/sys/{pk}/thermo-1/thing/event/property/batch/post", json.dumps(doc).encode(), token)
        assert reply.json["code"] == 0, reply.json
        for level, where in ((2, "boiler"), (3, "pump")):
            event = {"id": str(level), "version": "1.0", "method": "thing.event.overheat.post",
                     "params": {"value": {"level": level, "where": where}, "time": now - 2 * MINUTE + level}}
            reply = client.publish(f"/sys/{pk}/thermo-1/thing/event/overheat/post", json.dumps(event).encode(), token)
            assert reply.json["code"] == 0, reply.json
    finally:
        client.close()
    yield {"productKey": pk, "deviceName": "thermo-1", "times": times, "now": now, "late": late}


def test_device_charts_show_gaps_steps_labels_units_ranges_and_export_csv(
    page, server: ServerProcess, admin_key: str, thermostat: dict,  # noqa: F811
) -> None:
    pk = thermostat["productKey"]
    sign_in(page, admin_key)
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    page.goto(f"/console/#/device/{pk}/thermo-1")

    temperature = page.get_by_test_id("chart-temperature")
    count = str(len(thermostat["times"]))
    expect(temperature).to_have_attribute("data-values", count, **expect_timeout)
    # the last hour in 240 slices of 15 s: one report a slice, and the 20 silent minutes are one gap
    expect(temperature).to_have_attribute("data-points", count)
    expect(temperature).to_have_attribute("data-gaps", "1")
    expect(temperature).to_have_attribute("data-kind", "line")
    expect(temperature).to_have_attribute("data-unit", "°C")
    expect(temperature.get_by_test_id("chart-latest-temperature")).to_contain_text("°C")
    ticks = temperature.get_attribute("data-y-ticks").split("|")
    assert all(float(t) for t in ticks) and len(ticks) >= 2

    mode = page.get_by_test_id("chart-mode")
    expect(mode).to_have_attribute("data-kind", "step")
    expect(mode).to_have_attribute("data-gaps", "1")
    expect(mode).to_have_attribute("data-y-ticks", "off|eco|boost")
    expect(page.get_by_test_id("chart-power")).to_have_attribute("data-y-ticks", "off|on")
    # the status table says enum and bool values with their model labels, numbers with their unit
    expect(page.get_by_test_id("value-mode")).to_have_text("0 (off)")
    expect(page.get_by_test_id("value-power")).to_have_text("1 (on)")
    expect(page.get_by_test_id("value-temperature")).to_contain_text("°C")
    expect(page.get_by_test_id("chart-latest-power")).to_have_text("1 (on)")
    assert temperature.locator("canvas").count() == 1
    shot(page, "charts-01-last-hour")

    # the last day: the same values, in 6-minute slices now (means of up to 12 values)
    page.get_by_test_id("chart-range").select_option("day")
    expect(page.get_by_test_id("charts")).to_have_attribute("data-range-kind", "day", **expect_timeout)
    expect(temperature).to_have_attribute("data-values", count, **expect_timeout)
    points = int(temperature.get_attribute("data-points"))
    assert 5 <= points <= 9, points  # 20 + 9 minutes of values in 6-minute slices
    expect(temperature).to_have_attribute("data-gaps", "1")

    # a custom range: the last 15 minutes hold only the late run, without a gap
    page.get_by_test_id("chart-range").select_option("custom")
    start = time.localtime((thermostat["now"] - 15 * MINUTE) / 1000)
    end = time.localtime(thermostat["now"] / 1000 + 60)
    page.get_by_test_id("chart-from").fill(time.strftime("%Y-%m-%dT%H:%M", start))
    page.get_by_test_id("chart-to").fill(time.strftime("%Y-%m-%dT%H:%M", end))
    page.get_by_test_id("chart-apply").click()
    expect(page.get_by_test_id("charts")).to_have_attribute("data-range-kind", "custom", **expect_timeout)
    expect(temperature).to_have_attribute("data-values", str(len(thermostat["late"])), **expect_timeout)
    expect(temperature).to_have_attribute("data-gaps", "0")
    shot(page, "charts-02-custom-range")

    with page.expect_download() as got:
        page.get_by_test_id("csv-temperature").click()
    assert got.value.suggested_filename == f"{pk}-thermo-1-temperature.csv"
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert [int(r["timeMs"]) for r in rows] == thermostat["late"]
    assert {r["label"] for r in rows} == {"°C"}

    # a range that ends before it starts is refused in the page
    page.get_by_test_id("chart-from").fill(time.strftime("%Y-%m-%dT%H:%M", end))
    page.get_by_test_id("chart-to").fill(time.strftime("%Y-%m-%dT%H:%M", start))
    page.get_by_test_id("chart-apply").click()
    expect(page.get_by_test_id("error-text")).to_contain_text("start must be before its end", **expect_timeout)


def test_events_panel_and_the_models_events_and_services(
    page, server: ServerProcess, admin_key: str, thermostat: dict,  # noqa: F811
) -> None:
    pk = thermostat["productKey"]
    sign_in(page, admin_key)
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    page.goto(f"/console/#/device/{pk}/thermo-1")
    events = page.get_by_test_id("device-events").get_by_test_id("event-row")
    expect(events).to_have_count(2, **expect_timeout)
    newest = events.first  # newest first
    expect(newest).to_have_attribute("data-event", "overheat")
    expect(newest).to_contain_text("Overheat")
    expect(newest.locator('[data-param="level"]')).to_have_text("3")
    expect(newest.locator('[data-param="where"]')).to_have_text("pump")
    expect(events.nth(1).locator('[data-param="level"]')).to_have_text("2")
    page.get_by_test_id("device-events").scroll_into_view_if_needed()
    shot(page, "events-01-device-page")

    page.goto(f"/console/#/products?model={pk}")
    model = page.get_by_test_id(f"model-{pk}")
    event = model.get_by_test_id("model-event")
    expect(event).to_have_count(1, **expect_timeout)
    expect(event).to_contain_text("Overheat")
    expect(event).to_contain_text("alert")
    expect(event.locator('[data-param="level"]')).to_contain_text("int")
    expect(event.locator('[data-param="level"]')).to_contain_text("1 .. 3")
    expect(event.locator('[data-param="where"]')).to_contain_text("text")
    service = model.get_by_test_id("model-service")
    expect(service).to_have_count(1)
    expect(service).to_contain_text("reboot")
    expect(service.locator('[data-param="delay"]')).to_contain_text("unit s")
    model.scroll_into_view_if_needed()
    shot(page, "events-02-product-model")


PHONE = {"width": 390, "height": 844}


def test_the_console_fits_a_phone_screen(
    browser, server: ServerProcess, admin_key: str, thermostat: dict,  # noqa: F811
) -> None:
    context = browser.new_context(viewport=PHONE, base_url=f"http://127.0.0.1:{server.api_port}",
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(WAIT_MS)
    phone = context.new_page()
    errors: list[str] = []
    phone.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(phone, admin_key)
        expect(phone.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)

        def fits(name: str) -> None:
            width = phone.evaluate("document.documentElement.scrollWidth")
            viewport = phone.evaluate("window.innerWidth")
            assert width <= viewport, f"{name}: the page is {width} px wide on a {viewport} px screen"
            shot(phone, f"phone-{name}")

        for route in ("products", "devices", "messages", "subscriptions", "create"):
            link = phone.get_by_test_id(f"nav-{route}")
            link.scroll_into_view_if_needed()
            expect(link).to_be_visible()
            link.click()
            expect(phone.locator("#view")).to_have_attribute("data-page", route, **expect_timeout)
            phone.wait_for_load_state("networkidle")
            fits(route)
        phone.goto(f"/console/#/device/{thermostat['productKey']}/thermo-1")
        chart = phone.get_by_test_id("chart-temperature")
        expect(chart).to_have_attribute("data-values", str(len(thermostat["times"])), **expect_timeout)
        expect(phone.get_by_test_id("event-row")).to_have_count(2, **expect_timeout)
        box = chart.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        fits("device")
        assert errors == [], errors
    finally:
        context.close()
