"""Management use cases that both the CLI and the API call."""

import asyncio
from pathlib import Path

import pytest

from thingport.core.errors import NotFound, ParamError
from thingport.core.model import Product
from thingport.manage.service import Management
from thingport.runtime.stores import open_stores
from thingport.settings import load_settings


def test_update_product_changes_what_is_given_and_keeps_the_rest(data_dir: Path) -> None:
    stores = open_stores(load_settings(data_dir=data_dir))

    async def main() -> list[Product]:
        m = Management(stores.registry, stores.log)
        await m.create_product("p", "pkUpdate001", require_sign_type_1=True)
        seen = [await m.update_product("pkUpdate001", validation="whole-report", report_rate=5)]
        seen.append(await m.update_product("pkUpdate001", presence_timeout_s=60, report_burst=20))
        seen.append(await m.update_product("pkUpdate001", presence_timeout_s=0, report_rate=0,
                                           require_sign_type_1=None))
        with pytest.raises(ParamError):
            await m.update_product("pkUpdate001", validation="sometimes")
        with pytest.raises(NotFound):
            await m.update_product("pkNothing01")
        return seen

    try:
        first, second, reset = asyncio.run(main())
    finally:
        stores.close()
    assert (first.validation, first.device_report_rate, first.require_sign_type_1) == ("whole-report", 5, True)
    assert (second.presence_timeout_s, second.device_report_rate, second.device_report_burst) == (60, 5, 20)
    assert second.require_sign_type_1 is True and second.validation == "whole-report"  # kept: not given
    assert (reset.presence_timeout_s, reset.device_report_rate, reset.require_sign_type_1) == (None, None, None)
    assert reset.device_report_burst == 20
