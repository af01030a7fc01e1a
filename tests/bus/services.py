"""Helpers of the bus tests: the local services they talk to, a bounded async runner, test deliveries.

``require_service``: outside CI a missing service (RabbitMQ, NATS, Mosquitto) skips its tests; in CI
(``CI=true``) it fails them: the services are part of the CI machine, so their absence is a broken set-up,
not a reason to go green.
"""

import asyncio
import json
import os
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from thingport.bus.base import Delivery

T = TypeVar("T")

RABBITMQ = ("RabbitMQ", "127.0.0.1", 5672)
NATS = ("NATS", "127.0.0.1", 4222)
MOSQUITTO = ("Mosquitto", "127.0.0.1", 1883)


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip the test (fail it in CI) unless ``host:port`` accepts a TCP connection."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI must provide it)")
    pytest.skip(message)


def run(coro: Coroutine[Any, Any, T], limit: float = 15.0) -> T:
    """Run an async test body on a fresh loop, failing (not hanging) after ``limit`` seconds."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, limit)
        except TimeoutError:
            pytest.fail(f"test body did not finish within {limit:g} s")

    return asyncio.run(bounded())


def deliveries(count: int, product_key: str, start: int = 1, devices: int = 3) -> list[Delivery]:
    """``count`` deliveries of ~200 bytes, seq and message ids from ``start``, over a few devices and kinds."""
    kinds = ("properties", "event", "raw", "status")
    out = []
    for seq in range(start, start + count):
        device_id = f"dev-{seq % devices}"
        kind = kinds[seq % len(kinds)]
        body = json.dumps(
            {
                "messageId": 7_000_000 + seq,
                "productKey": product_key,
                "deviceId": device_id,
                "kind": kind,
                "ts": 1_700_000_000_000 + seq,
                "payload": {"temperature": 21.5, "humidity": 40, "seq": seq, "pad": "x" * 40},
            },
            separators=(",", ":"),
        ).encode()
        out.append(Delivery(seq, 7_000_000 + seq, product_key, device_id, kind, body))
    return out


def first_occurrences(items: list[T]) -> list[T]:
    """``items`` without repeats, each where it first appeared (what a consumer that drops duplicates keeps)."""
    seen: set[T] = set()
    return [x for x in items if not (x in seen or seen.add(x))]
