"""Production mode end to end: several gateway processes share PostgreSQL and Redis (real servers).

Any instance accepts any device's token; a disable made through one reaches all within a second; a
device's rate limit holds across instances; messageIds never collide; ``--workers N`` runs N processes
on one port.
"""

import base64
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from tests.bus.services import require_service
from tests.postgres import fresh_database
from tests.support import DeviceClient, ServerProcess, cli, wait_until
from thingport.cli import main
from thingport.core.message_ids import SEQUENCE_BITS, WORKER_BITS

REDIS_URL = "redis://127.0.0.1:6379/9"


def worker_of(message_id: int) -> int:
    return (message_id >> SEQUENCE_BITS) & ((1 << WORKER_BITS) - 1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """Three instances, each with its own data dir (TLS certificate), one database, one Redis, one master key."""
    require_service("Redis", "127.0.0.1", 6379)
    redis.Redis.from_url(REDIS_URL).flushdb()
    database_url = fresh_database()
    master_key = base64.b64encode(secrets.token_bytes(32)).decode() + "\n"
    instances = []
    for name in ("a", "b", "c"):
        data_dir = tmp_path_factory.mktemp(f"node-{name}") / "data"
        data_dir.mkdir()
        (data_dir / "master.key").write_text(master_key)
        instances.append(ServerProcess(data_dir, database_url=database_url, env={"THINGPORT_REDIS_URL": REDIS_URL}))
    try:
        for instance in instances:
            instance.start()
        yield instances
    finally:
        for instance in instances:
            instance.stop()


def new_device(admin: ServerProcess, **product_settings: str) -> dict:
    product = cli(admin.data_dir, "product", "create", "--name", f"p{secrets.token_hex(3)}")
    for option, value in product_settings.items():
        cli(admin.data_dir, "product", "set", "--product-key", product["productKey"], f"--{option}", value)
    return cli(admin.data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-1")


def publish(client: DeviceClient, device: dict, token: str, body: bytes = b"21.5") -> dict:
    return client.publish(f"/{device['productKey']}/{device['deviceName']}/user/update", body, token).json


def test_a_token_from_one_instance_works_on_the_others_and_a_disable_reaches_all_within_a_second(
    cluster: list[ServerProcess],
) -> None:
    a, b, c = cluster
    device = new_device(a)
    clients = [node.client() for node in cluster]
    token = clients[0].token(device["productKey"], device["deviceName"], device["deviceSecret"])
    acked = [publish(client, device, token) for client in clients]
    assert [doc["code"] for doc in acked] == [0, 0, 0], acked
    ids = [doc["info"]["messageId"] for doc in acked]
    assert len({worker_of(i) for i in ids}) == 3  # each instance leased its own worker number

    key = cli(c.data_dir, "apikey", "create", "--name", "ops", "--role", "admin")["key"]
    reply = httpx.post(
        f"http://127.0.0.1:{c.api_port}/api/devices/{device['productKey']}/{device['deviceName']}/disable",
        headers={"Authorization": f"Bearer {key}"}, timeout=10,
    )
    assert reply.status_code == 200, reply.text
    disabled_at = time.monotonic()
    refused_after: dict[int, float] = {}

    def instances_refusing() -> dict[int, float]:  # each instance's delay, when it first refuses
        for index, client in enumerate(clients):
            if index not in refused_after and publish(client, device, token)["code"] != 0:
                refused_after[index] = time.monotonic() - disabled_at
        return refused_after

    wait_until(instances_refusing, "every instance refusing the disabled device's token", 3,
               accept=lambda refused: sorted(refused) == [0, 1, 2])
    assert max(refused_after.values()) < 1.0, refused_after
    for client in clients:
        client.close()


def test_a_device_rate_limit_holds_across_instances(cluster: list[ServerProcess]) -> None:
    device = new_device(cluster[0], **{"device-report-rate": "0.5", "device-report-burst": "6"})
    # no wait: the product is set before any device of it reports, and an instance loads a product on first use
    clients = [node.client() for node in cluster]
    token = clients[0].token(device["productKey"], device["deviceName"], device["deviceSecret"])
    started = time.monotonic()
    codes = [publish(clients[i % 3], device, token)["code"] for i in range(24)]
    elapsed = time.monotonic() - started
    accepted = codes.count(0)
    # one shared bucket: its burst plus what refilled meanwhile; three local buckets would allow 18
    assert 6 <= accepted <= 6 + int(elapsed * 0.5) + 1, (accepted, elapsed, codes)
    assert set(codes) - {0} == {40000}, codes
    for client in clients:
        client.close()


def test_messages_reported_to_every_instance_are_in_the_one_log_with_unique_ids(cluster: list[ServerProcess]) -> None:
    device = new_device(cluster[1])
    clients = [node.client() for node in cluster]
    token = clients[1].token(device["productKey"], device["deviceName"], device["deviceSecret"])
    acked = [publish(clients[i % 3], device, token, str(i).encode())["info"]["messageId"] for i in range(30)]
    assert len(set(acked)) == 30
    tail = CliRunner().invoke(
        main, ["messages", "tail", "--limit", "200", "--json", "--data-dir", str(cluster[2].data_dir)]
    )
    stored = [json.loads(line) for line in tail.output.splitlines()]
    mine = [m["messageId"] for m in stored if m["productKey"] == device["productKey"] and m["kind"] != "status"]
    assert sorted(mine) == sorted(acked)
    for client in clients:
        client.close()


def test_workers_share_one_port_and_each_has_its_own_worker_number(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", args=("--workers", "2")).start()
    try:
        device = new_device(server)
        ids: set[int] = set()
        token = server.client().token(device["productKey"], device["deviceName"], device["deviceSecret"])
        deadline = time.monotonic() + 30  # the second worker may still be starting when the first answers
        while len(ids) < 2 and time.monotonic() < deadline:
            client = server.client()  # a new connection each time: the kernel spreads them over the workers
            doc = publish(client, device, token)
            client.close()
            assert doc["code"] == 0, doc
            ids.add(worker_of(doc["info"]["messageId"]))
        assert len(ids) == 2
        assert httpx.get(f"http://127.0.0.1:{server.api_port}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


def test_postgresql_outage_refuses_reports_acknowledges_nothing_unstored_and_service_resumes(tmp_path: Path) -> None:
    from tests.bus.tcp_proxy import TcpProxy

    database_url = fresh_database()
    name = database_url.rsplit("/", 1)[1]
    with TcpProxy("127.0.0.1", 5432) as proxy:
        server = ServerProcess(tmp_path / "data", database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}")
        server.start()
        try:
            device = new_device(server)
            client = server.client()
            token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
            acked = [publish(client, device, token, b"before")["info"]["messageId"]]
            proxy.cut()
            during = [publish(client, device, token, b"during") for _ in range(5)]
            assert {doc["code"] for doc in during} == {30001}, during  # the protocol's "could not be stored"
            proxy.restore()
            stored = wait_until(lambda: publish(client, device, token, b"after"),
                                "the service storing reports again after the outage", 10, 0.2,
                                accept=lambda doc: doc["code"] == 0)
            acked.append(stored["info"]["messageId"])
            client.close()
        finally:
            server.stop()
    tail = CliRunner().invoke(
        main,
        ["messages", "tail", "--limit", "50", "--json", "--data-dir", str(tmp_path / "data")],
        env={"THINGPORT_DATABASE_URL": database_url},
    )
    stored = {json.loads(line)["messageId"] for line in tail.output.splitlines()}
    assert set(acked) <= stored
