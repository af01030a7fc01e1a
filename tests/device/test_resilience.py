"""Tokens revoked under a running device, lost connections, keep-alive, and certificate trust, against a
real thingport over HTTPS, for both dialects and both flavours."""

import time
from pathlib import Path
from typing import Any

import pytest

from tests.device.conftest import FlakyProxy, Flavour, endpoint, new_device, stored
from tests.support import ServerProcess, cli, free_port, wait_until
from thingport.device import Retry, TransportError
from thingport.runtime.tls import ensure_self_signed

FAST = Retry(attempts=4, backoff_s=0.05, max_backoff_s=0.2, jitter=0)


def make(flavour: Flavour, dialect: str, url: str, device: dict, **options: Any) -> Any:
    return (flavour.aliyun if dialect == "aliyun" else flavour.huawei)(url, device, **options)


def report(dialect: str, device: Any, n: int) -> int:
    if dialect == "aliyun":
        return device.post_properties({"n": n})
    return device.report_properties({"s": {"n": n}}).message_id


def old_token_refused(server: ServerProcess, dialect: str, device: dict, token: str) -> bool:
    """Whether the server refuses ``token`` yet, asked with a request that stores nothing either way."""
    client = server.client()
    try:
        if dialect == "aliyun":
            return client.publish("/not/this/devices/topic", b"x", token).json["code"] == 20003
        reply = client.request("POST", f"/v5/devices/{device['deviceId']}/sys/properties/report", b"{",
                               {"Content-Type": "application/json", "access_token": token})
        return reply.status == 403 and reply.json["error_code"] == "IOTDA.000004"
    finally:
        client.close()


@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
def test_a_revoked_token_is_renewed_and_the_report_resent_once(server: ServerProcess, flavour: Flavour,
                                                               dialect: str) -> None:
    created = new_device(server)
    device = make(flavour, dialect, endpoint(server), created, ca_file=server.cert)
    first = report(dialect, device, 1)
    old = device.token
    key = ("--product-key", created["productKey"], "--name", created["deviceName"])
    cli(server.data_dir, "device", "disable", *key)  # kills the device's tokens, keeps its secret
    cli(server.data_dir, "device", "enable", *key)
    wait_until(lambda: old_token_refused(server, dialect, created, old), "the server refusing the old token", 5, 0.05)

    second = report(dialect, device, 2)  # refused (20003 / IOTDA.000004), re-authenticated, resent
    assert device.token not in (None, old)
    assert [m["messageId"] for m in stored(server, created)] == [first, second]  # stored once, acknowledged


@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
def test_lost_connections_are_retried_with_backoff(server: ServerProcess, flavour: Flavour, dialect: str) -> None:
    created = new_device(server)
    with FlakyProxy(server.port, refuse=2) as proxy:
        device = make(flavour, dialect, f"https://localhost:{proxy.port}", created, ca_file=server.cert, retry=FAST)
        started = time.monotonic()
        message_id = report(dialect, device, 1)
        elapsed = time.monotonic() - started
        assert proxy.accepted == 3 and elapsed >= 0.05 + 0.1  # two resets, two pauses, then through
        assert [m["messageId"] for m in stored(server, created)] == [message_id]


def test_retries_are_bounded(flavour: Flavour) -> None:
    dead = f"https://localhost:{free_port()}"  # nothing listens there
    device = flavour.aliyun(dead, {"productKey": "a1PK", "deviceName": "dev-1", "deviceSecret": "s"},
                            retry=Retry(attempts=3, backoff_s=0.05, jitter=0))
    started = time.monotonic()
    with pytest.raises(TransportError) as failed:
        device.post_properties({"n": 1})
    assert failed.value.attempts == 3 and failed.value.retryable
    assert 0.15 <= time.monotonic() - started < 3


@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
def test_one_kept_alive_connection_carries_every_request(server: ServerProcess, flavour: Flavour,
                                                         dialect: str) -> None:
    created = new_device(server)
    with FlakyProxy(server.port) as proxy:
        device = make(flavour, dialect, f"https://localhost:{proxy.port}", created, ca_file=server.cert)
        ids = [report(dialect, device, n) for n in range(10)]
        assert proxy.accepted == 1  # auth and ten reports, one TLS connection
    assert len(set(ids)) == 10


@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
def test_ca_file_trusts_the_self_signed_server_and_nothing_else(server: ServerProcess, flavour: Flavour,
                                                                dialect: str, tmp_path: Path) -> None:
    created = new_device(server)
    for url in (endpoint(server), f"https://127.0.0.1:{server.port}"):  # the certificate names both
        assert make(flavour, dialect, url, created, ca_file=server.cert).authenticate()
        assert make(flavour, dialect, url, created, ca_file=str(server.cert)).authenticate()
    other_ca = ensure_self_signed(tmp_path / "other").cert
    for options in ({}, {"ca_file": other_ca}):  # system trust store; another certificate
        device = make(flavour, dialect, endpoint(server), created, **options)
        started = time.monotonic()
        with pytest.raises(TransportError) as failed:
            device.authenticate()
        assert "certificate verif" in str(failed.value) and not failed.value.retryable
        assert failed.value.attempts == 1 and time.monotonic() - started < 2  # not retried
