"""A subscription whose sink refuses it is seen: creating one checks the sink (unless told not to), and a
running one shows running / retrying / failing with its last error (credentials removed) and since when,
in ``subscription list`` and the API. Against the real RabbitMQ, with a user the broker refuses."""

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from click.testing import CliRunner

from tests.bus.services import RABBITMQ, require_service
from tests.support import ServerProcess, cli, subscription, wait_until
from thingport.cli import main as cli_main

PASSWORD = "Sh0uldNeverShow"


def rabbitmqctl(*args: str) -> None:
    done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def refused_user() -> Iterator[str]:
    """A RabbitMQ user allowed into the vhost with no permission at all: declaring or publishing to an
    exchange gets ACCESS_REFUSED."""
    require_service(*RABBITMQ)
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed here")
    user = f"tp-refused-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_user", user, PASSWORD)
    rabbitmqctl("set_permissions", "-p", "/", user, "", "", "")
    try:
        yield user
    finally:
        rabbitmqctl("delete_user", user)


def create_args(pk: str, name: str, user: str, *extra: str) -> list[str]:
    return ["subscription", "create", "--name", name, "--product-key", pk, "--sink", "rabbitmq", "--kinds", "raw",
            "--option", f"url=amqp://{user}:{PASSWORD}@127.0.0.1:5672/", "--option", f"exchange={name}",
            "--option", "timeout=3", *extra]


def wait_for_state(data_dir: Path, name: str, state: str, within_s: float = 20.0) -> dict:
    return wait_until(lambda: subscription(data_dir, name), f"subscription {name} {state}", within_s, 0.2,
                      accept=lambda found: found["state"] == state)


def test_a_sink_that_refuses_is_refused_at_creation_unless_not_checked(tmp_path: Path, refused_user: str) -> None:
    data_dir = tmp_path / "data"
    pk = cli(data_dir, "product", "create", "--name", "refused")["productKey"]
    result = CliRunner().invoke(cli_main, [*create_args(pk, "tp-refused", refused_user), "--data-dir", str(data_dir)])
    assert result.exit_code == 1
    assert result.output.startswith("error: the rabbitmq sink could not be used") and "ACCESS_REFUSED" in result.output
    assert "--no-check" in result.output and PASSWORD not in result.output
    assert cli(data_dir, "subscription", "list") == []

    made = cli(data_dir, *create_args(pk, "tp-refused", refused_user, "--no-check"))
    assert made["state"] == "running" and made["lastError"] is None

    # the API: 400 sink_unreachable, or created with check=false
    key = cli(data_dir, "apikey", "create", "--name", "ops")["key"]
    server = ServerProcess(data_dir).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=30,
                          headers={"Authorization": f"Bearer {key}"}) as api:
            body = {"name": "tp-refused-api", "productKey": pk, "sink": "rabbitmq",
                    "options": {"url": f"amqp://{refused_user}:{PASSWORD}@127.0.0.1:5672/", "exchange": "tp-x",
                                "timeout": 3}}
            refused = api.post("/api/subscriptions", json=body)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "sink_unreachable"
            assert "ACCESS_REFUSED" in refused.text and PASSWORD not in refused.text
            assert api.post("/api/subscriptions", json={**body, "check": False}).status_code == 201
            assert api.post("/api/subscriptions", params={"check": "false"},
                            json={**body, "name": "tp-refused-q"}).status_code == 201
    finally:
        server.stop()


def test_a_sink_refusing_every_publish_shows_retrying_then_failing_then_running_again(
    tmp_path: Path, refused_user: str,
) -> None:
    data_dir = tmp_path / "data"
    pk = cli(data_dir, "product", "create", "--name", "health")["productKey"]
    device = cli(data_dir, "device", "create", "--product-key", pk, "--name", "health-dev")
    name = f"tp-health-{uuid.uuid4().hex[:6]}"
    cli(data_dir, *create_args(pk, name, refused_user, "--no-check"))
    key = cli(data_dir, "apikey", "create", "--name", "reader", "--role", "read")["key"]
    server = ServerProcess(data_dir).start()
    try:
        client = server.client()
        token = client.token(pk, "health-dev", device["deviceSecret"])
        client.publish(f"/{pk}/health-dev/user/t", b"x", token)
        client.close()
        before = int(time.time() * 1000)
        failing = wait_for_state(data_dir, name, "failing")  # retrying first (3 attempts in a row: ~2 s)
        assert "ACCESS_REFUSED" in failing["lastError"] and PASSWORD not in failing["lastError"]
        assert failing["lastError"].startswith(f"rabbitmq amqp://{refused_user}:***@127.0.0.1:5672/")
        assert before - 10_000 < failing["stateSince"] <= int(time.time() * 1000)
        assert failing["backlog"] > 0
        shown = httpx.get(f"http://127.0.0.1:{server.api_port}/api/subscriptions/{name}",
                          headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
        assert shown["state"] == "failing" and shown["lastError"] == failing["lastError"]

        rabbitmqctl("set_permissions", "-p", "/", refused_user, ".*", ".*", ".*")  # the operator fixes it
        running = wait_for_state(data_dir, name, "running", within_s=40)  # the backoff may be at 4-8 s
        assert running["lastError"] is None and running["stateSince"] > failing["stateSince"]
        wait_until(lambda: subscription(data_dir, name), f"subscription {name} with no backlog", 10, 0.2,
                   accept=lambda found: found["backlog"] == 0)
    finally:
        server.stop()
        asyncio.run(delete_exchange(name))


async def delete_exchange(name: str) -> None:
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(name)
