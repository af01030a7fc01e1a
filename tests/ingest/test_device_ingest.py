"""The ingest use case on in-memory ports (tests/fakes.py): the report sequence and authentication, for both
dialects' credentials and rules, without a server or a database. The same behaviour over real sockets and
storage is tests/dialects/."""

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from tests.fakes import InMemoryLog, InMemoryRegistry
from thingport.core import signing
from thingport.core.errors import (
    AuthFailed,
    NotAChild,
    ParamError,
    Throttled,
    TokenExpired,
    TokenInvalid,
    TopicDenied,
)
from thingport.core.model import Device, Product
from thingport.core.tokens import TokenCodec
from thingport.dialects.aliyun import AlinkReports, AliyunCredential
from thingport.dialects.huawei import HuaweiCredential, IotdaAddress, IotdaReports
from thingport.ingest.ports import Stored
from thingport.ingest.use_case import DeviceIngest
from thingport.settings import load_settings
from thingport.state.registry_cache import RegistryCache

SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-0001"
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOUR = "2027011508"
TSL = {"properties": [
    {"identifier": "temperature", "dataType": {"type": "int", "specs": {"min": "-40", "max": "50"}}},
    {"identifier": "humidity", "dataType": {"type": "int", "specs": {"min": "0", "max": "100"}}},
]}
POST = "/topic/sys/pk01/dev-a/thing/event/property/post"
ALINK = AlinkReports()
IOTDA = IotdaReports()


class World:
    """A product with a model, its device, and a gateway with two sub-devices of that product."""

    def __init__(self, validation: str = "per-property", **settings: Any) -> None:
        self.now = NOW
        self.registry = InMemoryRegistry()
        self.log = InMemoryLog(self.registry)
        self.registry.add_product(Product("pk01", "p", "device", 0, validation=validation), TSL)
        self.registry.add_product(Product("gw01", "g", "gateway", 0))
        self.device = self.registry.add_device(Device(1, "pk01", "dev-a", True, 0, 0, SECRET, device_id="pk01_dev-a"))
        self.registry.add_device(Device(2, "gw01", "gw", True, 0, 0, SECRET, device_id="gw01_gw"))
        for n in (3, 4):
            self.registry.add_device(Device(n, "pk01", f"child-{n}", True, 0, 0, SECRET, device_id=f"pk01_child-{n}",
                                            gateway_id=2))
        self.registry.add_device(Device(5, "pk01", "stranger", True, 0, 0, SECRET, device_id="pk01_stranger"))
        self.cache = RegistryCache(self.registry)
        self.ingest = DeviceIngest(load_settings(**settings), self.registry, self.log, self.cache,
                                   TokenCodec(b"k" * 32), clock=lambda: self.now)
        self.bodies_read = 0

    def body(self, payload: bytes) -> Callable[[], Awaitable[bytes]]:
        async def read() -> bytes:
            self.bodies_read += 1
            return payload
        return read

    async def aliyun_token(self, device_name: str = "dev-a") -> str:
        params = {"productKey": "pk01", "deviceName": device_name, "clientId": "c1", "timestamp": str(int(NOW * 1000))}
        credential = AliyunCredential(params, "hmacsha256", signing.aliyun_sign(SECRET, params, "hmacsha256"))
        return (await self.ingest.authenticate(credential, "203.0.113.9")).token

    async def huawei_token(self, device_id: str = "pk01_dev-a", sign_type: int = 1) -> str:
        credential = HuaweiCredential(device_id, sign_type, HOUR, signing.huawei_password(SECRET, HOUR))
        return (await self.ingest.authenticate(credential, "203.0.113.9")).token

    async def post(self, token: str, params: dict[str, Any], topic: str = POST) -> tuple[Stored, ...]:
        payload = json.dumps({"id": "1", "params": params}).encode()
        return await self.ingest.report(token, ALINK, topic.encode(), self.body(payload))

    async def iotda(self, token: str, doc: dict[str, Any], api: str = "properties/report",
                    device_id: str = "pk01_dev-a") -> tuple[Stored, ...]:
        address = IotdaAddress(device_id, api, f"/v5/devices/{device_id}/sys/{api}")
        return await self.ingest.report(token, IOTDA, address, self.body(json.dumps(doc).encode()))


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def services(**values: Any) -> dict[str, Any]:
    return {"services": [{"service_id": "S", "properties": values}]}


# --- authentication ---


@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
def test_a_device_that_signs_with_its_secret_gets_a_token_and_comes_online(dialect: str) -> None:
    async def main() -> None:
        w = World()
        token = await (w.aliyun_token() if dialect == "aliyun" else w.huawei_token())
        assert len(token) == 56
        [session] = w.log.sessions
        assert (session.device_id, session.source, session.supersedes) == (1, "203.0.113.9", dialect == "huawei")
        assert [(m.kind, m.device_name) for m in w.log.messages] == [("status", "dev-a")]  # "online"
    run(main)


@pytest.mark.parametrize("change", ["secret", "unknown", "disabled", "time"])
@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
def test_authentication_refusals_record_nothing(dialect: str, change: str) -> None:
    async def main() -> None:
        w = World()
        secret, name, stamp = SECRET, "dev-a", str(int(NOW * 1000))
        if change == "secret":
            secret = "another-secret-another-secret-00"
        elif change == "unknown":
            name = "nobody"
        elif change == "disabled":
            w.registry.add_device(msgspec.structs.replace(w.device, enabled=False))
        else:
            stamp = str(int(NOW * 1000) - 16 * 60 * 1000)  # 16 minutes old; IoTDA: the hour before the last
        if dialect == "aliyun":
            params = {"productKey": "pk01", "deviceName": name, "clientId": "c1", "timestamp": stamp}
            credential: Any = AliyunCredential(params, "hmacmd5", signing.aliyun_sign(secret, params, "hmacmd5"))
        else:
            hour = "2027011505" if change == "time" else HOUR
            credential = HuaweiCredential(f"pk01_{name}", 1, hour, signing.huawei_password(secret, hour))
        with pytest.raises(AuthFailed):
            await w.ingest.authenticate(credential, "203.0.113.9")
        assert w.log.sessions == [] and w.log.messages == []
    run(main)


def test_sign_type_0_is_refused_where_the_product_requires_sign_type_1() -> None:
    async def main() -> None:
        w = World()
        assert await w.huawei_token(sign_type=0)
        w.registry.add_product(dataclasses.replace(w.registry.products["pk01"], require_sign_type_1=True))
        w.cache = RegistryCache(w.registry)  # what the change feed would do
        w.ingest._cache = w.cache
        with pytest.raises(AuthFailed, match="sign_type 0 is not allowed"):
            await w.huawei_token(sign_type=0)
        assert await w.huawei_token(sign_type=1)
    run(main)


# --- token checks ---


def test_a_token_reports_only_in_the_dialect_that_issued_it() -> None:
    async def main() -> None:
        w = World()
        aliyun, huawei = await w.aliyun_token(), await w.huawei_token()
        with pytest.raises(TokenInvalid, match="another protocol"):
            await w.iotda(aliyun, services(temperature=1))
        with pytest.raises(TokenInvalid, match="another protocol"):
            await w.post(huawei, {"temperature": 1})
        assert w.bodies_read == 0
    run(main)


def test_expired_revoked_and_superseded_tokens_are_refused() -> None:
    async def main() -> None:
        w = World()
        first = await w.huawei_token()
        w.now += 1
        second = await w.huawei_token()
        await w.iotda(first, services(temperature=1))  # superseded, within its 30 s of grace
        w.now += 31
        with pytest.raises(TokenInvalid, match="superseded"):
            await w.iotda(first, services(temperature=1))
        await w.iotda(second, services(temperature=1))
        w.cache.remember(msgspec.structs.replace(w.cache.get(1), token_epoch=1))  # type: ignore[type-var]
        with pytest.raises(TokenInvalid, match="revoked"):
            await w.iotda(second, services(temperature=1))
        w.cache.remember(msgspec.structs.replace(w.cache.get(1), token_epoch=0))  # type: ignore[type-var]
        w.now += w.ingest.settings.huawei_token_ttl_s
        with pytest.raises(TokenExpired):
            await w.iotda(second, services(temperature=1))
    run(main)


def test_an_iotda_token_reports_only_for_its_own_device() -> None:
    async def main() -> None:
        w = World()
        token = await w.huawei_token()
        with pytest.raises(TokenInvalid, match="another device"):
            await w.iotda(token, services(temperature=1), device_id="pk01_stranger")
        assert w.bodies_read == 0
    run(main)


def test_a_topic_outside_the_device_is_denied_before_the_body() -> None:
    async def main() -> None:
        w = World()
        token = await w.aliyun_token()
        with pytest.raises(TopicDenied):
            await w.post(token, {"temperature": 1}, topic="/topic/sys/pk01/stranger/thing/event/property/post")
        assert w.bodies_read == 0
    run(main)


# --- the throttle comes before the body ---


@pytest.mark.parametrize("dialect", ["aliyun", "huawei"])
def test_a_throttled_report_never_has_its_body_read(dialect: str) -> None:
    async def main() -> None:
        w = World(device_report_rate=0.001, device_report_burst=1)
        if dialect == "aliyun":
            token = await w.aliyun_token()
            await w.post(token, {"temperature": 1})
            with pytest.raises(Throttled):
                await w.post(token, {"temperature": 2})
        else:
            token = await w.huawei_token()
            await w.iotda(token, services(temperature=1))
            with pytest.raises(Throttled):
                await w.iotda(token, services(temperature=2))
        assert w.bodies_read == 1
        assert [m.kind for m in w.log.messages] == ["status", "property_post"]
    run(main)


# --- validation policy, both dialects: per-property keeps the good values, whole-report none ---


@pytest.mark.parametrize("validation", ["per-property", "whole-report"])
def test_alibaba_stores_a_partly_refused_post_and_names_the_refusals(validation: str) -> None:
    async def main() -> None:
        w = World(validation)
        token = await w.aliyun_token()
        appends = w.log.appends
        [(message, verdict)] = await w.post(token, {"temperature": 21, "humidity": 500})
        assert w.log.appends == appends + 1  # one transaction per report
        assert w.log.messages[-1].message_id == message.message_id
        kept = {k: v for group in message.properties for k, v in group.values.items()}
        assert kept == ({"temperature": 21} if validation == "per-property" else {})
        reply = json.loads(message.reply or b"")
        assert [r["identifier"] for r in reply["data"]["refused"]] == ["humidity"]
        assert verdict is not None and verdict.rejected == (validation == "whole-report")
    run(main)


@pytest.mark.parametrize("validation", ["per-property", "whole-report"])
def test_iotda_refuses_a_report_under_whole_report_and_keeps_the_good_values_per_property(validation: str) -> None:
    async def main() -> None:
        w = World(validation)
        token = await w.huawei_token()
        appends = w.log.appends
        if validation == "whole-report":
            with pytest.raises(ParamError, match="product model refused the report: humidity"):
                await w.iotda(token, services(temperature=21, humidity=500))
            assert w.log.appends == appends  # nothing stored
            return
        [(message, verdict)] = await w.iotda(token, services(temperature=21, humidity=500))
        assert w.log.appends == appends + 1
        assert [group.values for group in message.properties] == [{"temperature": 21}]
        assert verdict is not None and [r["property"] for r in verdict.refused] == ["humidity"]
        assert json.loads(message.reply or b"") == {"refused": list(verdict.refused)}
    run(main)


def test_a_report_with_every_value_refused_is_stored_by_alibaba_and_refused_by_iotda() -> None:
    async def main() -> None:
        w = World()
        [(message, verdict)] = await w.post(await w.aliyun_token(), {"humidity": 500})
        assert message.properties == () and verdict is not None and verdict.rejected
        with pytest.raises(ParamError, match="refused the report"):
            await w.iotda(await w.huawei_token(), services(humidity=500))
    run(main)


def test_an_unvalidated_topic_is_stored_as_sent_without_a_verdict() -> None:
    async def main() -> None:
        w = World()
        [(message, verdict)] = await w.post(await w.aliyun_token(), {"anything": "goes"},
                                            topic="/topic/pk01/dev-a/user/update")
        assert (message.kind, verdict, message.properties, message.reply) == ("custom", None, (), None)
    run(main)


# --- a gateway's report: one transaction for every sub-device ---


def _children(*entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"devices": [{"device_id": device_id, **services(**values)} for device_id, values in entries]}


def test_a_gateway_report_stores_every_sub_device_in_one_transaction() -> None:
    async def main() -> None:
        w = World()
        token = await w.huawei_token("gw01_gw")
        appends = w.log.appends
        stored = await w.iotda(token, _children(("pk01_child-3", {"temperature": 1}),
                                                ("pk01_child-4", {"temperature": 2, "humidity": 500})),
                               api="gateway/sub-devices/properties/report", device_id="gw01_gw")
        assert w.log.appends == appends + 1
        assert [m.device_name for m, _ in stored] == ["child-3", "child-4"]
        # each sub-device came online with its report: its "online" status in the same transaction
        assert [(m.kind, m.device_name) for m in w.log.messages[-4:]] == [
            ("status", "child-3"), ("property_post", "child-3"), ("status", "child-4"), ("property_post", "child-4")]
        assert [[g.values for g in m.properties] for m, _ in stored] == [[{"temperature": 1}], [{"temperature": 2}]]
    run(main)


def test_a_gateway_report_naming_a_stranger_stores_nothing() -> None:
    async def main() -> None:
        w = World()
        token = await w.huawei_token("gw01_gw")
        appends = w.log.appends
        with pytest.raises(NotAChild):
            await w.iotda(token, _children(("pk01_child-3", {"temperature": 1}), ("pk01_stranger", {"temperature": 1})),
                          api="gateway/sub-devices/properties/report", device_id="gw01_gw")
        assert w.log.appends == appends
    run(main)


# --- presence after a restart ---


def test_presence_resumes_for_devices_seen_recently_in_one_round_trip_per_chunk() -> None:
    """A device seen within its timeout before a restart is online after it without saying so again; they are
    loaded in chunks (one round trip each took 30 s for 100,000 devices on PostgreSQL, the server not answering)."""
    async def main() -> None:
        w = World()
        now_ms = int(NOW * 1000)
        w.registry.seen.update({1: now_ms - 10_000, 3: now_ms - 20_000, 4: now_ms - 10**9, 99: now_ms})
        assert await w.ingest.resume_presence() == 2  # 4 was silent too long; 99 is no device
        assert [w.ingest.presence.online(n) for n in (1, 3, 4)] == [True, True, False]
        assert (w.registry.calls["devices_by_ids"], w.registry.calls["device_by_id"]) == (1, 0)
        assert w.log.messages == []  # no "online" said again
    run(main)
