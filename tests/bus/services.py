"""Reachability of the local services the bus tests talk to (RabbitMQ, NATS, Mosquitto).

Outside CI a missing service skips its tests; in CI (``CI=true``) it fails them: the services are part of
the CI machine, so their absence is a broken set-up, not a reason to go green.
"""

import asyncio
import os
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

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
