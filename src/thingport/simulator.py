"""A fleet simulator: N devices reporting at a total rate for a duration, through the device SDK.

It registers the devices it needs (or reuses them) through a local data dir or the management API, plays
seed 004's temperature/humidity collector (or random in-range values of a given thing model), shows live
progress (sent, acknowledged, errors by code, p50/p99) and ends with a summary. Its exit code is non-zero
when any report it sent was not acknowledged.
"""

import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from thingport.device import AsyncAliyunDevice, AsyncHuaweiDevice, DeviceError
from thingport.tasks import cancel_and_wait

SEED_004_TSL: dict = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {},
    "properties": [
        {"identifier": "temperature", "name": "Temperature", "accessMode": "r", "required": False,
         "dataType": {"type": "int", "specs": {"min": "-10", "max": "50", "step": "1"}}},
        {"identifier": "humidity", "name": "Humidity", "accessMode": "r", "required": False,
         "dataType": {"type": "int", "specs": {"min": "1", "max": "100", "step": "1"}}},
    ],
    "events": [],
    "services": [],
}


# --- values a device reports ---

def _bounds(specs: dict, lo: float, hi: float) -> tuple[float, float]:
    return float(specs.get("min", lo)), float(specs.get("max", hi))


def _text(max_length: Any) -> Callable[[], str]:
    """Random text no longer than ``max_length`` characters (any length when it is None)."""
    cut = None if max_length is None else int(max_length)
    return lambda: f"sim-{random.randrange(10**6)}"[:cut]


def _tsl_generator(spec: dict) -> Callable[[], Any]:
    """Random valid values of one TSL ``dataType`` (structs and arrays of any item type included)."""
    kind = spec.get("type")
    specs = spec.get("specs") or {}
    if kind == "int":
        lo, hi = _bounds(specs, 0, 100)
        return lambda: random.randint(int(lo), int(hi))
    if kind in ("float", "double"):
        lo, hi = _bounds(specs, 0, 100)
        return lambda: round(random.uniform(lo, hi), 2)
    if kind == "bool":
        return lambda: random.randint(0, 1)
    if kind == "enum":
        keys = [int(k) for k in specs]
        return lambda: random.choice(keys)
    if kind == "text":
        return _text(specs.get("length"))
    if kind == "date":
        return lambda: str(int(time.time() * 1000))
    if kind == "struct":
        members = {m["identifier"]: _tsl_generator(m.get("dataType") or {}) for m in specs}
        return lambda: {name: make() for name, make in members.items()}
    if kind == "array":
        item = _tsl_generator(specs["item"])
        size = min(int(specs.get("size", 1)), 3)
        return lambda: [item() for _ in range(size)]
    raise ValueError(f"unknown TSL data type {kind!r}")


def tsl_values(tsl: dict) -> Callable[[], dict[str, Any]]:
    """Random in-range values for every property of a TSL."""
    generators = {prop["identifier"]: _tsl_generator(prop.get("dataType") or {}) for prop in tsl.get("properties", [])}
    return lambda: {name: make() for name, make in generators.items()}


def _huawei_generator(prop: dict) -> Callable[[], Any]:
    """Random valid values of one IoTDA property (every ``data_type`` of the product model)."""
    kind = str(prop.get("data_type", "")).lower()
    if kind in ("int", "long"):
        lo, hi = _bounds(prop, 0, 100)
        return lambda: random.randint(int(lo), int(hi))
    if kind == "decimal":
        lo, hi = _bounds(prop, 0, 100)
        return lambda: round(random.uniform(lo, hi), 2)
    if kind == "boolean":
        return lambda: random.choice([True, False])
    if kind in ("string", "string list"):
        text = _text(prop.get("max_length"))
        return text if kind == "string" else (lambda: [text(), text()])
    if kind == "enum":
        choices = list(prop["enum_list"])
        return lambda: random.choice(choices)
    if kind == "datetime":
        return lambda: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if kind == "jsonobject":
        return lambda: {"sim": random.randrange(10**6)}
    raise ValueError(f"unknown IoTDA data_type {prop.get('data_type')!r}")


def huawei_values(model: dict) -> Callable[[], dict[str, dict[str, Any]]]:
    """Random in-range values for every property of an IoTDA product model, by service."""
    services = {
        service["service_id"]: {
            prop["property_name"]: _huawei_generator(prop) for prop in service.get("properties", [])
        }
        for service in model.get("services", [])
    }
    return lambda: {sid: {n: make() for n, make in props.items()} for sid, props in services.items() if props}


def values_for(model: dict, model_format: str, dialect: str) -> Callable[[], dict[str, Any]]:
    """What each simulated report carries, shaped for ``dialect``: Alink params are one flat namespace, IoTDA
    reports are by service. An IoTDA model played in the Alibaba dialect posts its properties flat (the first
    service to define a name wins, as the model's own check decides) but its booleans; a TSL played in the
    IoTDA dialect puts them in one service, whose id a TSL product does not check."""
    if model_format == "huawei":
        if dialect == "huawei":
            return huawei_values(model)
        flat: dict[str, Callable[[], Any]] = {}
        for service in model.get("services", []):
            for prop in service.get("properties", []):
                # an IoTDA boolean is true/false, which the Alibaba SDK sends as Alink's 0/1: left out
                if str(prop.get("data_type", "")).lower() != "boolean":
                    flat.setdefault(prop["property_name"], _huawei_generator(prop))
        return lambda: {name: make() for name, make in flat.items()}
    values = tsl_values(model)
    return values if dialect == "aliyun" else (lambda: {"collector": values()})


# --- registration ---

@dataclass
class SimDevice:
    product_key: str
    device_name: str
    device_id: str
    secret: str


class Registrar:
    """Creates (or finds) the simulator's product and devices: through a local data dir or the API."""

    def __init__(self, data_dir: Path | None, api: str | None, api_key: str | None) -> None:
        if (data_dir is None) == (api is None):
            raise ValueError("give either a data dir or an API URL (with an API key) to register devices")
        self._data_dir, self._api, self._key = data_dir, api, api_key

    async def provision(self, product_key: str | None, model: dict | None, model_format: str, count: int,
                        prefix: str) -> list[SimDevice]:
        if self._api is not None:
            return await self._via_api(product_key, model, count, prefix)
        return await self._via_data_dir(product_key, model, model_format, count, prefix)

    async def _via_data_dir(self, product_key: str | None, model: dict | None, model_format: str, count: int,
                            prefix: str) -> list[SimDevice]:
        from thingport.core.errors import NotFound
        from thingport.runtime.bootstrap import build
        from thingport.settings import load_settings

        app = build(load_settings(data_dir=self._data_dir))
        try:
            m = app.management()
            if product_key is None:
                created = await m.create_product("simulator", None, "device", model, model_format=model_format)
                product_key = created.product_key
            devices = []
            for i in range(count):
                name = f"{prefix}{i:05d}"
                try:
                    d = await m.device(product_key, name)
                except NotFound:
                    d = await m.create_device(product_key, name)
                devices.append(SimDevice(d.product_key, d.device_name, d.device_id, d.secret))
            return devices
        finally:
            app.close()

    async def _via_api(self, product_key: str | None, model: dict | None, count: int, prefix: str) -> list[SimDevice]:
        headers = {"Authorization": f"Bearer {self._key}"}
        async with httpx.AsyncClient(base_url=self._api or "", headers=headers, timeout=30) as api:
            if product_key is None:
                reply = await api.post("/api/products", json={"name": "simulator", "thingModel": model})
                reply.raise_for_status()
                product_key = reply.json()["productKey"]
            devices = []
            for i in range(count):
                name = f"{prefix}{i:05d}"
                reply = await api.post("/api/devices", json={"productKey": product_key, "deviceName": name})
                if reply.status_code == 409:
                    found = (await api.get(f"/api/devices/{product_key}/{name}")).json()
                    secret = (await api.get(f"/api/devices/{product_key}/{name}/secret")).json()["deviceSecret"]
                    devices.append(SimDevice(product_key, name, found["deviceId"], secret))
                    continue
                reply.raise_for_status()
                doc = reply.json()
                devices.append(SimDevice(product_key, name, doc["deviceId"], doc["deviceSecret"]))
            return devices


# --- running the fleet ---

@dataclass
class Stats:
    sent: int = 0
    acked: int = 0
    refused: int = 0  # acknowledged IoTDA reports of which the product model refused some properties
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    def line(self, elapsed: float, duration: float) -> str:
        done = min(1.0, elapsed / duration) if duration else 1.0
        bar = "#" * int(done * 20) + "-" * (20 - int(done * 20))
        errors = " ".join(f"{code}:{n}" for code, n in sorted(self.errors.items(), key=str)) or "none"
        refused = f" (with refused properties {self.refused})" if self.refused else ""
        return (f"[{bar}] {elapsed:5.1f}s sent {self.sent} acked {self.acked}{refused} errors {errors} "
                f"p50 {self.percentile(0.5):.1f}ms p99 {self.percentile(0.99):.1f}ms")


async def run_fleet(
    devices: list[SimDevice], endpoint: str, dialect: str, rate: float, duration: float, ca: Path | None,
    values: Callable[[], Any], out: TextIO = sys.stderr,
) -> Stats:
    """Every device reports at ``rate / len(devices)`` per second (with jitter) for ``duration`` seconds."""
    stats = Stats()
    period = len(devices) / rate
    deadline = time.monotonic() + duration
    started = time.monotonic()

    def client(d: SimDevice) -> Any:
        if dialect == "huawei":
            return AsyncHuaweiDevice(endpoint, d.device_id, d.secret, ca_file=ca)
        return AsyncAliyunDevice(endpoint, d.product_key, d.device_name, d.secret, ca_file=ca)

    async def report(dev: Any) -> Awaitable[Any]:
        if dialect == "huawei":
            return await dev.report_properties(values())
        return await dev.post_properties(values())

    async def play(d: SimDevice) -> None:
        dev = client(d)
        try:
            await asyncio.sleep(random.uniform(0, period))
            while time.monotonic() < deadline:
                at = time.monotonic()
                stats.sent += 1
                try:
                    receipt = await report(dev)
                    stats.acked += 1
                    if getattr(receipt, "refused", ()):
                        stats.refused += 1
                    stats.latencies.append(time.monotonic() - at)
                except DeviceError as exc:
                    stats.errors[exc.code if exc.code is not None else type(exc).__name__] += 1
                await asyncio.sleep(max(0.0, period * random.uniform(0.9, 1.1) - (time.monotonic() - at)))
        finally:
            await dev.close()

    async def progress() -> None:
        while True:
            await asyncio.sleep(0.5)
            out.write("\r" + stats.line(time.monotonic() - started, duration))
            out.flush()

    ticker = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(play(d) for d in devices))
    finally:
        await cancel_and_wait(ticker)
        out.write("\r" + stats.line(time.monotonic() - started, duration) + "\n")
    return stats


def summary(stats: Stats, product_key: str, devices: int, duration: float) -> str:
    rows = [
        ("product", product_key),
        ("devices", str(devices)),
        ("sent", str(stats.sent)),
        ("acknowledged", str(stats.acked)),
        ("not acknowledged", str(stats.sent - stats.acked)),
        ("with refused properties", str(stats.refused)),
        ("errors by code", ", ".join(f"{c}: {n}" for c, n in sorted(stats.errors.items(), key=str)) or "none"),
        ("reports/s", f"{stats.acked / duration:.1f}" if duration else "-"),
        ("latency p50", f"{stats.percentile(0.5):.1f} ms"),
        ("latency p99", f"{stats.percentile(0.99):.1f} ms"),
    ]
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 32 + "+"
    body = "\n".join(f"| {k.ljust(width)} | {v.ljust(30)} |" for k, v in rows)
    return f"{line}\n{body}\n{line}"
