"""Running forwarding from the API and CLI: subscriptions of several or every product, pausing and resuming
through the API, and an event stream that acknowledges as it delivers so retention can delete what it sent."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.api.test_subscriptions import keyed, publish_some, pull
from tests.support import ServerProcess, cli, stores_of, subscription, wait_until
from thingport.bus.forwarder import CommitSignal, Forwarder


def product_with_device(api: httpx.Client, name: str) -> dict:
    pk = api.post("/api/products", json={"name": name}).json()["productKey"]
    return api.post("/api/devices", json={"productKey": pk, "deviceName": f"{name}-dev"}).json()


def test_a_subscription_of_several_products_or_of_every_product(server: ServerProcess, api: httpx.Client) -> None:
    a, b, c = (product_with_device(api, f"scope{x}") for x in "abc")
    listed = api.post("/api/subscriptions", json={
        "name": "two-products", "productKeys": [a["productKey"], b["productKey"]], "sink": "http", "kinds": ["raw"]})
    assert listed.status_code == 201, listed.text
    assert listed.json()["productKeys"] == [a["productKey"], b["productKey"]]
    assert listed.json()["productKey"] is None and listed.json()["allProducts"] is False
    every = cli(server.data_dir, "subscription", "create", "--name", "every-product", "--all-products",
                "--sink", "http", "--kinds", "raw")
    assert every["allProducts"] is True and every["productKeys"] == [] and every["productKey"] is None
    later = product_with_device(api, "scoped")  # created after the subscription: still in "every product"

    for device in (a, b, c, later):
        publish_some(server, device, 1)
    products_of = lambda name: [m["device"]["productKey"] for m in pull(api, name)["messages"]]  # noqa: E731
    assert products_of("two-products") == [a["productKey"], b["productKey"]]
    assert products_of("every-product") == [d["productKey"] for d in (a, b, c, later)]

    # the CLI takes a list too; the scope is stated once, and each product must exist
    both = cli(server.data_dir, "subscription", "create", "--name", "cli-two", "--product-key", a["productKey"],
               "--product-key", c["productKey"], "--sink", "http")
    assert both["productKeys"] == [a["productKey"], c["productKey"]]
    for body, status in (
        ({"productKey": a["productKey"], "allProducts": True}, 400),
        ({}, 400),
        ({"productKeys": [a["productKey"], a["productKey"]]}, 400),
        ({"productKeys": [a["productKey"], "nosuchproduct"]}, 404),
        ({"productKeys": [f"p{i:03d}" for i in range(101)]}, 400),  # the limit: 100 products, else every product
    ):
        refused = api.post("/api/subscriptions", json={"name": "refused", "sink": "http", **body})
        assert refused.status_code == status, (body, refused.text)
    assert api.get("/api/subscriptions/refused").status_code == 404


def test_subscriptions_are_paused_and_resumed_through_the_api(
    server: ServerProcess, api: httpx.Client, read_key: str,
) -> None:
    device = product_with_device(api, "pausing")
    made = api.post("/api/subscriptions", json={"name": "pausing-sub", "productKey": device["productKey"],
                                               "sink": "http", "kinds": ["raw"]})
    assert made.status_code == 201
    paused = api.patch("/api/subscriptions/pausing-sub", json={"enabled": False})
    assert paused.status_code == 200, paused.text
    assert paused.json()["enabled"] is False and paused.json()["state"] == "disabled"
    publish_some(server, device, 2)
    shown = api.get("/api/subscriptions/pausing-sub").json()
    assert shown["state"] == "disabled" and shown["backlog"] >= 2 and shown["lastError"] is None
    resumed = api.patch("/api/subscriptions/pausing-sub", json={"enabled": True}).json()
    assert resumed["enabled"] is True and resumed["state"] == "running"
    assert subscription(server.data_dir, "pausing-sub")["enabled"] is True

    assert api.patch("/api/subscriptions/nosuch", json={"enabled": False}).status_code == 404
    assert api.patch("/api/subscriptions/pausing-sub", json={"enabled": "maybe"}).status_code in (400, 422)
    with keyed(server, read_key) as reader:
        assert reader.patch("/api/subscriptions/pausing-sub", json={"enabled": False}).status_code == 403


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


def read_stream(server: ServerProcess, key: str, sub: str, count: int, **params: str) -> list[str]:
    """Event ids of the first ``count`` events, reading on until the stream idles (a keep-alive comment)."""
    ids: list[str] = []
    with httpx.stream("GET", f"http://127.0.0.1:{server.api_port}/api/subscriptions/{sub}/events", params=params,
                      headers={"Authorization": f"Bearer {key}"}, timeout=20) as stream:
        assert stream.status_code == 200, stream.read()
        for line in stream.iter_lines():
            if line.startswith("id: "):
                ids.append(line[4:])
            elif line == ": keep-alive" and len(ids) >= count:
                break
    return ids


def test_an_auto_acknowledged_event_stream_lets_retention_delete_what_it_delivered(own_server: ServerProcess) -> None:
    server = own_server
    consumer_key = cli(server.data_dir, "apikey", "create", "--name", "sse", "--role", "consumer")["key"]
    read_key = cli(server.data_dir, "apikey", "create", "--name", "peek", "--role", "read")["key"]
    with keyed(server, consumer_key) as consumer, keyed(server, cli(
            server.data_dir, "apikey", "create", "--name", "adm", "--role", "admin")["key"]) as api:
        device = product_with_device(api, "ssegc")
        assert api.post("/api/subscriptions", json={"name": "sse-only", "productKey": device["productKey"],
                                                   "sink": "http", "kinds": ["raw"]}).status_code == 201
        publish_some(server, device, 5)

        # a read key may not acknowledge, not even automatically; a push subscription has no ack
        with keyed(server, read_key) as reader:
            assert reader.get("/api/subscriptions/sse-only/events", params={"ack": "auto"}).status_code == 403
        assert consumer.get("/api/subscriptions/sse-only/events", params={"ack": "sometimes"}).status_code in (
            400, 422)

        ids = read_stream(server, consumer_key, "sse-only", 5, ack="auto")
        assert len(ids) == 5
        shown = wait_until(lambda: api.get("/api/subscriptions/sse-only").json(),
                           "the stream's cursor to pass what it delivered", 10, 0.05,
                           accept=lambda s: s["cursor"] >= int(ids[-1]))
        assert shown["backlog"] == 0
        publish_some(server, device, 1)  # after the stream: waits for the next one
        after = pull(consumer, "sse-only")["messages"]
        assert len(after) == 1 and after[0]["seq"] > int(ids[-1])
    server.stop()

    async def retention() -> tuple[int, list[int]]:
        with stores_of(server.settings()) as stores:
            stores.log.start(asyncio.get_running_loop())
            forwarder = Forwarder(stores.log, stores.registry, CollectorRegistry(), CommitSignal(), retention_days=0)
            deleted = await forwarder.apply_retention()
            return deleted, [m.seq for m in await stores.log.read_after(0, 100)]

    deleted, left = asyncio.run(retention())
    assert deleted >= 5 and left == [after[0]["seq"]], (deleted, left, ids)
