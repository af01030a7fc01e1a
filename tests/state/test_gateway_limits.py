"""Rate limits and presence through real servers: a product's own device rate, auth attempts a stranger
cannot use to lock a device out, two instances sharing limits and presence through Redis, and a server
whose Redis is down serving degraded (and saying so in /readyz)."""

import asyncio
import time
from pathlib import Path

import httpx

from tests.state.redis_support import URL, require_redis
from tests.support import ServerProcess, cli, free_port, stores_of
from thingport.runtime.bootstrap import build
from thingport.settings import load_settings


def provision(data_dir: Path, devices: int = 1) -> tuple[str, list[dict]]:
    product = cli(data_dir, "product", "create", "--name", "p")["productKey"]
    return product, [
        cli(data_dir, "device", "create", "--product-key", product, "--name", f"dev-{i}") for i in range(devices)
    ]


def test_a_products_device_rate_and_no_auth_lockout_by_a_stranger(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pk, (slow,) = provision(data_dir)
    _, (fast,) = provision(data_dir)
    cli(data_dir, "product", "set", "--product-key", pk, "--device-report-rate", "0.01", "--device-report-burst", "2")
    server = ServerProcess(data_dir, {"THINGPORT_DEVICE_AUTH_RATE": "0.01", "THINGPORT_DEVICE_AUTH_BURST": "2"}).start()
    try:
        client = server.client()
        codes = {}
        for d in (slow, fast):
            token = client.token(d["productKey"], d["deviceName"], d["deviceSecret"])
            topic = f"/{d['productKey']}/{d['deviceName']}/user/t"
            codes[d["productKey"]] = [client.publish(topic, b"x", token).json["code"] for _ in range(3)]
        assert codes == {pk: [0, 0, 40000], fast["productKey"]: [0, 0, 0]}

        # a stranger who knows the device's name, from another address (uvicorn trusts loopback's header)
        stranger = {"X-Forwarded-For": "203.0.113.9"}
        doc = {"productKey": fast["productKey"], "deviceName": fast["deviceName"], "clientId": "x",
               "signmethod": "hmacsha256", "sign": "0" * 64}
        assert [client.post_json("/auth", doc, stranger).json["code"] for _ in range(3)] == [20000, 20000, 40000]
        # the device's second attempt of its burst of 2 (its first got the token above): not locked out
        assert client.auth(fast["productKey"], fast["deviceName"], fast["deviceSecret"]).json["code"] == 0
        client.close()
    finally:
        server.stop()


def test_two_instances_share_a_devices_limit_and_say_online_once(tmp_path: Path) -> None:
    require_redis()
    data_dir = tmp_path / "data"
    pk, (d,) = provision(data_dir)
    cli(data_dir, "product", "set", "--product-key", pk, "--device-report-rate", "0.01", "--device-report-burst", "3")
    env = {"THINGPORT_REDIS_URL": URL}
    a = ServerProcess(data_dir, {**env, "THINGPORT_WORKER_ID": "1"}).start()
    b = ServerProcess(data_dir, {**env, "THINGPORT_WORKER_ID": "2"}).start()
    try:
        ca, cb = a.client(), b.client()
        topic = f"/{pk}/{d['deviceName']}/user/t"
        token = ca.token(pk, d["deviceName"], d["deviceSecret"])  # online, said by a
        cb.token(pk, d["deviceName"], d["deviceSecret"])  # known online: b says nothing
        codes = [c.publish(topic, b"x", token).json["code"] for c in (ca, cb, ca, cb, ca)]
        assert codes == [0, 0, 0, 40000, 40000]  # 3 for the pair, not 3 each
        ready = httpx.get(f"http://127.0.0.1:{b.api_port}/readyz").json()
        assert ready == {"status": "ready", "checks": {"database": "ok", "writes": "ok", "redis": "ok"}}
        ca.close()
        cb.close()
    finally:
        a.stop()
        b.stop()
    with stores_of(load_settings(data_dir=data_dir)) as stores:
        stored = asyncio.run(stores.log.newest(100))
    assert [m.payload.count(b'"online"') for m in stored if m.kind == "status"] == [1]
    assert sum(m.kind != "status" for m in stored) == 3


def test_a_server_whose_redis_is_down_serves_degraded_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pk, (d,) = provision(data_dir)
    port = free_port()
    server = ServerProcess(data_dir, {"THINGPORT_REDIS_URL": f"redis://127.0.0.1:{port}/0"}).start()
    try:
        client = server.client()
        token = client.token(pk, d["deviceName"], d["deviceSecret"])
        assert client.publish(f"/{pk}/{d['deviceName']}/user/t", b"x", token).json["code"] == 0
        reply = httpx.get(f"http://127.0.0.1:{server.api_port}/readyz")
        assert reply.status_code == 200
        doc = reply.json()
        assert doc["status"] == "ready" and doc["checks"]["database"] == "ok"
        assert doc["checks"]["redis"] == "degraded"  # why (host, port) is in the log, not on this open page
        assert str(port) not in reply.text
        client.close()
        time.sleep(1.5)  # the probe fails every second: the warning is still logged once
    finally:
        server.stop()
    assert server.output().count("Redis is unavailable") == 1


def _attempts(clients_and_dialects: list[tuple[object, str]], d: dict) -> list[str]:
    """Successful authentications, alternating dialects (and instances): "ok" or the throttle's code."""
    import datetime

    from thingport.core.signing import huawei_password

    results = []
    for client, dialect in clients_and_dialects:
        if dialect == "aliyun":
            code = client.auth(d["productKey"], d["deviceName"], d["deviceSecret"]).json["code"]  # type: ignore[attr-defined]
            results.append("ok" if code == 0 else str(code))
        else:
            ts = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H")
            reply = client.post_json("/v5/device-auth", {  # type: ignore[attr-defined]
                "device_id": d["deviceId"], "sign_type": 1, "timestamp": ts,
                "password": huawei_password(d["deviceSecret"], ts)})
            results.append("ok" if reply.status == 200 else reply.json["error_code"])
    return results


def test_one_auth_bucket_per_device_whichever_dialect(tmp_path: Path) -> None:
    """Alibaba and IoTDA attempts on one device spend one allowance (they used to have one each)."""
    data_dir = tmp_path / "data"
    _, (d,) = provision(data_dir)
    server = ServerProcess(
        data_dir, {"THINGPORT_DEVICE_AUTH_RATE": "0.001", "THINGPORT_DEVICE_AUTH_BURST": "4"}
    ).start()
    try:
        client = server.client()
        sequence = [(client, "huawei"), (client, "aliyun")] * 3  # IoTDA first: the device is not in memory yet
        assert _attempts(sequence, d) == ["ok", "ok", "ok", "ok", "IOTDA.021101", "40000"]
        client.close()
    finally:
        server.stop()


def test_one_auth_bucket_per_device_across_instances_through_redis(tmp_path: Path) -> None:
    require_redis()
    data_dir = tmp_path / "data"
    _, (d,) = provision(data_dir)
    env = {"THINGPORT_REDIS_URL": URL, "THINGPORT_DEVICE_AUTH_RATE": "0.001", "THINGPORT_DEVICE_AUTH_BURST": "4"}
    a = ServerProcess(data_dir, {**env, "THINGPORT_WORKER_ID": "1"}).start()
    b = ServerProcess(data_dir, {**env, "THINGPORT_WORKER_ID": "2"}).start()
    try:
        ca, cb = a.client(), b.client()
        sequence = [(ca, "huawei"), (cb, "aliyun"), (cb, "huawei"), (ca, "aliyun"), (ca, "huawei"), (cb, "aliyun"),
                    (cb, "huawei"), (ca, "aliyun")]
        assert _attempts(sequence, d) == ["ok"] * 4 + ["IOTDA.021101", "40000", "IOTDA.021101", "40000"]
        ca.close()
        cb.close()
    finally:
        a.stop()
        b.stop()


def test_a_throttled_brute_force_on_a_known_device_reaches_no_database(tmp_path: Path) -> None:
    """Once the device is in memory, an IoTDA attempt finds its one bucket without the registry: a brute-forcer
    throttled in either dialect costs no database round trip."""
    import pytest

    from thingport.core.errors import AuthFailed, Throttled
    from thingport.core.tokens import TokenCodec
    from thingport.dialects.aliyun import AliyunCredential
    from thingport.dialects.huawei import HuaweiCredential
    from thingport.ingest.use_case import DeviceIngest
    from thingport.state.registry_cache import RegistryCache

    settings = load_settings(data_dir=tmp_path / "data", device_auth_rate=0.001, device_auth_burst=3)
    app = build(settings)
    stores = app.stores

    class Counted:
        """The real registry, counting the device look-ups auth makes."""

        def __init__(self) -> None:
            self.lookups = 0

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(stores.registry, name)

        async def device_by_name(self, *args: str):  # type: ignore[no-untyped-def]
            self.lookups += 1
            return await stores.registry.device_by_name(*args)

        async def device_by_device_id(self, device_id: str):  # type: ignore[no-untyped-def]
            self.lookups += 1
            return await stores.registry.device_by_device_id(device_id)

    async def main() -> None:
        stores.log.start(asyncio.get_running_loop())
        m = app.management()
        await m.create_product("p", "pk01")
        d = await m.create_device("pk01", "dev-a")
        registry = Counted()
        ingest = DeviceIngest(settings, registry, stores.log, RegistryCache(registry), TokenCodec(b"k" * 32))  # type: ignore[arg-type]
        aliyun = {"productKey": "pk01", "deviceName": "dev-a", "clientId": "c"}

        async def huawei() -> None:
            await ingest.authenticate(HuaweiCredential(d.device_id, 0, "2019120219", "0" * 64), "203.0.113.9")

        async def alibaba() -> None:
            await ingest.authenticate(AliyunCredential(aliyun, "hmacmd5", "0" * 32), "203.0.113.9")

        for attempt in (huawei, alibaba, alibaba):  # the device's burst of 3, together
            with pytest.raises(AuthFailed):
                await attempt()
        assert registry.lookups == 3
        for attempt in (huawei, alibaba, huawei, alibaba):
            with pytest.raises(Throttled):
                await attempt()
        assert registry.lookups == 3  # throttled from memory

    try:
        asyncio.run(main())
    finally:
        app.close()
