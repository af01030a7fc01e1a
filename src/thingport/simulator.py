"""A fleet simulator: N devices reporting at a total rate for a duration, through the device SDK.

It registers the devices it needs (or reuses them) through a local data dir or the management API, plays
the product's own thing model (or the one given, or seed 004's temperature/humidity collector for a new
product) with plausible values and events (``device/simulated.py``), shows live progress and ends with a
summary that counts what the server refused: the IoTDA reply names refused properties; the Alibaba
dialect's HTTP reply does not, so the Alink replies the server stored for the simulator's messages are read
back. Its exit code is non-zero when any report it sent was not acknowledged.
"""

import asyncio
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from thingport.cli_output import Progress
from thingport.core.thingmodel import ThingModel
from thingport.device import AsyncAliyunDevice, AsyncHuaweiDevice, DeviceError
from thingport.device.simulated import EventPost, SimulatedDevice
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

REPLY_PAGE = 1000  # stored messages read back per request (the API's and the log's page limit)
REPLY_LOOKBACK_MS = 60_000  # read back from this long before the run began (clocks of simulator and server)
PROGRESS_EVERY_S = 0.5  # redraws on a terminal
PROGRESS_LINE_EVERY_S = 5.0  # plain lines when the output is not a terminal (a log file)


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

    async def product_model(self, product_key: str) -> ThingModel:
        """The product's own compiled model (schemaless when it has none); NotFound or an HTTP error for an
        unknown product."""
        if self._api is not None:
            async with self._client() as api:
                reply = await api.get(f"/api/products/{product_key}/thing-model")
                reply.raise_for_status()
                document = reply.json()
        else:
            document = await self._with_management(lambda m: m.model_document(product_key))
        return ThingModel.from_document(document)

    async def stored_replies(self, product_key: str, message_ids: set[int], since_ms: int) -> dict[int, Any]:
        """The reply documents the server stored for ``message_ids`` (newest first, paging back to
        ``since_ms``): the Alink reply says what the model refused, which the HTTP reply does not."""
        found: dict[int, Any] = {}
        before: int | None = None
        while len(found) < len(message_ids):
            page = await self._message_page(product_key, since_ms, before)
            for message_id, reply in page[0]:
                if message_id in message_ids:
                    found[message_id] = reply
            if page[1] is None:
                break
            before = page[1]
        return found

    async def _message_page(self, product_key: str, since_ms: int,
                            before: int | None) -> tuple[list[tuple[int, Any]], int | None]:
        """One page of the product's log: (message id, reply) pairs and the ``before`` of the next page."""
        if self._api is not None:
            params: dict[str, Any] = {"productKey": product_key, "from": since_ms, "limit": REPLY_PAGE}
            if before is not None:
                params["before"] = before
            async with self._client() as api:
                reply = await api.get("/api/messages", params=params)
                reply.raise_for_status()
                doc = reply.json()
            nxt = doc.get("next")
            return [(int(m["messageId"]), m.get("reply")) for m in doc["items"]], int(nxt) if nxt else None
        messages = await self._with_management(
            lambda m: m.messages(product_key, None, None, since_ms, None, before, REPLY_PAGE)
        )
        pairs = [(m.message_id, json.loads(m.reply) if m.reply is not None else None) for m in messages]
        return pairs, messages[-1].seq if len(messages) == REPLY_PAGE else None

    async def _with_management(self, use: Callable[[Any], Awaitable[Any]]) -> Any:
        from thingport.runtime.bootstrap import build
        from thingport.settings import load_settings

        app = build(load_settings(data_dir=self._data_dir))
        try:
            return await use(app.management())
        finally:
            app.close()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self._api or "", headers={"Authorization": f"Bearer {self._key}"},
                                 timeout=30)

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
class Refusals:
    """What the model refused, grouped by property (or event parameter) and code, with a reason seen."""

    messages: int = 0  # acknowledged messages of which the model refused something (the rest was stored)
    counts: Counter = field(default_factory=Counter)
    reasons: dict[tuple[str, Any], str] = field(default_factory=dict)

    def note(self, refused: Iterable[dict[str, Any]]) -> None:
        """One message's refusals, as the Alink reply (identifier, code, reason) or the IoTDA one
        (service_id, property, reason) names them."""
        self.messages += 1
        for item in refused:
            identifier = item.get("identifier") or f"{item.get('service_id', '')}.{item.get('property', '')}"
            key = (str(identifier), item.get("code"))
            self.counts[key] += 1
            self.reasons.setdefault(key, str(item.get("reason", "")))

    def note_alink_reply(self, reply: Any) -> None:
        """A stored Alink reply: code 200 refused nothing; any other names its refusals in data.refused
        (or refused the whole document, with only a code and a message)."""
        if not isinstance(reply, dict) or reply.get("code") == 200:
            return
        data = reply.get("data")
        refused = data.get("refused") if isinstance(data, dict) else None
        if not refused:
            refused = [{"identifier": "(message)", "code": reply.get("code"), "reason": reply.get("message", "")}]
        self.note(refused)

    def rows(self) -> list[dict[str, Any]]:
        return [{"identifier": identifier, "code": code, "count": n, "reason": self.reasons[(identifier, code)]}
                for (identifier, code), n in self.counts.most_common()]


@dataclass
class Stats:
    sent: int = 0
    events: int = 0  # of the messages sent, event posts
    acked: int = 0
    unchecked: int = 0  # acknowledged Alink messages whose stored reply was not found (e.g. already deleted)
    refused: Refusals = field(default_factory=Refusals)
    errors: Counter = field(default_factory=Counter)
    error_messages: dict[str, str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    alink_ids: set[int] = field(default_factory=set)  # acknowledged, their replies read back after the run
    elapsed: float = 0.0

    @property
    def accepted(self) -> int:
        """Acknowledged with nothing refused."""
        return self.acked - self.refused.messages - self.unchecked

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    def line(self, elapsed: float, duration: float) -> str:
        done = min(1.0, elapsed / duration) if duration else 1.0
        bar = "#" * int(done * 20) + "-" * (20 - int(done * 20))
        errors = " ".join(f"{code}:{n}" for code, n in sorted(self.errors.items(), key=str)) or "none"
        refused = f" (with refused properties {self.refused.messages})" if self.refused.messages else ""
        return (f"[{bar}] {elapsed:5.1f}s sent {self.sent} acked {self.acked}{refused} errors {errors} "
                f"p50 {self.percentile(0.5):.1f}ms p99 {self.percentile(0.99):.1f}ms")


def _client(d: SimDevice, endpoint: str, dialect: str, ca: Path | None) -> Any:
    if dialect == "huawei":
        return AsyncHuaweiDevice(endpoint, d.device_id, d.secret, ca_file=ca)
    return AsyncAliyunDevice(endpoint, d.product_key, d.device_name, d.secret, ca_file=ca)


async def run_fleet(
    devices: list[SimDevice], endpoint: str, dialect: str, rate: float, duration: float, ca: Path | None,
    model: ThingModel, out: TextIO = sys.stderr,
) -> Stats:
    """Every device sends at ``rate / len(devices)`` per second (with jitter) for ``duration`` seconds what
    its simulated twin says next: property reports and now and then an event."""
    stats = Stats()
    period = len(devices) / rate
    deadline = time.monotonic() + duration
    started = time.monotonic()
    twins = [SimulatedDevice(model, dialect, random.Random()) for _ in devices]  # refuses an empty model first

    async def send(dev: Any, twin: SimulatedDevice) -> None:
        message = twin.next_message()
        if isinstance(message, EventPost):
            stats.events += 1
            stats.alink_ids.add(await dev.post_event(message.identifier, message.params))
        elif dialect == "huawei":
            receipt = await dev.report_properties(message.values)
            if receipt.refused:
                stats.refused.note(receipt.refused)
        else:
            stats.alink_ids.add(await dev.post_properties(message.values))

    async def play(d: SimDevice, twin: SimulatedDevice) -> None:
        dev = _client(d, endpoint, dialect, ca)
        try:
            await asyncio.sleep(random.uniform(0, period))
            while time.monotonic() < deadline:
                at = time.monotonic()
                stats.sent += 1
                try:
                    await send(dev, twin)
                    stats.acked += 1
                    stats.latencies.append(time.monotonic() - at)
                except DeviceError as exc:
                    code = str(exc.code) if exc.code is not None else type(exc).__name__
                    stats.errors[code] += 1
                    stats.error_messages.setdefault(code, str(exc))
                await asyncio.sleep(max(0.0, period * random.uniform(0.9, 1.1) - (time.monotonic() - at)))
        finally:
            await dev.close()

    shown = Progress(out, PROGRESS_EVERY_S, PROGRESS_LINE_EVERY_S)

    async def progress() -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            shown.update(stats.line(time.monotonic() - started, duration))

    ticker = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(play(d, twin) for d, twin in zip(devices, twins, strict=True)))
    finally:
        await cancel_and_wait(ticker)
        stats.elapsed = time.monotonic() - started
        shown.done(stats.line(stats.elapsed, duration))
    return stats


async def check_alink_replies(stats: Stats, registrar: Registrar, product_key: str, since_ms: int) -> None:
    """Count what the model refused in the Alibaba dialect, from the replies the server stored."""
    if not stats.alink_ids:
        return
    replies = await registrar.stored_replies(product_key, stats.alink_ids, since_ms)
    for reply in replies.values():
        stats.refused.note_alink_reply(reply)
    stats.unchecked = len(stats.alink_ids) - len(replies)


async def simulate(
    registrar: Registrar, product_key: str | None, model: ThingModel | None, count: int, prefix: str,
    endpoint: str, dialect: str, rate: float, duration: float, ca: Path | None, out: TextIO = sys.stderr,
) -> tuple[str, Stats]:
    """The whole run: which model to play (``model``; else the product's own; else, for a new product or
    one without a model, seed 004's collector), the devices, the fleet, then the refusals it met."""
    if model is None and product_key is not None:
        model = await registrar.product_model(product_key)
    if model is None or model.is_schemaless:
        model = ThingModel.from_tsl(SEED_004_TSL)
    SimulatedDevice(model, dialect)  # a model with nothing this dialect can send is refused before registering
    document = model.to_document()
    devices = await registrar.provision(product_key, document["model"], document["format"], count, prefix)
    out.write(f"simulating {len(devices)} {dialect} devices at {rate:g} messages/s for {duration:g} s\n")
    since_ms = int(time.time() * 1000) - REPLY_LOOKBACK_MS
    stats = await run_fleet(devices, endpoint, dialect, rate, duration, ca, model, out)
    await check_alink_replies(stats, registrar, devices[0].product_key, since_ms)
    return devices[0].product_key, stats


def summary_json(stats: Stats, product_key: str, devices: int, dialect: str, rate: float) -> dict[str, Any]:
    """``--json``: sent = accepted + refused.messages + unchecked + errors.messages."""
    return {
        "productKey": product_key,
        "dialect": dialect,
        "devices": devices,
        "sent": stats.sent,
        "events": stats.events,
        "accepted": stats.accepted,
        "refused": {"messages": stats.refused.messages, "properties": stats.refused.rows()},
        "unchecked": stats.unchecked,
        "errors": {"messages": stats.sent - stats.acked,
                   "codes": [{"code": code, "count": n, "message": stats.error_messages.get(code, "")}
                             for code, n in stats.errors.most_common()]},
        "rate": round(stats.sent / stats.elapsed, 2) if stats.elapsed else 0.0,
        "requestedRate": rate,
        "duration": round(stats.elapsed, 3),
        "latencyMs": {"p50": round(stats.percentile(0.5), 2), "p99": round(stats.percentile(0.99), 2)},
    }


def _refusal_cell(row: dict[str, Any]) -> str:
    code = "" if row["code"] is None else f" ({row['code']})"
    return f"{row['identifier']}{code}: {row['count']}"


def summary(stats: Stats, product_key: str, devices: int, duration: float) -> str:
    refusals = ", ".join(_refusal_cell(r) for r in stats.refused.rows()[:5]) or "none"
    rows = [
        ("product", product_key),
        ("devices", str(devices)),
        ("sent", str(stats.sent)),
        ("events sent", str(stats.events)),
        ("acknowledged", str(stats.acked)),
        ("not acknowledged", str(stats.sent - stats.acked)),
        ("accepted", str(stats.accepted)),
        ("with refused properties", str(stats.refused.messages)),
        ("refused properties", refusals),
        ("errors by code", ", ".join(f"{c}: {n}" for c, n in sorted(stats.errors.items(), key=str)) or "none"),
        ("messages/s", f"{stats.acked / duration:.1f}" if duration else "-"),
        ("latency p50", f"{stats.percentile(0.5):.1f} ms"),
        ("latency p99", f"{stats.percentile(0.99):.1f} ms"),
    ]
    if stats.unchecked:
        rows.insert(8, ("replies not found", str(stats.unchecked)))
    width = max(len(k) for k, _ in rows)
    value_width = max(30, *(len(v) for _, v in rows))
    line = "+" + "-" * (width + 2) + "+" + "-" * (value_width + 2) + "+"
    body = "\n".join(f"| {k.ljust(width)} | {v.ljust(value_width)} |" for k, v in rows)
    return f"{line}\n{body}\n{line}"
