"""Codes that need a particular server: throttled (40000), storage failures (30001, 20004), internal error (10000)."""

import asyncio
from pathlib import Path

import pytest

from tests.support import FakeClock, ServerProcess, ThreadServer, cli, free_port
from thingport.core.errors import SessionStoreFailed
from thingport.runtime.bootstrap import Overrides, build
from thingport.settings import load_settings
from thingport.store.sql_log import SqlMessageLog


def provision(data_dir: Path) -> dict:
    product = cli(data_dir, "product", "create", "--name", "p")
    return cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-1")


def test_report_and_auth_rate_limits_answer_40000(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    device = provision(data_dir)
    settings = load_settings(data_dir=data_dir, host="127.0.0.1", port=free_port(), log_level="critical",
                             device_report_rate=0.5, device_report_burst=3, device_auth_rate=0.5, device_auth_burst=2)
    clock = FakeClock()  # the buckets refill by the device side's clock: moved, not slept through
    with ThreadServer(build(settings, Overrides(clock=clock))) as srv:
        client = srv.client()
        pk, dn, secret = device["productKey"], device["deviceName"], device["deviceSecret"]
        token = client.token(pk, dn, secret)
        topic = f"/{pk}/{dn}/user/t"
        codes = [client.publish(topic, b"x", token).json["code"] for _ in range(5)]
        assert codes == [0, 0, 0, 40000, 40000]
        doc = client.publish(topic, b"x", token).json
        assert doc["message"].startswith("request too many")
        assert client.auth(pk, dn, secret).json["code"] == 0  # second of the burst of 2
        assert client.auth(pk, dn, secret).json["code"] == 40000
        clock.advance(1.9)  # 0.5/s: not yet a whole report
        assert client.publish(topic, b"x", token).json["code"] == 40000
        clock.advance(0.1)  # 2 s: one
        assert client.publish(topic, b"x", token).json["code"] == 0
        assert client.publish(topic, b"x", token).json["code"] == 40000
        assert client.auth(pk, dn, secret).json["code"] == 0  # the auth bucket refilled one too
        client.close()


def test_storage_full_answers_30001_and_acknowledges_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    device = provision(data_dir)
    server = ServerProcess(data_dir, {"THINGPORT_STORAGE_MAX_MB": "0.2"}).start()
    try:
        client = server.client()
        pk, dn = device["productKey"], device["deviceName"]
        token = client.token(pk, dn, device["deviceSecret"])
        acked, refused = [], 0
        for _ in range(10):
            doc = client.publish(f"/{pk}/{dn}/user/t", b"z" * 100_000, token).json
            if doc["code"] == 0:
                acked.append(doc["info"]["messageId"])
            else:
                assert doc["code"] == 30001 and "could not be stored" in doc["message"], doc
                refused += 1
        assert refused > 0
        client.close()
    finally:
        server.stop()
    app = build(load_settings(data_dir=data_dir))
    try:
        stored = asyncio.run(app.stores.log.newest(100))
    finally:
        app.close()
    reports = {m.message_id for m in stored if m.kind != "status"}  # the device's "online" is stored too
    assert reports == set(acked)  # every acknowledged one, and no refused one


class _FailingLog:
    """Wraps the real log; fails the way a broken disk or a bug would."""

    def __init__(self, real, fail_sessions: bool = False, crash: bool = False) -> None:  # type: ignore[no-untyped-def]
        self._real, self.fail_sessions, self.crash = real, fail_sessions, crash

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._real, name)

    async def record_session(self, session):  # type: ignore[no-untyped-def]
        if self.fail_sessions:
            raise SessionStoreFailed("session could not be stored: disk I/O error")
        await self._real.record_session(session)

    async def append(self, message):  # type: ignore[no-untyped-def]
        if self.crash:
            raise RuntimeError("a bug")
        await self._real.append(message)


@pytest.mark.parametrize(("fail_sessions", "crash"), [(True, False), (False, True)])
def test_session_store_failure_is_20004_and_unexpected_errors_are_10000(
    tmp_path: Path, fail_sessions: bool, crash: bool
) -> None:
    data_dir = tmp_path / "data"
    device = provision(data_dir)
    settings = load_settings(data_dir=data_dir, host="127.0.0.1", port=free_port(), log_level="critical")
    failing: list[_FailingLog] = []

    def failing_log(*parts):  # type: ignore[no-untyped-def]
        failing.append(_FailingLog(SqlMessageLog(*parts)))
        return failing[-1]

    with ThreadServer(build(settings, Overrides(message_log=failing_log))) as srv:
        client = srv.client()
        pk, dn = device["productKey"], device["deviceName"]
        token = client.token(pk, dn, device["deviceSecret"])
        failing[0].fail_sessions, failing[0].crash = fail_sessions, crash
        if fail_sessions:
            doc = client.auth(pk, dn, device["deviceSecret"]).json
            assert doc == {
                "code": 20004,
                "message": "update session error: session could not be stored: disk I/O error",
            }
        if crash:
            doc = client.publish(f"/{pk}/{dn}/user/t", b"x", token).json
            assert doc == {"code": 10000, "message": "common error: internal error"}
        client.close()


def test_auth_attempts_are_limited_per_source_address_across_device_names(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    device = provision(data_dir)
    server = ServerProcess(data_dir, {"THINGPORT_SOURCE_AUTH_RATE": "0.1", "THINGPORT_SOURCE_AUTH_BURST": "3"}).start()
    try:
        client = server.client()
        pk = device["productKey"]
        codes = [client.auth(pk, f"guess-{i:03d}", "wrong").json["code"] for i in range(4)]
        assert codes == [20000, 20000, 20000, 40000]  # unknown devices, then the address is throttled
        assert client.auth(pk, device["deviceName"], device["deviceSecret"]).json["code"] == 40000
        client.close()
    finally:
        server.stop()


def test_product_report_rate_limit(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    device = provision(data_dir)
    other = cli(data_dir, "device", "create", "--product-key", device["productKey"], "--name", "dev-2")
    server = ServerProcess(
        data_dir, {"THINGPORT_PRODUCT_REPORT_RATE": "0.1", "THINGPORT_PRODUCT_REPORT_BURST": "2"}
    ).start()
    try:
        client = server.client()
        pk = device["productKey"]
        t1 = client.token(pk, device["deviceName"], device["deviceSecret"])
        t2 = client.token(pk, "dev-2", other["deviceSecret"])
        assert client.publish(f"/{pk}/{device['deviceName']}/user/t", b"x", t1).json["code"] == 0
        assert client.publish(f"/{pk}/dev-2/user/t", b"x", t2).json["code"] == 0
        doc = client.publish(f"/{pk}/dev-2/user/t", b"x", t2).json  # the product's budget, not the device's
        assert doc["code"] == 40000 and "product" in doc["message"]
        client.close()
    finally:
        server.stop()
