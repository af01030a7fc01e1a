"""The web console in a real browser (Playwright driving Debian's Chromium) against a real server.

One server and one browser for the module; a fresh browser context (so a fresh sessionStorage) per test.
Screenshots of the key steps go to $THINGPORT_ARTIFACTS or test-artifacts/console in the repository.
"""

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dialects.test_alink_reports_https import SEED_004_TSL
from tests.support import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 5_000  # every wait in the browser is bounded by this (the console refreshes every 2 s)
ARTIFACTS = Path(
    os.environ.get("THINGPORT_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
)

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - playwright is a dev dependency
    sync_playwright = None  # type: ignore[assignment]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: the console browser tests must run in CI")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator["Browser"]:
    if sync_playwright is None:
        _unavailable("the playwright Python package is not installed")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (install Debian's chromium package)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=20_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("console") / "data")
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


def create_api_key(server: ServerProcess, name: str, role: str) -> str:
    """``thingport apikey create`` in a subprocess: Playwright's sync API keeps an event loop running in this
    thread, so the in-process CLI helper (asyncio.run) cannot be used while a browser is open."""
    result = subprocess.run(
        [sys.executable, "-m", "thingport", "apikey", "create", "--name", name, "--role", role, "--json",
         "--data-dir", str(server.data_dir)],
        env=server.env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)["key"]


@pytest.fixture(scope="module")
def admin_key(server: ServerProcess) -> str:
    return create_api_key(server, "console-admin", "admin")


@pytest.fixture
def page(browser: "Browser", server: ServerProcess) -> Iterator["Page"]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, base_url=f"http://127.0.0.1:{server.api_port}")
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
        assert errors == [], f"JavaScript errors in the console: {errors}"
    finally:
        context.close()


expect_timeout = {"timeout": WAIT_MS}


def shot(page: "Page", name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: "Page", key: str) -> None:
    page.goto("/", wait_until="domcontentloaded")  # / redirects to /console/
    page.get_by_test_id("signin-key").fill(key)
    page.get_by_test_id("signin-submit").click()


def error_text(page: "Page") -> Any:
    return page.get_by_test_id("error-text")


def report(client: Any, device: dict, params: dict, token: str) -> None:
    topic = f"/sys/{device['productKey']}/{device['deviceName']}/thing/event/property/post"
    doc = {"id": str(random.randrange(10**9)), "version": "1.0", "params": params,
           "method": "thing.event.property.post"}
    reply = client.publish(topic, json.dumps(doc).encode(), token).json
    assert reply["code"] == 0, reply


def test_a_wrong_key_shows_the_error_and_stays_signed_out(page: "Page", server: ServerProcess) -> None:
    sign_in(page, "tpk_this-key-does-not-exist")
    expect(page.get_by_test_id("error")).to_be_visible(**expect_timeout)
    expect(error_text(page)).to_contain_text("unknown API key", **expect_timeout)
    expect(page.get_by_test_id("signin")).to_be_visible()
    expect(page.get_by_test_id("nav-devices")).to_be_hidden()
    expect(page.get_by_test_id("sign-out")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('thingport.apiKey')") is None
    assert page.url.endswith("/console/")
    shot(page, "01-wrong-key")


def test_create_product_and_device_then_live_reports_show_on_the_device_page(
    page: "Page", server: ServerProcess, admin_key: str,
) -> None:
    sign_in(page, admin_key)
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    expect(page.locator("#view")).to_have_attribute("data-page", "devices", **expect_timeout)
    assert page.evaluate("sessionStorage.getItem('thingport.apiKey')") == admin_key

    # a product with seed 004's TSL, through the create page
    page.get_by_test_id("nav-create").click()
    name = f"collector-{random.randrange(10**6)}"
    page.get_by_test_id("product-name").fill(name)
    page.get_by_test_id("product-model-json").fill(json.dumps(SEED_004_TSL, indent=2))
    page.get_by_test_id("create-product").click()
    created_key = page.get_by_test_id("created-product-key")
    expect(created_key).to_be_visible(**expect_timeout)
    product_key = created_key.inner_text().strip()
    assert len(product_key) == 11

    # a device in it; the secret is shown once
    expect(page.get_by_test_id("device-product")).to_have_value(product_key, **expect_timeout)
    page.get_by_test_id("device-name-input").fill("collector-01")
    page.get_by_test_id("create-device").click()
    expect(page.get_by_test_id("created-secret")).to_be_visible(**expect_timeout)
    secret = page.get_by_test_id("created-secret").inner_text().strip()
    assert len(secret) >= 16
    shot(page, "02-created-product-and-device")

    # the product and its thing model as a table
    page.get_by_test_id("nav-products").click()
    row = page.locator(f'[data-testid="product-row"][data-product-key="{product_key}"]')
    expect(row).to_contain_text(name, **expect_timeout)
    expect(row).to_contain_text("device")
    page.get_by_test_id(f"model-toggle-{product_key}").click()
    temperature = page.get_by_test_id(f"model-{product_key}").locator('[data-identifier="temperature"]')
    expect(temperature).to_contain_text("Temperature", **expect_timeout)
    expect(temperature).to_contain_text("int")
    expect(temperature).to_contain_text("-10 .. 50")
    humidity = page.get_by_test_id(f"model-{product_key}").locator('[data-identifier="humidity"]')
    expect(humidity).to_contain_text("1 .. 100")
    shot(page, "03-products-with-thing-model")

    # the device page: credentials, secret hidden until asked
    device = {"productKey": product_key, "deviceName": "collector-01"}
    page.goto(f"/console/#/device/{product_key}/collector-01")
    expect(page.get_by_test_id("cred-productKey")).to_have_text(product_key, **expect_timeout)
    expect(page.get_by_test_id("cred-deviceId")).to_have_text(f"{product_key}_collector-01")
    hidden = page.get_by_test_id("device-secret")
    expect(hidden).to_have_attribute("data-shown", "false")
    assert secret not in page.content()
    expect(page.get_by_test_id("device-state")).to_have_text("offline", **expect_timeout)

    # the device authenticates and reports over HTTPS
    client = server.client()
    try:
        token = client.token(product_key, "collector-01", secret)
        temperatures = [18, 23, 21, 27, 25, 30]
        for i, t in enumerate(temperatures):
            report(client, device, {"temperature": t, "humidity": 40 + i}, token)
            time.sleep(0.03)  # distinct receive times on the chart's time axis
    finally:
        client.close()

    expect(page.get_by_test_id("value-temperature")).to_contain_text(str(temperatures[-1]), **expect_timeout)
    expect(page.get_by_test_id("value-humidity")).to_contain_text(str(40 + len(temperatures) - 1))
    expect(page.get_by_test_id("device-state")).to_have_text("online")
    # the charts: the reports came within a second, so they are one slice of the last hour (its mean)
    chart = page.get_by_test_id("chart-temperature")
    expect(chart).to_have_attribute("data-values", str(len(temperatures)), **expect_timeout)
    expect(chart).to_have_attribute("data-points", "1")
    expect(chart.get_by_test_id("chart-latest-temperature")).to_have_text(str(temperatures[-1]))
    expect(chart.locator("canvas")).to_have_count(1)
    expect(page.get_by_test_id("chart-humidity")).to_have_attribute("data-values", str(len(temperatures)))
    # the log may hold other messages of the device too (e.g. presence events): count its property reports
    messages = page.get_by_test_id("device-messages").get_by_test_id("message-row").filter(has_text="property_post")
    expect(messages).to_have_count(len(temperatures), **expect_timeout)
    expect(messages.first.get_by_test_id("payload")).to_contain_text('"temperature": 30')
    expect(page.get_by_test_id("status-dot").first).to_have_attribute("data-state", "online")
    shot(page, "04-device-live-chart")

    page.get_by_test_id("show-secret").click()
    expect(hidden).to_have_text(secret, **expect_timeout)
    expect(hidden).to_have_attribute("data-shown", "true")
    shot(page, "05-device-secret-shown")
    page.get_by_test_id("show-secret").click()
    expect(hidden).to_have_attribute("data-shown", "false")
    page.get_by_test_id("disable-device").click()
    expect(page.get_by_test_id("device-enabled")).to_have_text("disabled", **expect_timeout)
    page.get_by_test_id("enable-device").click()
    expect(page.get_by_test_id("device-enabled")).to_have_text("enabled", **expect_timeout)

    # the devices list: search by name prefix and product, presence dot
    page.get_by_test_id("nav-devices").click()
    page.get_by_test_id("devices-prefix").fill("collector")
    expect(page.get_by_test_id("devices-product").locator(f'option[value="{product_key}"]')).to_have_count(
        1, **expect_timeout
    )
    page.get_by_test_id("devices-product").select_option(product_key)
    page.get_by_test_id("devices-search").click()
    rows = page.get_by_test_id("device-row")
    expect(rows).to_have_count(1, **expect_timeout)
    expect(rows.first.get_by_test_id("status-dot")).to_have_attribute("data-state", "online", **expect_timeout)
    expect(rows.first.get_by_test_id("last-seen")).to_contain_text("ago")
    shot(page, "06-devices")

    # the message log, filtered by product, device and topic
    page.get_by_test_id("nav-messages").click()
    expect(page.get_by_test_id("messages-product").locator(f'option[value="{product_key}"]')).to_have_count(
        1, **expect_timeout
    )
    page.get_by_test_id("messages-product").select_option(product_key)
    page.get_by_test_id("messages-device").fill("collector-01")
    page.get_by_test_id("messages-topic").fill(f"/sys/{product_key}/collector-01/thing/event/property/post")
    page.get_by_test_id("messages-search").click()
    log_rows = page.get_by_test_id("message-row")
    expect(log_rows).to_have_count(len(temperatures), **expect_timeout)
    ids = [log_rows.nth(i).get_attribute("data-message-id") for i in range(len(temperatures))]
    assert all(i and i.isdigit() for i in ids) and ids == sorted(ids, key=int, reverse=True)  # exact, newest first
    shot(page, "07-message-log")

    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("signin")).to_be_visible(**expect_timeout)
    assert page.evaluate("sessionStorage.getItem('thingport.apiKey')") is None


def test_api_errors_are_shown_in_plain_words_and_api_text_is_escaped(
    page: "Page", server: ServerProcess, admin_key: str,
) -> None:
    sign_in(page, admin_key)
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    page.get_by_test_id("nav-create").click()

    # a name full of markup is shown as text, never parsed
    hostile = '<img src=x onerror="window.__pwned=1"><b>bold</b>'
    page.get_by_test_id("product-name").fill(hostile)
    page.get_by_test_id("product-key").fill("escapeTest1")
    page.get_by_test_id("create-product").click()
    expect(page.get_by_test_id("created-product-key")).to_have_text("escapeTest1", **expect_timeout)

    # the same productKey again: the API's conflict message
    page.get_by_test_id("product-name").fill("again")
    page.get_by_test_id("product-key").fill("escapeTest1")
    page.get_by_test_id("create-product").click()
    expect(error_text(page)).to_contain_text("Could not create the product", **expect_timeout)
    expect(error_text(page)).to_contain_text("escapeTest1")
    shot(page, "08-error-conflict")

    # a thing model that is not JSON, and one the server refuses
    page.get_by_test_id("import-product").select_option("escapeTest1")
    page.get_by_test_id("import-model-json").fill("{not json")
    page.get_by_test_id("import-model-json").press("Tab")
    page.get_by_test_id("import-model").click()
    expect(error_text(page)).to_contain_text("not valid JSON", **expect_timeout)
    bad = {"properties": [{"identifier": "t", "name": "T", "accessMode": "r",
                           "dataType": {"type": "int", "specs": {"min": "9", "max": "1"}}}]}
    page.get_by_test_id("import-model-json").fill(json.dumps(bad))
    page.get_by_test_id("import-model").click()
    expect(error_text(page)).to_contain_text("Could not import the thing model: ", **expect_timeout)
    expect(error_text(page)).not_to_contain_text("[object")

    page.get_by_test_id("nav-products").click()
    row = page.locator('[data-testid="product-row"][data-product-key="escapeTest1"]')
    expect(row).to_contain_text(hostile, **expect_timeout)
    assert row.locator("img, b").count() == 0
    assert page.evaluate("window.__pwned") is None
    shot(page, "09-escaped-product-name")

    # a read-only key: reads work, a write shows the 403's message
    read_key = create_api_key(server, "console-reader", "read")
    page.get_by_test_id("sign-out").click()
    sign_in(page, read_key)
    expect(page.get_by_test_id("session-key")).to_contain_text("read-only", **expect_timeout)
    page.get_by_test_id("nav-create").click()
    page.get_by_test_id("product-name").fill("not allowed")
    page.get_by_test_id("create-product").click()
    expect(error_text(page)).to_contain_text("read-only", **expect_timeout)
    shot(page, "10-read-only-key")


def test_subscriptions_page_shows_each_subscription_with_its_backlog(
    page: "Page", server: ServerProcess, admin_key: str
) -> None:
    def thingport(*args: str) -> dict:
        result = subprocess.run(
            [sys.executable, "-m", "thingport", *args, "--json", "--data-dir", str(server.data_dir)],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr + result.stdout
        return json.loads(result.stdout)

    product = thingport("product", "create", "--name", "forwarded")
    thingport("subscription", "create", "--name", "console-sub", "--product-key", product["productKey"],
              "--sink", "http", "--from-start")
    expected = next(s for s in thingport("subscription", "list") if s["name"] == "console-sub")["backlog"]
    sign_in(page, admin_key)
    page.get_by_test_id("nav-subscriptions").click()
    row = page.get_by_test_id("subscription-console-sub")
    expect(row).to_contain_text(product["productKey"], **expect_timeout)
    expect(row).to_contain_text("running")
    backlog = int(page.get_by_test_id("backlog-console-sub").inner_text())
    assert backlog >= expected > 0

    # a push subscription whose receiver is not there: failing, with the error (no credentials) and since when
    device = thingport("device", "create", "--product-key", product["productKey"], "--name", "fwd-dev")
    client = server.client()
    token = client.token(product["productKey"], "fwd-dev", device["deviceSecret"])
    client.publish(f"/{product['productKey']}/fwd-dev/user/t", b"x", token)
    client.close()
    thingport("subscription", "create", "--name", "console-hook", "--product-key", product["productKey"],
              "--sink", "webhook", "--option", "url=http://ops:Passw0rd@127.0.0.1:9/in", "--option", "secret=s",
              "--from-start", "--no-check")
    expect(page.get_by_test_id("state-console-hook")).to_contain_text("failing", timeout=20_000)
    error = page.get_by_test_id("last-error-console-hook")
    expect(error).to_contain_text("webhook http://127.0.0.1:9/in: request failed")  # the sink shows no credentials
    expect(page.get_by_test_id("state-console-hook")).to_contain_text("since")
    assert "Passw0rd" not in page.content()
    expect(page.get_by_test_id("state-console-sub")).to_contain_text("running")
    shot(page, "11-subscriptions")


def test_subscriptions_are_created_paused_resumed_and_deleted_from_the_console(
    page: "Page", server: ServerProcess, admin_key: str
) -> None:
    def thingport(*args: str) -> Any:
        command = [sys.executable, "-m", "thingport", *args, "--json", "--data-dir", str(server.data_dir)]
        result = subprocess.run(command, env=server.env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr + result.stdout
        return json.loads(result.stdout)

    first = thingport("product", "create", "--name", "fwd-one")["productKey"]
    second = thingport("product", "create", "--name", "fwd-two")["productKey"]
    sign_in(page, admin_key)
    page.get_by_test_id("nav-subscriptions").click()
    form = page.get_by_test_id("create-subscription-form")
    expect(form.locator(f"option[value='{second}']")).to_have_count(1, **expect_timeout)
    page.get_by_test_id("sub-name").fill("console-two")
    page.get_by_test_id("sub-products").select_option([first, second])
    page.get_by_test_id("sub-kind-status").uncheck()
    page.get_by_test_id("create-subscription").click()
    expect(page.get_by_test_id("products-console-two")).to_have_text(f"{first}, {second}", **expect_timeout)
    page.get_by_test_id("sub-name").fill("console-every")
    page.get_by_test_id("sub-every").check()
    page.get_by_test_id("create-subscription").click()
    expect(page.get_by_test_id("products-console-every")).to_have_text("every product", **expect_timeout)
    made = {s["name"]: s for s in thingport("subscription", "list")}
    assert made["console-two"]["productKeys"] == [first, second]
    assert made["console-two"]["kinds"] == ["raw", "properties", "event", "alarm"]  # every kind but the one unchecked
    assert made["console-every"]["allProducts"] is True

    page.get_by_test_id("pause-console-two").click()
    expect(page.get_by_test_id("state-console-two")).to_contain_text("disabled", **expect_timeout)
    assert {s["name"]: s for s in thingport("subscription", "list")}["console-two"]["enabled"] is False
    shot(page, "12-subscription-paused")
    page.get_by_test_id("resume-console-two").click()
    expect(page.get_by_test_id("state-console-two")).to_contain_text("running", **expect_timeout)

    # a sink option that is not JSON is refused in the page, before anything is sent
    page.get_by_test_id("sub-name").fill("console-bad")
    page.get_by_test_id("sub-options").fill("url=nope")
    page.get_by_test_id("create-subscription").click()
    expect(error_text(page)).to_contain_text("Could not create the subscription", **expect_timeout)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("delete-console-every").click()
    expect(page.get_by_test_id("subscription-console-every")).to_have_count(0, **expect_timeout)
    assert "console-every" not in {s["name"] for s in thingport("subscription", "list")}
    assert "console-bad" not in {s["name"] for s in thingport("subscription", "list")}


def test_another_site_cannot_frame_the_console(page: "Page", server: ServerProcess) -> None:
    import http.server
    import threading

    base = f"http://127.0.0.1:{server.api_port}"
    framer = (f'<!doctype html><iframe id="console" src="{base}/console/"></iframe>'
              f'<iframe id="health" src="{base}/healthz"></iframe>').encode()

    class Framer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(framer)))
            self.end_headers()
            self.wfile.write(framer)

        def log_message(self, *args: Any) -> None:
            pass

    # another site (localhost, not 127.0.0.1) served from this machine: Chromium keeps pages it does not
    # know to be local away from local addresses
    other_site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Framer)
    threading.Thread(target=other_site.serve_forever, daemon=True).start()
    refusals: list[str] = []
    page.on("console", lambda message: refusals.append(message.text) if "frame-ancestors" in message.text else None)
    try:
        page.goto(f"http://localhost:{other_site.server_address[1]}/", wait_until="load")
        health = page.frame_locator("#health").locator("body")
        expect(health).to_contain_text('"status"', **expect_timeout)  # framing as such works: the control
        time.sleep(0.5)
        assert page.frame_locator("#console").get_by_test_id("signin-key").count() == 0
        assert refusals, "Chromium did not report a frame-ancestors refusal"
    finally:
        other_site.shutdown()
    page.goto("/console/", wait_until="domcontentloaded")  # the console itself still works under the header
    expect(page.get_by_test_id("signin-key")).to_be_visible(**expect_timeout)


def test_rules_are_created_shown_with_their_progress_disabled_enabled_and_deleted_from_the_console(
    page: "Page", server: ServerProcess, admin_key: str
) -> None:
    from tests.test_rules_e2e import Webhook

    def thingport(*args: str) -> Any:
        command = [sys.executable, "-m", "thingport", *args, "--json", "--data-dir", str(server.data_dir)]
        result = subprocess.run(command, env=server.env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr + result.stdout
        return json.loads(result.stdout)

    pk = thingport("product", "create", "--name", "ruled")["productKey"]
    device = thingport("device", "create", "--product-key", pk, "--name", "ruled-1")
    webhook = Webhook()
    try:
        sign_in(page, admin_key)
        page.get_by_test_id("nav-rules").click()
        # a statement that does not compile: the error names where, and nothing is created
        page.get_by_test_id("rule-name").fill("console-hot")
        page.get_by_test_id("rule-statement").fill(f'SELECT t FROM "/{pk}/+/user/data" WHERE')
        page.get_by_test_id("rule-sink").select_option("webhook")
        options = dict(option.split("=", 1) for option in webhook.options())
        page.get_by_test_id("rule-options").fill(json.dumps(options))
        page.get_by_test_id("create-rule").click()
        expect(error_text(page)).to_contain_text("ends too early at line 1, column", **expect_timeout)
        assert thingport("rule", "list") == []

        page.get_by_test_id("rule-statement").fill(f'SELECT t * 2 AS doubled FROM "/{pk}/+/user/data" WHERE t > 1')
        page.get_by_test_id("create-rule").click()
        expect(page.get_by_test_id("rule-state-console-hot")).to_contain_text("running", **expect_timeout)
        client = server.client()
        token = client.token(pk, device["deviceName"], device["deviceSecret"])
        for payload in ({"t": 5}, {"t": 0}, {"u": 1}, {"t": 7}):
            reply = client.publish(f"/{pk}/ruled-1/user/data", json.dumps(payload).encode(), token).json
            assert reply["code"] == 0, reply
        client.close()
        expect(page.get_by_test_id("rule-matched-console-hot")).to_have_text("2", **expect_timeout)
        expect(page.get_by_test_id("rule-failed-console-hot")).to_have_text("1", **expect_timeout)
        expect(page.get_by_test_id("rule-last-error-console-hot")).to_contain_text("the payload has no t",
                                                                                    **expect_timeout)
        expect(page.get_by_test_id("rule-backlog-console-hot")).to_have_text("0", **expect_timeout)
        shot(page, "13-rules")
        assert sorted(e["payload"]["doubled"] for e in webhook.envelopes()) == [10, 14]

        page.get_by_test_id("disable-rule-console-hot").click()
        expect(page.get_by_test_id("rule-state-console-hot")).to_contain_text("disabled", **expect_timeout)
        assert thingport("rule", "show", "--name", "console-hot")["enabled"] is False
        page.get_by_test_id("enable-rule-console-hot").click()
        expect(page.get_by_test_id("rule-state-console-hot")).to_contain_text("running", **expect_timeout)

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id("delete-rule-console-hot").click()
        expect(page.get_by_test_id("rule-console-hot")).to_have_count(0, **expect_timeout)
        assert thingport("rule", "list") == []
    finally:
        webhook.close()
