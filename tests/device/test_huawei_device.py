"""HuaweiDevice and AsyncHuaweiDevice against a real thingport over HTTPS."""

import datetime as dt
import inspect
import json
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
from tests.support import ServerProcess, cli
from thingport.device import (
    MAX_SUB_DEVICES,
    AsyncHuaweiDevice,
    AuthError,
    HuaweiDevice,
    RejectedError,
    Service,
)

MODEL = {"services": [
    {"service_id": "Environment", "service_type": "Environment", "properties": [
        {"property_name": "temperature", "data_type": "decimal", "min": "-40", "max": "120", "method": "R"},
        {"property_name": "heating", "data_type": "boolean", "method": "RW"},
        {"property_name": "mode", "data_type": "enum", "enum_list": ["eco", "auto"], "method": "RW"},
        {"property_name": "calibrated", "data_type": "DateTime", "method": "R"},
    ]},
    {"service_id": "Battery", "service_type": "Battery", "properties": [
        {"property_name": "level", "data_type": "int", "min": "0", "max": "100", "method": "R"},
    ]},
]}


@pytest.fixture
def modelled(server: ServerProcess, tmp_path: Path) -> dict:
    device = new_device(server)
    cli(server.data_dir, "product", "model", "import", "--product-key", device["productKey"],
        str(write_json(tmp_path / "model.json", MODEL)))
    return device


@pytest.fixture(scope="module")
def gateway(server: ServerProcess) -> dict:
    """A gateway with 50 sub-devices, and a device that is not one of them."""
    gw_product = cli(server.data_dir, "product", "create", "--name", "sdk-gw", "--node-type", "gateway")
    gw = cli(server.data_dir, "device", "create", "--product-key", gw_product["productKey"], "--name", "gateway-1")
    child_product = cli(server.data_dir, "product", "create", "--name", "sdk-child")
    children = [cli(server.data_dir, "device", "create", "--product-key", child_product["productKey"],
                    "--name", f"child-{i:02d}", "--gateway", f"{gw['productKey']}/{gw['deviceName']}")
                for i in range(MAX_SUB_DEVICES)]
    stranger = cli(server.data_dir, "device", "create", "--product-key", child_product["productKey"],
                   "--name", "stranger")
    return {"gw": gw, "children": children, "stranger": stranger}


def test_report_properties_and_message_up_are_stored(server: ServerProcess, flavour: Flavour, modelled: dict) -> None:
    device = flavour.huawei(endpoint(server), modelled, ca_file=server.cert)
    assert device.token is None
    token = device.authenticate()
    assert device.token == token
    calibrated = dt.datetime(2021, 8, 13, 10, 10, 10, tzinfo=dt.UTC)
    sampled = dt.datetime(2021, 8, 13, 10, 10, 10, 555000, tzinfo=dt.UTC)
    first = device.report_properties({"Environment": {"temperature": 21.5, "heating": True, "mode": "auto",
                                                      "calibrated": calibrated}})
    second = device.report_properties([Service("Battery", {"level": 80}, event_time=sampled)])
    up = [device.message_up({"name": "hello", "content": {"a": 1}}), device.message_up(b"\x00\xff"),
          device.message_up("plain text")]
    assert device.token == token and first.refused == () and second.refused == ()

    messages = stored(server, modelled)
    assert [m["messageId"] for m in messages] == [first.message_id, second.message_id] + [r.message_id for r in up]
    assert [m["kind"] for m in messages] == ["property_post"] * 2 + ["custom"] * 3
    assert [m["size"] for m in messages[2:]] == [len(json.dumps({"name": "hello", "content": {"a": 1}},
                                                                separators=(",", ":"))), 2, 10]
    values = {k: v["value"] for k, v in status(server, modelled)["properties"].items()}
    assert values == {"temperature": 21.5, "heating": True, "mode": "auto", "calibrated": "20210813T101010Z",
                      "level": 80}
    assert history(server, modelled, "level")[0]["time"] == int(sampled.timestamp() * 1000)


def test_model_refusals(server: ServerProcess, flavour: Flavour, modelled: dict) -> None:
    device = flavour.huawei(endpoint(server), modelled, ca_file=server.cert, sign_type=1)
    receipt = device.report_properties({"Battery": {"level": 50, "voltage": 3.7}})
    assert [r["property"] for r in receipt.refused] == ["voltage"]  # the others were stored
    with pytest.raises(RejectedError) as refused:
        device.report_properties({"Battery": {"level": 101}})
    assert (refused.value.code, refused.value.status) == ("IOTDA.000006", 400)
    wrong = flavour.huawei(endpoint(server), {**modelled, "deviceSecret": "not-the-secret"}, ca_file=server.cert)
    with pytest.raises(AuthError) as denied:
        wrong.authenticate()
    assert (denied.value.code, denied.value.status) == ("IOTDA.000002", 401)


def test_gateway_reports_for_its_sub_devices(server: ServerProcess, flavour: Flavour, gateway: dict) -> None:
    device = flavour.huawei(endpoint(server), gateway["gw"], ca_file=server.cert)
    children = gateway["children"]
    receipt = device.report_sub_devices({c["deviceId"]: {"s": {"n": i, "flag": i % 2 == 0}}
                                         for i, c in enumerate(children)})
    assert len(receipt.message_ids) == MAX_SUB_DEVICES == 50
    last = {k: v["value"] for k, v in status(server, children[-1])["properties"].items()}
    assert last == {"n": 49, "flag": False}
    with pytest.raises(RejectedError) as refused:
        device.report_sub_devices({children[0]["deviceId"]: [Service("s", {"n": 1})],
                                   gateway["stranger"]["deviceId"]: {"s": {"n": 2}}})
    assert (refused.value.code, refused.value.status) == ("IOTDA.021104", 400)
    assert gateway["stranger"]["deviceId"] in refused.value.message


def test_more_than_50_sub_devices_are_refused_before_sending(server: ServerProcess, flavour: Flavour,
                                                             gateway: dict) -> None:
    device = flavour.huawei(endpoint(server), gateway["gw"], ca_file=server.cert)
    batch = {f"child-{i}": {"s": {"n": i}} for i in range(MAX_SUB_DEVICES + 1)}
    with pytest.raises(RejectedError) as refused:
        device.report_sub_devices(batch)
    assert (refused.value.code, refused.value.status) == ("IOTDA.021103", None)
    assert device.token is None  # nothing was sent, not even the authentication


def test_async_flavour_is_awaitable() -> None:
    for name in ("authenticate", "report_properties", "message_up", "report_sub_devices", "close"):
        assert inspect.iscoroutinefunction(getattr(AsyncHuaweiDevice, name)), name
        assert not inspect.iscoroutinefunction(getattr(HuaweiDevice, name)), name
