"""AliyunDevice and AsyncAliyunDevice against a real thingport over HTTPS."""

import asyncio
import datetime as dt
import enum
import inspect
import time
from pathlib import Path

import pytest

from tests.device.conftest import (
    Flavour,
    endpoint,
    history,
    new_device,
    status,
    stored,
    write_json,
)
from tests.support import ServerProcess
from thingport.device import (
    AliyunDevice,
    AsyncAliyunDevice,
    AuthError,
    RejectedError,
    Timed,
)

TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "placeholder"},
    "properties": [
        {"identifier": "temperature", "name": "T", "accessMode": "r",
         "dataType": {"type": "float", "specs": {"min": "-40", "max": "120"}}},
        {"identifier": "humidity", "name": "H", "accessMode": "r",
         "dataType": {"type": "int", "specs": {"min": "0", "max": "100"}}},
        {"identifier": "heating", "name": "On", "accessMode": "rw",
         "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
        {"identifier": "mode", "name": "Mode", "accessMode": "rw",
         "dataType": {"type": "enum", "specs": {"0": "eco", "2": "auto"}}},
        {"identifier": "calibrated", "name": "Cal", "accessMode": "r", "dataType": {"type": "date", "specs": {}}},
        {"identifier": "location", "name": "Loc", "accessMode": "r", "dataType": {"type": "struct", "specs": [
            {"identifier": "lat", "name": "lat", "dataType": {"type": "double", "specs": {}}},
            {"identifier": "indoor", "name": "in", "dataType": {"type": "bool", "specs": {}}}]}},
        {"identifier": "samples", "name": "S", "accessMode": "r",
         "dataType": {"type": "array", "specs": {"size": "4", "item": {"type": "int"}}}},
    ],
    "events": [
        {"identifier": "overheat", "name": "Overheat", "type": "alert",
         "outputData": [{"identifier": "level", "name": "Level",
                         "dataType": {"type": "int", "specs": {"min": "1", "max": "3"}}}]},
    ],
    "services": [],
}


class Mode(enum.Enum):
    ECO = 0
    AUTO = 2


@pytest.fixture
def modelled(server: ServerProcess, tmp_path: Path) -> dict:
    return new_device(server, "--tsl", str(write_json(tmp_path / "tsl.json", TSL)))


def test_authenticate_publish_properties_and_event_are_stored(server: ServerProcess, flavour: Flavour,
                                                              modelled: dict) -> None:
    device = flavour.aliyun(endpoint(server), modelled, ca_file=server.cert)
    assert device.token is None
    token = device.authenticate()
    assert len(token) == 56 and device.token == token
    raw = device.publish(device.user_topic("update"), b"\x01\x02 raw bytes")
    calibrated = dt.datetime(2021, 11, 2, 7, 51, 2, tzinfo=dt.UTC)
    props = device.post_properties({"temperature": 21.5, "humidity": 60, "heating": True, "mode": Mode.AUTO,
                                    "calibrated": calibrated, "location": {"lat": 31.2, "indoor": False},
                                    "samples": (1, 2, 3)})
    event = device.post_event("overheat", {"level": 2})
    assert device.token == token  # one authentication for all of it

    messages = stored(server, modelled)
    assert [(m["messageId"], m["kind"]) for m in messages] == [(raw, "custom"), (props, "property_post"),
                                                               (event, "event_post")]
    assert messages[0]["size"] == len(b"\x01\x02 raw bytes")
    for m in messages[1:]:  # the thing model accepted every typed value
        assert m["reply"]["code"] == 200, m["reply"]
    values = {k: v["value"] for k, v in status(server, modelled)["properties"].items()}
    assert values == {"temperature": 21.5, "humidity": 60, "heating": 1, "mode": 2, "calibrated": "1635839462000",
                      "location": {"lat": 31.2, "indoor": 0}, "samples": [1, 2, 3]}


def test_values_with_their_time(server: ServerProcess, flavour: Flavour, modelled: dict) -> None:
    device = flavour.aliyun(endpoint(server), modelled, ca_file=server.cert)
    now_ms = int(time.time() * 1000)
    device.post_properties({"humidity": 40, "temperature": 20.0}, time_ms=now_ms - 60_000)
    device.post_properties({"humidity": 41, "temperature": Timed(19.5, now_ms - 30_000)})
    device.post_event("overheat", {"level": 3}, time_ms=dt.datetime.now(dt.UTC))
    assert [(p["value"], p["time"]) for p in history(server, modelled, "temperature")] == [
        (19.5, now_ms - 30_000), (20.0, now_ms - 60_000)]
    humidity = history(server, modelled, "humidity")
    assert humidity[1]["time"] == now_ms - 60_000 and humidity[0]["time"] >= now_ms  # no time: receive time
    assert stored(server, modelled)[-1]["reply"]["code"] == 200


def test_refusals_are_typed(server: ServerProcess, flavour: Flavour, modelled: dict) -> None:
    wrong = flavour.aliyun(endpoint(server), {**modelled, "deviceSecret": "not-the-secret"}, ca_file=server.cert)
    with pytest.raises(AuthError) as refused:
        wrong.authenticate()
    assert refused.value.code == 20000 and refused.value.message.startswith("auth check error")
    device = flavour.aliyun(endpoint(server), modelled, ca_file=server.cert, sign_method="hmacmd5")
    with pytest.raises(RejectedError) as refused:
        device.publish(f"/{modelled['productKey']}/someone-else/user/update", b"x")
    assert refused.value.code == 30001 and "publish message error" in refused.value.message
    assert stored(server, modelled) == []


def test_async_flavour_is_awaitable_and_authenticates_once_under_concurrency(server: ServerProcess) -> None:
    for name in ("authenticate", "publish", "post_properties", "post_event", "close", "__aenter__", "__aexit__"):
        assert inspect.iscoroutinefunction(getattr(AsyncAliyunDevice, name)), name
        assert not inspect.iscoroutinefunction(getattr(AliyunDevice, name.replace("__a", "__"))), name
    created = new_device(server)

    async def main() -> list[int]:
        async with AsyncAliyunDevice(endpoint(server), created["productKey"], created["deviceName"],
                                     created["deviceSecret"], ca_file=server.cert) as device:
            # 30 reports at once on a fresh device: one auth request (the server allows a burst of 20)
            return await asyncio.gather(*(device.post_properties({"n": i}) for i in range(30)))

    ids = asyncio.run(asyncio.wait_for(main(), 9))
    assert len(set(ids)) == 30
    assert sorted(m["messageId"] for m in stored(server, created)) == sorted(ids)
