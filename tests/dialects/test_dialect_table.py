"""The path table the device endpoint dispatches through (dialects/dialect.py, dialects/table.py)."""

from typing import Any

import pytest

from thingport.dialects.aliyun import AliyunDialect
from thingport.dialects.dialect import DialectTable
from thingport.dialects.huawei import HuaweiDialect
from thingport.dialects.table import DIALECTS
from thingport.settings import load_settings


class _Ingest:
    """Just what a dialect reads when it is built."""

    settings = load_settings()
    metrics: Any = None


def test_the_table_sends_each_path_to_its_dialect_exact_paths_exactly() -> None:
    table = DialectTable(_Ingest(), DIALECTS)  # type: ignore[arg-type]
    found = {path: type(table.find(path)) for path in
             ("/auth", "/topic/a1/dev/user/x", "/topic/", "/v5/device-auth", "/v5/devices/d/sys/messages/up")}
    assert set(found.values()) == {AliyunDialect, HuaweiDialect}
    assert found["/auth"] is AliyunDialect and found["/v5/device-auth"] is HuaweiDialect
    for path in ("/authx", "/auth/", "/topic", "/v5", "/", "", "/metrics", "/TOPIC/a"):
        assert table.find(path) is None, path


def test_one_dialect_instance_answers_all_its_paths() -> None:
    table = DialectTable(_Ingest(), DIALECTS)  # type: ignore[arg-type]
    assert table.find("/auth") is table.find("/topic/x")


def test_two_dialects_may_not_claim_one_path() -> None:
    with pytest.raises(ValueError, match="two dialects answer /v5/"):
        DialectTable(_Ingest(), {AliyunDialect: ("/v5/",), HuaweiDialect: ("/v5/",)})  # type: ignore[arg-type]


def test_an_exact_path_may_not_hide_under_a_prefix() -> None:
    with pytest.raises(ValueError, match="/v5/device-auth lies under the prefix /v5/"):
        DialectTable(_Ingest(), {AliyunDialect: ("/v5/device-auth",), HuaweiDialect: ("/v5/",)})  # type: ignore[arg-type]
