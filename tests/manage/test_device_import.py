"""Bulk device import and export and product delete, on both storage engines."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from thingport.core.errors import Conflict, NotFound, ParamError
from thingport.manage import service
from thingport.manage.device_files import parse
from thingport.manage.service import Management
from thingport.runtime.bootstrap import build
from thingport.settings import load_settings


def run(data_dir: Path, engine: dict, action: Any) -> Any:
    app = build(load_settings(data_dir=data_dir, **engine))

    async def main() -> Any:
        return await action(app.management(), app.stores)

    try:
        return asyncio.run(main())
    finally:
        app.close()


def csv_rows(*lines: str) -> Any:
    return parse(["deviceName,deviceSecret,deviceId", *lines], "csv")


async def names(m: Management, pk: str) -> list[str]:
    return [d.device_name for d in await m.devices(pk)]


def test_import_is_all_or_nothing_against_what_is_stored(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, _: Any) -> None:
        await m.create_product("p", "pkOne")
        await m.create_product("q", "pkTwo")
        await m.create_device("pkOne", "stored-1")
        await m.create_device("pkTwo", "other-1", device_id="shared-id")
        report = await m.import_devices("pkOne", csv_rows(
            "new-0001,,", "stored-1,,", "new-0002,,shared-id", "new-0003,Given,"))
        assert (report.rows, report.imported) == (4, 0)
        assert [(r.line, r.code, r.reason) for r in report.refusals] == [
            (3, "exists", "device pkOne/stored-1 already exists"),
            (4, "exists", "device_id shared-id already exists"),
        ]
        assert await names(m, "pkOne") == ["stored-1"] and report.devices == []

        skipped = await m.import_devices("pkOne", csv_rows(
            "new-0001,,", "stored-1,,", "new-0002,,shared-id", "new-0003,Given,"), skip_invalid=True)
        assert (skipped.imported, len(skipped.refusals), skipped.generated) == (2, 2, 1)
        assert await names(m, "pkOne") == ["stored-1", "new-0001", "new-0003"]
        assert (await m.device("pkOne", "new-0003")).secret == "Given"
        generated = {d.device_name: d.secret for d in skipped.devices}["new-0001"]
        assert (await m.device("pkOne", "new-0001")).secret == generated

        dry = await m.import_devices("pkOne", csv_rows("new-0009,,"), dry_run=True)
        assert (dry.rows, dry.imported, dry.refusals) == (1, 0, []) and await names(m, "pkOne") == [
            "stored-1", "new-0001", "new-0003"]
        with pytest.raises(NotFound):
            await m.import_devices("pkNone", csv_rows("new-0001,,"))
        with pytest.raises(ParamError, match="unknown column"):
            await m.import_devices("pkOne", parse(["deviceName,colour", "x-0001,red"], "csv"))

    run(data_dir, engine, act)


def test_a_product_gone_while_importing_refuses_its_rows(data_dir: Path, engine: dict) -> None:
    async def act(m: Management, stores: Any) -> None:
        await m.create_product("p", "pkHere")
        refused, inserted = await stores.registry.import_devices(
            [("pkHere", "dev-0001", "pkHere_dev-0001", "s"), ("pkGone", "dev-0001", "pkGone_dev-0001", "s")],
            1, skip_refused=False)
        assert refused == {1: ("unknown_product", "product pkGone does not exist")} and inserted == 0
        assert await names(m, "pkHere") == []

    run(data_dir, engine, act)


def test_a_twin_the_checks_could_not_see_refuses_the_whole_insert(data_dir: Path, engine: dict) -> None:
    """What a concurrent import of the same device meets (here: the same row twice past the service's checks):
    the insert fails whole, as a Conflict, and nothing of it stays."""

    async def act(m: Management, stores: Any) -> None:
        await m.create_product("p", "pkTwin")
        row = ("pkTwin", "twin-001", "pkTwin_twin-001", "s")
        with pytest.raises(Conflict, match="created meanwhile"):
            await stores.registry.import_devices([("pkTwin", "solo-001", "pkTwin_solo-001", "s"), row, row], 1,
                                                 skip_refused=False)
        assert await names(m, "pkTwin") == []

    run(data_dir, engine, act)


def test_a_large_import_goes_in_chunks_and_exports_in_pages(
    data_dir: Path, engine: dict, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "EXPORT_PAGE", 7)
    count = 25_000  # more than one insert chunk

    async def act(m: Management, _: Any) -> None:
        await m.create_product("p", "pkBulk")
        report = await m.import_devices("pkBulk", parse(["deviceName", *(f"d-{i:06d}" for i in range(count))], "csv"))
        assert (report.imported, report.generated, report.refusals) == (count, count, [])
        assert len({d.secret for d in report.devices}) == count
        exported = [d async for d in m.export_devices("pkBulk")]
        assert [d.device_name for d in exported] == [f"d-{i:06d}" for i in range(count)]
        assert exported[-1].secret == report.devices[-1].secret

    run(data_dir, engine, act)


def test_product_delete_is_refused_while_it_has_devices_or_subscriptions_unless_forced(
    data_dir: Path, engine: dict,
) -> None:
    async def act(m: Management, _: Any) -> None:
        await m.create_product("gw", "pkGateways", node_type="gateway",
                               model={"properties": [{"identifier": "t", "dataType": {"type": "int"}}]})
        await m.create_device("pkGateways", "gw-0001")
        await m.create_device("pkGateways", "child-01", gateway=("pkGateways", "gw-0001"))
        await m.create_product("sensors", "pkSensors")
        await m.create_device("pkSensors", "sensor-1", gateway=("pkGateways", "gw-0001"))
        await m.create_subscription("feed", "pkGateways", "http")
        await m.create_subscription("both", ["pkGateways", "pkSensors"], "http")
        await m.create_subscription("everything", None, "http")
        with pytest.raises(Conflict, match="has 2 devices and 2 subscriptions"):
            await m.delete_product("pkGateways")
        with pytest.raises(Conflict, match="sub-devices of product pkGateways's gateways"):
            await m.delete_product("pkGateways", force=True)
        await m.delete_device("pkSensors", "sensor-1")
        product, devices, subscriptions = await m.delete_product("pkGateways", force=True)
        assert (product.product_key, devices, subscriptions) == ("pkGateways", 2, 2)
        with pytest.raises(NotFound):
            await m.product("pkGateways")
        # its own subscription is gone; one of two products loses it; every-product ones stay as they are
        assert {s.name: s.products for s, _ in await m.subscriptions()} == {
            "both": ("pkSensors",), "everything": ()}
        assert await m.devices() == []
        # the key is free again, with nothing of the old product left (its thing model neither)
        again = await m.create_product("again", "pkGateways")
        assert again.model_version is None and await names(m, "pkGateways") == []
        with pytest.raises(Conflict, match="has 0 devices and 1 subscriptions"):
            await m.delete_product("pkSensors")  # "both" names it still
        await m.delete_subscription("both")
        await m.delete_product("pkSensors")
        with pytest.raises(NotFound):
            await m.delete_product("pkSensors")

    run(data_dir, engine, act)
