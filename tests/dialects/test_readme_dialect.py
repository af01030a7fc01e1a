"""The README's "A new dialect" walk-through runs as written: its file, registered with its one table line next
to the real dialects, authenticates and stores a judged report through the ingest use case (on the in-memory
ports), and the real dialects keep their paths."""

import asyncio
import hashlib
import hmac
import json
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes import InMemoryLog, InMemoryRegistry
from thingport.core.errors import BodyTooLarge
from thingport.core.model import Device, Product
from thingport.core.tokens import TokenCodec
from thingport.dialects.aliyun import AliyunDialect
from thingport.dialects.dialect import DialectTable
from thingport.dialects.table import DIALECTS
from thingport.ingest.use_case import DeviceIngest
from thingport.settings import load_settings
from thingport.state.registry_cache import RegistryCache

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "plain-secret-plain-secret-000001"
TSL = {"properties": [{"identifier": "temperature", "dataType": {"type": "int", "specs": {"min": "0", "max": "50"}}}]}


def _section_code() -> list[str]:
    section = README.read_text().split("### A new dialect", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _plain_module() -> types.ModuleType:
    module = types.ModuleType("thingport_readme_plain")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(_section_code()[0], "README.md#a-new-dialect", "exec"), module.__dict__)
    return module


def _table_line(plain: types.ModuleType) -> dict[Any, Any]:
    """The README's table, evaluated with the README's dialect in scope."""
    code = _section_code()[1]
    namespace: dict[str, Any] = {"PlainDialect": plain.PlainDialect, **vars(sys.modules["thingport.dialects.table"])}
    exec(code, namespace)
    return namespace["DIALECTS"]


@dataclass
class _Request:
    """A parsed request as the endpoint hands it to a dialect (``dialects.http.DeviceRequest``)."""

    path: str
    headers: dict[bytes, bytes]
    payload: bytes
    method: bytes = b"POST"
    query: bytes = b""
    client: str = "203.0.113.9"

    @property
    def raw_path(self) -> bytes:
        return self.path.encode()

    async def body(self, limit: int) -> bytes:
        if len(self.payload) > limit:
            raise BodyTooLarge(f"body is larger than {limit} bytes")
        return self.payload


async def _call(table: DialectTable, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    dialect = table.find(path)
    assert dialect is not None, path
    reply = await dialect(_Request(path, dict(headers), body))
    assert reply is not None
    status, answer = reply
    return status, json.loads(answer)


def test_the_readme_dialect_authenticates_and_stores_a_judged_report() -> None:
    plain = _plain_module()
    table_lines = _table_line(plain)
    assert table_lines == {**DIALECTS, plain.PlainDialect: ("/plain/",)}

    async def main() -> None:
        registry = InMemoryRegistry()
        registry.add_product(Product("pk01", "p", "device", 0), TSL)
        registry.add_device(Device(1, "pk01", "dev-a", True, 0, 0, SECRET, device_id="pk01_dev-a"))
        log = InMemoryLog(registry)
        ingest = DeviceIngest(load_settings(), registry, log, RegistryCache(registry), TokenCodec(b"k" * 32))
        table = DialectTable(ingest, table_lines)
        assert isinstance(table.find("/auth"), AliyunDialect)

        sign = hmac.new(SECRET.encode(), b"pk01/dev-a", hashlib.sha256).hexdigest()
        auth = {"productKey": "pk01", "deviceName": "dev-a", "sign": sign}
        status, reply = await _call(table, "/plain/auth", json.dumps({**auth, "sign": "0" * 64}).encode(), [])
        assert (status, reply) == (400, {"error": "signature does not match"})
        status, reply = await _call(table, "/plain/auth", json.dumps(auth).encode(), [])
        assert status == 200
        token = reply["token"].encode()

        status, reply = await _call(table, "/plain/report", b'{"temperature": 21}', [(b"token", token)])
        assert status == 200
        [message] = [m for m in log.messages if m.kind == "property_post"]
        assert (reply["id"], message.dialect, message.topic) == (message.message_id, "plain", "/plain/pk01/dev-a")
        assert [group.values for group in message.properties] == [{"temperature": 21}]

        status, reply = await _call(table, "/plain/report", b'{"temperature": 99}', [(b"token", token)])
        assert (status, reply) == (400, {"error": "the thing model refused the report"})
        octets = (b"content-type", b"application/octet-stream")  # its token reports in no other dialect
        status, reply = await _call(table, "/topic/pk01/dev-a/user/x", b"{}", [(b"password", token), octets])
        assert (status, reply["code"]) == (200, 20003)
        assert len([m for m in log.messages if m.kind == "property_post"]) == 1

    asyncio.run(main())
