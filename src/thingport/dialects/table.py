"""Which dialect answers which paths: one line per dialect (a path ending in "/" is a prefix)."""

from collections.abc import Iterable, Mapping

from thingport.dialects.aliyun import AliyunDialect
from thingport.dialects.dialect import DialectFactory
from thingport.dialects.huawei import HuaweiDialect

DIALECTS: Mapping[DialectFactory, Iterable[str]] = {
    AliyunDialect: ("/auth", "/topic/"),
    HuaweiDialect: ("/v5/",),
}
