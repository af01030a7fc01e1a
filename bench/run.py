"""Benchmark of the device endpoint over TLS with wrk: req/s, p50 and p99 per row, against a bare ASGI baseline.

Run with the project's Python (it imports thingport to sign /auth requests and share its certificate):

    .venv/bin/python bench/run.py            # full run: 10 s per row
    .venv/bin/python bench/run.py --quick    # smoke run: 2 s per row
    .venv/bin/python bench/run.py --write    # and record the run in BENCHMARKS.md
    .venv/bin/python bench/run.py --rows topic,auth --before-src /tmp/old/src   # before/after, same run

Rows are data (``ROWS``): a name, the server to target, the request and a connection mode. Adding a row
(another dialect, a validated property post, another storage setting) is adding an entry, and a server
to ``TARGETS`` if it needs its own process or settings. Every server is started on 127.0.0.1 only and
stopped in ``finally``; every wrk run is bounded by its duration.

Connection modes:
  keep-alive    one TLS connection carries many requests (what long-lived devices do)
  close         ``Connection: close`` and a full TLS handshake per request (what most device SDKs do).
                wrk would silently resume TLS sessions when it reconnects; a tiny LD_PRELOAD shim
                (compiled here with cc) drops the session so every handshake is full. The shim also
                counts wrk's handshakes and resumptions, which the table reports.
  close-resume  ``Connection: close`` with TLS session resumption (wrk's own behaviour)
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import http.client
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import uvicorn

from thingport.core.signing import aliyun_sign, huawei_password
from thingport.runtime.server import certificate_for
from thingport.runtime.tls import CERT_FILE, KEY_FILE
from thingport.settings import load_settings
from thingport.store.sqlite_db import db_path

HOST = "127.0.0.1"  # the only address ever targeted
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA_SCRIPT = BENCH_DIR / "wrk_request.lua"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
RUNS_MARKER = "<!-- bench/run.py --write inserts new runs below this line, newest first -->"

KEEP_ALIVE, CLOSE, CLOSE_RESUME = "keep-alive", "close", "close-resume"
MODES = (KEEP_ALIVE, CLOSE, CLOSE_RESUME)
SUCCESS = '"code":0,'

# ~100 bytes, a typical small device report
TOPIC_PAYLOAD = '{"id":"1024","temperature":21.5,"humidity":48.2,"voltage":3.31,"rssi":-67,"ts":1700000000000}'


# --- rows: what is measured -------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One measurement. ``path``, header values and ``body`` are string.Template texts filled from the
    target's variables ($pk, $dn, $token, $auth_body...), so rows need no code."""

    name: str
    target: str  # key of TARGETS
    mode: str  # one of MODES
    method: str = "POST"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    expect: str = SUCCESS  # substring every good reply contains (with status 200)
    reject: str = ""  # substring no good reply contains (e.g. a partial refusal in an otherwise 200 reply)
    messages: int = 1  # messages one request stores (a gateway batch stores one per sub-device)
    durable: bool = False  # each good reply must be backed by its stored messages (checked with Target.stored)
    goal: float | None = None  # the issue's target for req/s relative to the bare row of the same mode
    per_core_of: str = ""  # a multi-worker row: the one-worker row its req/s per core is compared with
    what: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}/{self.mode}"


def in_modes(modes: tuple[str, ...], **fields: object) -> list[Row]:
    return [Row(mode=mode, **fields) for mode in modes]  # type: ignore[arg-type]


def compact(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"))


# A product model of 20 properties (12 int with min/max, 4 double, 2 text, 1 bool, 1 enum) and one valid
# Alink property post setting all 20: every property goes through a compiled checker, history and latest.
def _tsl_property(identifier: str, data_type: dict) -> dict:
    return {"identifier": identifier, "name": identifier, "accessMode": "r", "required": False, "dataType": data_type}


TSL20 = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "placeholder"},
    "properties": [
        *[_tsl_property(f"i{n:02d}", {"type": "int", "specs": {"min": "-1000", "max": "100000", "step": "1"}})
          for n in range(1, 13)],
        *[_tsl_property(f"d{n}", {"type": "double", "specs": {"min": "-1000", "max": "1000", "step": "0.01"}})
          for n in range(1, 5)],
        _tsl_property("firmware", {"type": "text", "specs": {"length": "32"}}),
        _tsl_property("site", {"type": "text", "specs": {"length": "64"}}),
        _tsl_property("relay", {"type": "bool", "specs": {"0": "off", "1": "on"}}),
        _tsl_property("mode", {"type": "enum", "specs": {"0": "idle", "1": "run", "2": "fault"}}),
    ],
    "events": [],
    "services": [],
}
ALINK20_PARAMS: dict[str, object] = {
    **{f"i{n:02d}": 100 * n + 7 for n in range(1, 13)},
    "d1": 21.5, "d2": 48.25, "d3": 3.31, "d4": -67.5,
    "firmware": "1.4.2-build.117", "site": "north-hall/rack-03",
    "relay": 1, "mode": 1,
}
ALINK20_BODY = compact({"id": "1", "version": "1.0", "params": ALINK20_PARAMS, "method": "thing.event.property.post"})

# tests/dialects/test_huawei_https.py HUAWEI_MODEL: the IoTDA product model of the report below
IOTDA_MODEL = {
    "services": [
        {"service_id": "Environment", "service_type": "Environment", "properties": [
            {"property_name": "temperature", "data_type": "int", "required": False, "min": "-10", "max": "50",
             "method": "R"},
            {"property_name": "humidity", "data_type": "decimal", "required": False, "min": "0", "max": "100",
             "method": "R"},
        ]},
    ],
}
IOTDA_REPORT = compact({"services": [{"service_id": "Environment",
                                      "properties": {"temperature": 21, "humidity": 55.5}}]})
GATEWAY_CHILDREN = 50  # the IoTDA maximum per gateway batch

OCTET = (("Content-Type", "application/octet-stream"),)
JSON = (("Content-Type", "application/json"),)
TOPIC_PATH = "/topic/$pk/$dn/user/bench"
FLEET = 256  # devices the -d256 rows spread their requests over
RULES = 10  # rules on the product in the `topic-rules10` row
ALARMS = 10  # alarm definitions beside them in the `topic-rules10-alarms10` row
ROWS: list[Row] = [
    *in_modes(MODES, name="bare", target="bare", path=TOPIC_PATH, headers=OCTET,
              body=TOPIC_PAYLOAD, what="(a) raw ASGI app, same JSON reply, same uvicorn/TLS stack"),
    *in_modes((KEEP_ALIVE, CLOSE), name="bare-raw", target="bare-raw", path=TOPIC_PATH, headers=OCTET,
              body=TOPIC_PAYLOAD, what="a dialect doing nothing on the device endpoint's own protocol, same TLS"),
    # issue 8's second baseline: nginx answering the same JSON from memory, same certificate, TLS settings
    # and pinning as the servers (one worker process)
    *in_modes(MODES, name="nginx", target="nginx", path=TOPIC_PATH, headers=OCTET, body=TOPIC_PAYLOAD,
              what="nginx `return 200` with the bare app's JSON body, same certificate, TLS 1.2-1.3, session cache "
                   "and tickets, one worker process, access log off"),
    *[Row(name="topic", target="thingport", mode=mode, path=TOPIC_PATH, headers=(("password", "$token"), *OCTET),
          body=TOPIC_PAYLOAD, durable=True, goal=0.6 if mode == KEEP_ALIVE else None,
          what="(b) POST /topic: token, ACL, throttle, durable SQLite group commit") for mode in MODES],
    Row(name="topic-os", target="thingport-os", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
        what="(b) with `--durability os`: each commit written to the OS before the ack, not synced (synchronous="
             "NORMAL); against `topic`, what the fsync default costs"),
    # issue 8's supported TLS-terminating front: nginx (the `nginx` row's TLS settings) proxying to `topic`'s
    # server with THINGPORT_TLS_OFFLOAD=true over plain HTTP keep-alive, both on the server CPU
    *[Row(name="topic-nginx", target="thingport-nginx", mode=mode, path=TOPIC_PATH,
          headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
          what="(b) behind nginx: nginx terminates TLS (the `nginx` row's certificate, TLS settings, session cache "
               "and tickets, one worker) and proxies to `serve` with THINGPORT_TLS_OFFLOAD=true on a local port "
               "(plain HTTP, upstream keepalive 32); nginx and thingport pinned together, both counted as server CPU")
      for mode in MODES],
    # the same server with THINGPORT_TLS_ECDSA=true: wrk's OpenSSL offers ECDSA signatures, so every full
    # handshake is signed with the ECDSA P-256 key, not the RSA-2048 one (nginx's row stays RSA)
    Row(name="topic-ecdsa", target="thingport-ecdsa", mode=CLOSE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
        what="(b) with an ECDSA P-256 certificate served beside the RSA one (`tls_ecdsa`): wrk gets the ECDSA "
             "one; against `topic/close` this is what the RSA signature costs per full handshake"),
    *in_modes((KEEP_ALIVE, CLOSE), name="auth", target="thingport", path="/auth", headers=JSON, body="$auth_body",
              what="(c) POST /auth: signature check, session record, token issue"),
    # diagnostics, not ways to serve (bench/diag/diagnostic.py): the same server with the log's fsync or the
    # whole log write switched off, or the log swapped for a flat file; against `topic` and `bare` they split a
    # report's cost into its parts
    Row(name="topic-nofsync", target="diag-nofsync", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
        what="diagnostic: (b) with the log writer's commits not waiting for the disk (synchronous=OFF); "
             "topic minus this is what durability costs per report"),
    Row(name="topic-nostore", target="diag-nostore", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD,
        what="diagnostic: (b) acknowledged without writing the message; this minus bare is thingport's own "
             "request work (token, ACL, throttle, id, reply)"),
    Row(name="topic-filelog", target="diag-filelog", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD,
        what="diagnostic: (b) whose log is a flat file, one write and one fdatasync per group-commit batch, no "
             "SQL: the floor of a durable log in this process; this minus topic-nostore is the least any durable "
             "log costs per report here"),
    Row(name="alink20", target="alink", mode=KEEP_ALIVE, path="/topic/sys/$pk/$dn/thing/event/property/post",
        headers=(("password", "$token"), *OCTET), body=ALINK20_BODY, durable=True, goal=0.5,
        what="Alink property posts validated against a 20-property model (12 int with min/max, 4 double, "
             "2 text, 1 bool, 1 enum): all 20 set per post, stored with history and latest values"),
    *[Row(name="iotda-report", target="iotda", mode=mode, path="/v5/devices/$device_id/sys/properties/report",
          headers=(("access_token", "$hw_token"), *JSON), body=IOTDA_REPORT, expect='"message_id":',
          reject='"refused"', durable=True, goal=0.5 if mode == KEEP_ALIVE else None,
          what="IoTDA property report (access_token from /v5/device-auth) validated against an imported IoTDA "
               "product model (Environment: temperature int, humidity decimal)") for mode in MODES],
    *in_modes((KEEP_ALIVE, CLOSE), name="iotda-auth", target="iotda", path="/v5/device-auth", headers=JSON,
              body="$hw_auth_body", expect='"access_token":',
              what="(c) for IoTDA: POST /v5/device-auth (sign_type 0) of a device of its own (each token supersedes "
                   "the last), signature check, session record, token issue"),
    Row(name="iotda-gateway", target="iotda", mode=KEEP_ALIVE,
        path="/v5/devices/$gw_id/sys/gateway/sub-devices/properties/report",
        headers=(("access_token", "$gw_token"), *JSON), body="$gw_body", expect='"message_ids":[',
        reject='"refused"', messages=GATEWAY_CHILDREN, durable=True,
        what=f"IoTDA gateway batch: {GATEWAY_CHILDREN} sub-devices (2 properties each, no model) per request, "
             "one transaction; msgs/s = req/s x 50"),
    Row(name=f"topic-rules{RULES}", target="rules", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
        what=f"(b) with {RULES} rules on the product (issue 22), no subscription: one selects every report, "
             "reshaped, and forwards it to RabbitMQ (a durable queue bound); nine more are evaluated on every "
             "report and select nothing. Against `topic`: what rules cost the device path; the backlog (the "
             "furthest-behind rule's) is polled during and after the run"),
    Row(name=f"topic-rules{RULES}-alarms{ALARMS}", target="rules-alarms", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
        what=f"`topic-rules{RULES}` plus {ALARMS} alarm definitions on the product (issue 22: thresholds, a range, "
             "a duration, hysteresis, silence): the alarm evaluator reads every report after its own cursor too "
             "(a /user topic carries no model values, so it judges none: its cost is the reading and the "
             "look-up). The backlog is the furthest behind of the rules and the evaluator"),
    Row(name="topic-rabbitmq", target="forwarding", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True, goal=0.6,
        what="(b) with forwarding on: a rabbitmq subscription (kinds raw, publisher confirms, mandatory) on the "
             "product, a durable queue bound to its exchange; backlog polled during and after the run"),
    # production mode (issue 7): the /topic report path on PostgreSQL, one and two worker processes, and the
    # embedded SQLite default with two workers
    Row(name="topic-pg", target="pg1", mode=KEEP_ALIVE, path=TOPIC_PATH, headers=(("password", "$token"), *OCTET),
        body=TOPIC_PAYLOAD, durable=True,
        what="(b) on PostgreSQL (`serve --database postgresql://... --workers 1`, a fresh database migrated with "
             "`thingport db upgrade`): group commit into PostgreSQL on 127.0.0.1"),
    Row(name="topic-pg-os", target="pg1os", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
        what="`topic-pg` with `--durability os` (the writer's session at synchronous_commit=off)"),
    Row(name="topic-pg-w2", target="pg2", mode=KEEP_ALIVE, path=TOPIC_PATH, headers=(("password", "$token"), *OCTET),
        body=TOPIC_PAYLOAD, durable=True, per_core_of="topic-pg",
        what="`topic-pg` with `--workers 2`: two server processes on the device port (SO_REUSEPORT), both CPUs"),
    # issue 20: two instances (not one supervisor's workers) on one database, and the three spread over 32
    # devices (a fleet's load: one device's transactions wait for each other whatever the design)
    Row(name="topic-pg-2inst", target="pg2i", mode=KEEP_ALIVE, path=TOPIC_PATH,
        headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True, per_core_of="topic-pg",
        what="`topic-pg` on two thingport instances (bench/instance.py, each its own process and worker id) on one "
             "PostgreSQL database, the device port shared (SO_REUSEPORT), both CPUs"),
    *[Row(name=f"{name}-d{FLEET}", target=f"{target}d", mode=KEEP_ALIVE, path=TOPIC_PATH,
          headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
          per_core_of="" if target == "pg1" else f"topic-pg-d{FLEET}",
          what=f"`{name}` with its requests spread over {FLEET} devices of the product, in turn (BENCH_VARIANTS)")
      for name, target in (("topic-pg", "pg1"), ("topic-pg-w2", "pg2"), ("topic-pg-2inst", "pg2i"))],
    Row(name="topic-w2", target="sqlite2", mode=KEEP_ALIVE, path=TOPIC_PATH, headers=(("password", "$token"), *OCTET),
        body=TOPIC_PAYLOAD, durable=True, per_core_of="topic",
        what="(b) on the embedded SQLite default with `--workers 2`: two processes sharing one SQLite file, both CPUs"),
]
BASELINE = "bare"  # rows are compared with this row of the same mode
NGINX = "nginx"  # short-connection rows are also compared with this row of the same mode (issue 8: >= 0.8)
SHORT_GOAL = 0.8


# --- targets: the servers rows run against --------------------------------------------------------

@dataclass
class Target:
    """A server process to benchmark. Subclasses provision data and supply the rows' template variables.

    Each target gets its own data dir (a copy of the one certificate is put in it), so one target's
    messages, subscriptions or models never weigh on another's rows."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    workers = 1  # server processes; more than one get every CPU (see main)

    def skip_reason(self) -> str | None:
        """Why this target cannot run on this machine (its rows are then skipped and the report says why)."""
        return None

    def command(self, port: int, data_dir: Path) -> list[str]:
        raise NotImplementedError

    def helper_cpu(self) -> float | None:
        """CPU seconds used so far by processes outside the server's tree that work for it (PostgreSQL)."""
        return None

    def provision(self, data_dir: Path) -> None:
        """Before the server starts (once per run): create what its rows need."""

    def after_start(self, client: Client) -> None:
        """Once the server answers: e.g. obtain a token."""

    def variables(self) -> dict[str, str]:
        """Template variables for a row, computed just before it runs (so timestamps are fresh)."""
        return {"pk": "a1BenchPK01", "dn": "benchdev01"}

    def stored(self, data_dir: Path) -> int | None:
        """Messages stored durably so far (None when unknown), to cross-check acknowledged reports."""
        return None

    def fleet(self) -> list[dict[str, str]]:
        """Template variables per device when a row's requests are spread over several (each request takes
        the next device's path and token); empty: every request is the row's one request."""
        return []

    def verify(self, row: Row, data_dir: Path) -> None:
        """After a sanity request: check what the reply cannot show (raise BenchError)."""

    def probe(self, row: Row, data_dir: Path, server_pid: int, opts: Options) -> Probe | None:
        """Something to watch around the measured run (e.g. forwarding backlog), or None."""
        return None

    def cleanup(self) -> None:
        """After the whole run (also on failure): remove what provision created outside the data dir."""

    source: Path | None = None  # where the code it runs comes from when not this checkout's (--before-src)

    def twin(self, src: Path) -> Target:
        """This target again, served (and provisioned) by the code in ``src``, with resources of its own."""
        twin = copy.deepcopy(self)
        twin.name, twin.source = f"{self.name}-before", src
        path = os.pathsep.join(filter(None, [str(src), self.env.get("PYTHONPATH") or os.environ.get("PYTHONPATH", "")]))
        twin.env = {**self.env, "PYTHONPATH": path}
        return twin


class Probe:
    """Watches a row's measured run: ``prepare`` after the warm-up, ``start`` just before wrk, ``wrk_done``
    right after it, ``finish`` once the row's own figures are in (it may add notes or a failure)."""

    def prepare(self) -> None: ...

    def start(self) -> None: ...

    def wrk_done(self) -> None: ...

    def finish(self, result: Result) -> None: ...


class BareTarget(Target):
    raw = False  # the device endpoint's own protocol (bare-raw) rather than ASGI on uvicorn (bare)

    def command(self, port: int, data_dir: Path) -> list[str]:
        return [sys.executable, str(BENCH_DIR / "bare_app.py"), "--host", HOST, "--port", str(port),
                "--data-dir", str(data_dir), *(["--raw"] if self.raw else [])]


class BareRawTarget(BareTarget):
    raw = True


class ServeTarget(Target):
    """``python -m thingport serve`` (device endpoint on 127.0.0.1, management API on a free 127.0.0.1 port)."""

    database_url = ""  # PostgreSQL (production mode) when set; else the data dir's SQLite

    def command(self, port: int, data_dir: Path) -> list[str]:
        extra = ["--database", self.database_url] if self.database_url else []
        if self.workers > 1:
            extra += ["--workers", str(self.workers)]
        return [sys.executable, "-m", "thingport", "serve", "--host", HOST, "--port", str(port),
                "--api-host", HOST, "--api-port", str(free_port()), "--data-dir", str(data_dir), *extra]

    def cli_env(self) -> dict[str, str]:
        """Environment for the CLI's provisioning commands (the database they act on)."""
        return {"THINGPORT_DATABASE_URL": self.database_url} if self.database_url else {}

    def stored(self, data_dir: Path) -> int | None:
        try:
            with closing(sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True, timeout=5)) as conn:
                return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
        except sqlite3.Error:
            return None


class ThingportTarget(ServeTarget):
    """The real server with one product (optionally with a TSL thing model) and one Alink device."""

    def __init__(self, name: str, env: dict[str, str], tsl: dict | None = None) -> None:
        super().__init__(name, env)
        self.tsl = tsl
        self.product_key = ""
        self.device_name = "benchdev01"
        self.secret = ""
        self.token = ""

    def provision(self, data_dir: Path) -> None:
        model = []
        if self.tsl is not None:
            tsl_file = data_dir / "bench-tsl.json"
            tsl_file.write_text(json.dumps(self.tsl))
            model = ["--tsl", str(tsl_file)]
        env = self.cli_env()
        product = cli_json(data_dir, "product", "create", "--name", f"bench-{self.name}", *model, env=env)
        self.product_key = product["productKey"]
        device = cli_json(data_dir, "device", "create", "--product-key", self.product_key,
                          "--name", self.device_name, env=env)
        self.secret = device["deviceSecret"]

    def auth_body(self, device_name: str = "", secret: str = "") -> str:
        params = {"productKey": self.product_key, "deviceName": device_name or self.device_name,
                  "clientId": "bench-client-1", "timestamp": str(int(time.time() * 1000))}
        sign = aliyun_sign(secret or self.secret, params, "hmacsha256")
        return json.dumps({**params, "signmethod": "hmacsha256", "sign": sign}, separators=(",", ":"))

    def after_start(self, client: Client) -> None:
        self.token = self.authenticate(client, self.device_name, self.secret)

    def authenticate(self, client: Client, device_name: str, secret: str) -> str:
        status, body = client.request("POST", "/auth", {"Content-Type": "application/json"},
                                      self.auth_body(device_name, secret).encode())
        doc = json.loads(body)
        if status != 200 or doc.get("code") != 0:
            raise BenchError(f"/auth failed during setup: {status} {body[:200]!r}")
        return str(doc["info"]["token"])

    def variables(self) -> dict[str, str]:
        return {"pk": self.product_key, "dn": self.device_name, "token": self.token, "auth_body": self.auth_body()}


class AlinkTarget(ThingportTarget):
    """A product with the 20-property TSL. The device's HTTP reply is code 0 even when the model refuses
    properties (the Alink verdict is stored with the message), so ``verify`` reads the stored verdict."""

    def verify(self, row: Row, data_dir: Path) -> None:
        lines = cli_lines(data_dir, "messages", "tail", "--limit", "1")
        reply = json.loads(lines[-1]).get("reply") if lines else None
        if not isinstance(reply, dict) or reply.get("code") != 200:
            raise BenchError(f"{row.key}: the stored Alink verdict is not success: {reply!r}")
        status = cli_json(data_dir, "device", "status", "--product-key", self.product_key, "--name", self.device_name)
        values = {k: v.get("value") for k, v in status.get("properties", {}).items()}
        if values != ALINK20_PARAMS:
            raise BenchError(f"{row.key}: latest values {values!r} are not the posted ones")


class IotdaTarget(ServeTarget):
    """IoTDA devices: one of a product with an imported IoTDA model, and a gateway with 50 sub-devices."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        super().__init__(name, env)
        self.device: dict = {}
        self.gateway: dict = {}
        self.children: list[dict] = []
        self.auth_device: dict = {}
        self.tokens: dict[str, str] = {}

    def provision(self, data_dir: Path) -> None:
        product = cli_json(data_dir, "product", "create", "--name", "bench-iotda")
        model_file = data_dir / "bench-iotda-model.json"
        model_file.write_text(json.dumps(IOTDA_MODEL))
        cli_json(data_dir, "product", "model", "import", "--product-key", product["productKey"], str(model_file))
        self.device = cli_json(data_dir, "device", "create", "--product-key", product["productKey"],
                               "--name", "env-0001")
        # `iotda-auth` signs in as this one: every token it gets supersedes the last, which would end the
        # report rows' token 30 s later
        self.auth_device = cli_json(data_dir, "device", "create", "--product-key", product["productKey"],
                                    "--name", "auth-0001")
        gw_product = cli_json(data_dir, "product", "create", "--name", "bench-gw", "--node-type", "gateway")
        self.gateway = cli_json(data_dir, "device", "create", "--product-key", gw_product["productKey"],
                                "--name", "gateway-01")
        child_product = cli_json(data_dir, "product", "create", "--name", "bench-child")
        via = f"{self.gateway['productKey']}/{self.gateway['deviceName']}"
        self.children = [cli_json(data_dir, "device", "create", "--product-key", child_product["productKey"],
                                  "--name", f"child-{n:02d}", "--gateway", via)
                         for n in range(GATEWAY_CHILDREN)]

    @staticmethod
    def auth_body(device: dict) -> str:
        timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H")
        return compact({"device_id": device["deviceId"], "sign_type": 0, "timestamp": timestamp,
                        "password": huawei_password(device["deviceSecret"], timestamp)})

    def device_token(self, client: Client, device: dict) -> str:
        status, reply = client.request("POST", "/v5/device-auth", {"Content-Type": "application/json"},
                                       self.auth_body(device).encode())
        try:
            return str(json.loads(reply)["access_token"])
        except (ValueError, KeyError):
            raise BenchError(f"/v5/device-auth failed during setup: {status} {reply[:200]!r}") from None

    def after_start(self, client: Client) -> None:
        self.tokens = {"hw_token": self.device_token(client, self.device),
                       "gw_token": self.device_token(client, self.gateway)}

    def variables(self) -> dict[str, str]:
        batch = {"devices": [{"device_id": child["deviceId"],
                              "services": [{"service_id": "s", "properties": {"p1": 1, "p2": 2}}]}
                             for child in self.children]}
        return {"device_id": self.device.get("deviceId", ""), "gw_id": self.gateway.get("deviceId", ""),
                "gw_body": compact(batch), "hw_auth_body": self.auth_body(self.auth_device), **self.tokens}


RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DRAIN_LIMIT_S = 60.0  # the longest a row waits for forwarding to catch up


class ForwardingTarget(ThingportTarget):
    """The /topic server with a rabbitmq subscription on its product (created before the server starts).

    A durable exchange and a durable queue bound to all of it (``#``) are declared with aio-pika, so every
    envelope is really routed and enqueued (the subscription sets ``mandatory=true``: an unroutable message
    would fail its batch); the queue is purged between rows and deleted, with the exchange, at the end."""

    SUBSCRIPTION = "bench"
    LAGGING = "forwarding"  # what the probe's backlog measures, in its notes

    def __init__(self, name: str, env: dict[str, str]) -> None:
        super().__init__(name, env)
        suffix = f"{os.getpid()}-{int(time.time())}"
        self.exchange, self.queue = f"thingport-bench-{suffix}", f"thingport-bench-q-{suffix}"
        self.declared = False

    def twin(self, src: Path) -> Target:
        twin = super().twin(src)
        assert isinstance(twin, ForwardingTarget)
        twin.exchange, twin.queue = f"{self.exchange}-before", f"{self.queue}-before"
        return twin

    def provision(self, data_dir: Path) -> None:
        super().provision(data_dir)
        amqp(self.declare)
        self.declared = True
        cli_json(data_dir, "subscription", "create", "--name", self.SUBSCRIPTION, "--product-key", self.product_key,
                 "--sink", "rabbitmq", "--kinds", "raw", "--option", f"url={RABBITMQ_URL}",
                 "--option", f"exchange={self.exchange}", "--option", "mandatory=true")

    async def declare(self, channel: Any) -> None:
        import aio_pika

        exchange = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(self.queue, durable=True)
        await queue.bind(exchange, "#")

    def queue_depth(self) -> int:
        async def depth(channel: Any) -> int:
            queue = await channel.declare_queue(self.queue, passive=True)
            return int(queue.declaration_result.message_count or 0)

        return int(amqp(depth))

    def purge(self) -> None:
        async def purge(channel: Any) -> None:
            queue = await channel.declare_queue(self.queue, passive=True)
            await queue.purge()

        amqp(purge)

    def cleanup(self) -> None:
        if not self.declared:
            return

        async def delete(channel: Any) -> None:
            await channel.queue_delete(self.queue)
            await channel.exchange_delete(self.exchange)

        try:
            amqp(delete)
        except Exception as exc:  # noqa: BLE001 - best effort, but say so
            print(f"warning: could not delete RabbitMQ queue {self.queue} / exchange {self.exchange}: {exc}",
                  file=sys.stderr)

    def probe(self, row: Row, data_dir: Path, server_pid: int, opts: Options) -> Probe | None:
        return ForwardingProbe(self, data_dir, server_pid, opts)

    def cursor(self, conn: sqlite3.Connection) -> int:
        """How far forwarding is (the probe's backlog is the newest seq minus this), read from the database."""
        found = conn.execute("SELECT cursor FROM subscriptions WHERE name = ?", (self.SUBSCRIPTION,)).fetchone()
        if found is None:
            raise BenchError(f"subscription {self.SUBSCRIPTION} is gone")
        return int(found[0])

    def listed_backlog(self, data_dir: Path, pin: list[str]) -> int:
        """The backlog as the CLI shows it (`subscription list`): the yardstick."""
        out = subprocess.run([*pin, sys.executable, "-m", "thingport", "subscription", "list",
                              "--json", "--data-dir", str(data_dir)],
                             env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise BenchError(f"thingport subscription list failed: {out.stderr.strip()[-300:]}")
        found = [s for s in json.loads(out.stdout) if s.get("name") == self.SUBSCRIPTION]
        if not found or found[0].get("backlog") is None:
            raise BenchError(f"subscription list shows no backlog for {self.SUBSCRIPTION}: {out.stdout[:200]}")
        return int(found[0]["backlog"])

    def skip_reason(self) -> str | None:
        try:
            with socket.create_connection(("127.0.0.1", 5672), timeout=3):
                return None
        except OSError as exc:
            return f"RabbitMQ is not reachable at 127.0.0.1:5672: {exc}"


class RulesTarget(ForwardingTarget):
    """The /topic server with ``RULES`` rules on its product and no subscription (created before it starts).

    Rule 1 selects every report, reshaped (three fields renamed and computed, the device's name added), and
    forwards it to a RabbitMQ exchange with a durable queue bound, so every acknowledged report must reach the
    queue (checked); rules 2-10 are evaluated on every report too (same FROM, a WHERE on a different field or
    function each) but select nothing: what 10 active rules cost when one forwards. The backlog is the
    furthest-behind rule's."""

    LAGGING = "the rules"

    def provision(self, data_dir: Path) -> None:
        ThingportTarget.provision(self, data_dir)
        amqp(self.declare)
        self.declared = True
        topic = f"/{self.product_key}/+/user/bench"
        selective = ["temperature > 80", "humidity < 5", "voltage < 2.5", "rssi > -20", "temperature * 1.8 + 32 > 180",
                     "abs(rssi) < 10", "startswith(deviceName(), 'lab-')", "id = 'none'", "ts < 0"]
        statements = [f'SELECT round(temperature * 1.8 + 32, 1) AS fahrenheit, humidity AS rh, voltage, '
                      f'deviceName() AS dn, timestamp() AS at FROM "{topic}"']
        statements += [f'SELECT temperature, deviceName() AS dn FROM "{topic}" WHERE {where}' for where in selective]
        assert len(statements) == RULES
        for i, statement in enumerate(statements, start=1):
            sink = ["--sink", "rabbitmq", "--option", f"url={RABBITMQ_URL}", "--option", f"exchange={self.exchange}"]
            cli_json(data_dir, "rule", "create", "--name", f"bench-{i:02d}", "--statement", statement, *sink)

    def cursor(self, conn: sqlite3.Connection) -> int:
        found = conn.execute("SELECT count(*), min(cursor) FROM rules").fetchone()
        if found[0] != RULES:
            raise BenchError(f"{found[0]} rules, not {RULES}")
        return int(found[1])

    def listed_backlog(self, data_dir: Path, pin: list[str]) -> int:
        out = subprocess.run([*pin, sys.executable, "-m", "thingport", "rule", "list", "--json",
                              "--data-dir", str(data_dir)],
                             env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise BenchError(f"thingport rule list failed: {out.stderr.strip()[-300:]}")
        listed = json.loads(out.stdout)
        if len(listed) != RULES or any(r.get("backlog") is None or r.get("failed") for r in listed):
            raise BenchError(f"rule list shows not {RULES} rules with a backlog and no failures: {out.stdout[:300]}")
        return max(int(r["backlog"]) for r in listed)


class RulesAlarmsTarget(RulesTarget):
    """``RulesTarget`` with ``ALARMS`` alarm definitions on the product as well (what the issue asks to weigh:
    ingest with rules and alarms active against the same ingest with none)."""

    LAGGING = "the rules and the alarm evaluator"
    DEFINITIONS = (("hot", "critical", ["--when", "temperature > 80", "--clear-when", "temperature < 75"]),
                   ("cold", "major", ["--when", "temperature < -20"]),
                   ("dry", "minor", ["--when", "humidity < 5", "--for", "120"]),
                   ("wet", "minor", ["--when", "humidity > 98"]),
                   ("volts", "major", ["--when", "voltage outside [2.5, 4.2]"]),
                   ("weak", "warning", ["--when", "rssi < -110", "--for", "60"]),
                   ("strong", "warning", ["--when", "rssi > -10"]),
                   ("hotter", "critical", ["--when", "temperature >= 100"]),
                   ("drift", "warning", ["--when", "voltage inside [0, 1]"]),
                   ("silent", "major", ["--when", "silent"]))

    def provision(self, data_dir: Path) -> None:
        super().provision(data_dir)
        assert len(self.DEFINITIONS) == ALARMS
        for name, severity, condition in self.DEFINITIONS:
            cli_json(data_dir, "alarm", "define", "--product-key", self.product_key, "--name", name,
                     "--severity", severity, *condition)

    def cursor(self, conn: sqlite3.Connection) -> int:
        evaluator = conn.execute("SELECT cursor FROM alarm_cursor WHERE id = 1").fetchone()[0]
        return min(super().cursor(conn), int(evaluator))


def amqp(action: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``action(channel)`` on a fresh connection to the local RabbitMQ (bounded: 30 s)."""
    import aio_pika

    async def go() -> Any:
        connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
        async with connection:
            return await action(await connection.channel())

    try:
        return asyncio.run(asyncio.wait_for(go(), 30))
    except (OSError, TimeoutError) as exc:
        raise BenchError(f"RabbitMQ at {RABBITMQ_URL.split('@')[-1]} is not usable: {exc!r}") from None


@dataclass
class BacklogSample:
    at: float  # monotonic
    last_seq: int
    cursor: int

    @property
    def backlog(self) -> int:  # as `subscription list` computes it: newest log seq minus the cursor
        return max(0, self.last_seq - self.cursor)


class ForwardingProbe(Probe):
    """Forwarding lag around a measured run.

    The backlog is read two ways: `thingport subscription list --json` (the brief's yardstick; each call is
    a Python process costing ~0.4 s of CPU, so it runs every 2 s, on wrk's CPU) and, every 0.1 s, the same
    figure straight from the database (newest seq minus the subscription's cursor, a read-only SQLite
    connection), which gives the lag's shape and the drain time to ~0.1 s."""

    FAST_S, CLI_S = 0.1, 2.0

    def __init__(self, target: ForwardingTarget, data_dir: Path, server_pid: int, opts: Options) -> None:
        self.target, self.data_dir, self.pid, self.opts = target, data_dir, server_pid, opts
        self.samples: list[BacklogSample] = []
        self.cli_samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.t_start = self.t_stop = 0.0
        self.first = self.at_stop = self.drained = None
        self.drain_s: float | None = None
        self.cli_zero_s: float | None = None
        self.cpu_start: CpuSnapshot | None = None
        self.cpu_drained: CpuSnapshot | None = None
        self.rabbit_pid = broker_pid()
        self.rabbit_cpu: tuple[float, float] = (float("nan"), float("nan"))
        self.queue_before = 0

    def sample(self) -> BacklogSample:
        with closing(sqlite3.connect(f"file:{db_path(self.data_dir)}?mode=ro", uri=True, timeout=5)) as conn:
            last = conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
            cursor = self.target.cursor(conn)
        return BacklogSample(time.monotonic(), int(last), cursor)

    def cli_backlog(self) -> int:
        return self.target.listed_backlog(self.data_dir, self.opts.wrk_pin)

    def wait_for_zero(self, limit: float) -> BacklogSample | None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            s = self.sample()
            if s.backlog == 0:
                return s
            time.sleep(0.05)
        return None

    def prepare(self) -> None:
        """After the warm-up: let forwarding catch up, then empty the queue, so the run starts level."""
        if self.wait_for_zero(DRAIN_LIMIT_S) is None:
            raise BenchError(f"forwarding did not catch up with the warm-up within {DRAIN_LIMIT_S:.0f} s")
        self.target.purge()
        self.queue_before = self.target.queue_depth()

    def start(self) -> None:
        self.first = self.sample()
        self.t_start = self.first.at
        self.cpu_start = CpuSnapshot.take(self.pid)
        self.rabbit_start = process_cpu(self.rabbit_pid) if self.rabbit_pid else float("nan")

        def fast() -> None:
            while not self.stop_event.wait(self.FAST_S):
                try:
                    self.samples.append(self.sample())
                except (sqlite3.Error, BenchError):
                    pass

        def slow() -> None:
            while not self.stop_event.wait(self.CLI_S):
                try:
                    self.cli_samples.append((time.monotonic(), self.cli_backlog()))
                except (BenchError, OSError, subprocess.TimeoutExpired, ValueError):
                    pass

        self.threads = [threading.Thread(target=fast, daemon=True), threading.Thread(target=slow, daemon=True)]
        for t in self.threads:
            t.start()

    def wrk_done(self) -> None:
        self.at_stop = self.sample()
        self.t_stop = self.at_stop.at
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=65)
        self.drained = self.wait_for_zero(DRAIN_LIMIT_S)
        self.cpu_drained = CpuSnapshot.take(self.pid)
        rabbit_end = process_cpu(self.rabbit_pid) if self.rabbit_pid else float("nan")
        self.rabbit_cpu = (rabbit_end - self.rabbit_start, self.cpu_drained.wall - self.t_start)
        if self.drained is not None:
            self.drain_s = max(0.0, self.drained.at - self.t_stop)
            # the yardstick: subscription list must show 0 too (polled until it does, bounded)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                n = self.cli_backlog()
                self.cli_samples.append((time.monotonic(), n))
                if n == 0:
                    self.cli_zero_s = time.monotonic() - self.t_stop
                    break

    def finish(self, result: Result) -> None:
        assert self.first is not None and self.at_stop is not None
        during = [s for s in self.samples if s.at <= self.t_stop] + [self.at_stop]
        seconds = self.t_stop - self.t_start
        ingest = (self.at_stop.last_seq - self.first.last_seq) / seconds
        forwarded = (self.at_stop.cursor - self.first.cursor) / seconds
        peak = max(s.backlog for s in during)
        cli_during = [n for at, n in self.cli_samples if at <= self.t_stop]
        cli_peak = max(cli_during) if cli_during else None
        lag_at_stop = self.at_stop.backlog / ingest if ingest else 0.0
        keeps_up = self.drained is not None and forwarded >= 0.95 * ingest and lag_at_stop <= 1.0
        result.extra.update(ingest=ingest, forwarded=forwarded, peak=peak, at_stop=self.at_stop.backlog,
                            keeps_up=float(keeps_up),
                            drain_s=float("nan") if self.drain_s is None else self.drain_s)
        cli_max = "-" if cli_peak is None else f"{cli_peak:,}"
        what = self.target.LAGGING
        bits = [f"{what}: stored {ingest:,.0f} msg/s, {what} done with {forwarded:,.0f} msg/s during the run",
                f"max backlog during the run {peak:,} (0.1 s samples; `subscription list` every 2 s: "  # noqa: ISC004
                f"max {cli_max} over {len(cli_during)} calls)",
                f"backlog when wrk stopped {self.at_stop.backlog:,} (= {lag_at_stop:.2f} s of ingest)"]
        if self.drained is None:
            bits.append(f"backlog NOT back to 0 within {DRAIN_LIMIT_S:.0f} s after wrk stopped")
            result.failure = result.failure or f"forwarding did not drain within {DRAIN_LIMIT_S:.0f} s"
        else:
            bits.append(f"back to 0 {self.drain_s:.2f} s after wrk stopped"
                        + ("" if self.cli_zero_s is None else
                           f" (`subscription list` showed 0 at {self.cli_zero_s:.1f} s)"))
        if self.cpu_start and self.cpu_drained and result.requests:
            server = self.cpu_drained.server - self.cpu_start.server
            if result.good:
                bits.append(f"server CPU incl. the drain {server / result.good * 1e6:.0f} us/report")
        rabbit, wall = self.rabbit_cpu
        if not math.isnan(rabbit) and wall:
            bits.append(f"RabbitMQ (beam.smp) CPU {rabbit / wall:.0%} of a core over run + drain, unpinned")
        try:
            routed = self.target.queue_depth() - self.queue_before
            bits.append(f"{routed:,} envelopes in the bound queue")
            acked = result.good
            if self.drained is not None and routed < acked:
                result.failure = result.failure or f"{acked} reports acknowledged but only {routed} reached the queue"
            self.target.purge()
        except BenchError as exc:
            bits.append(f"queue not checked: {exc}")
        bits.append(f"{what}: " + ("KEEPS UP with" if keeps_up else "does NOT keep up with") + " the ingest rate")
        result.notes.extend(bits)


def broker_pid() -> int | None:
    """The local RabbitMQ node's pid (read from /proc, to report its CPU; nothing is done to it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == "beam.smp" and \
                        b"rabbit" in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found[0] if len(found) == 1 else None


PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"  # trust auth; databases are created from here


def drop_database(name: str) -> None:
    """Drop a benchmark's PostgreSQL database (best effort, but said when it fails)."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # noqa: BLE001 - best effort, but say so
        print(f"warning: could not drop PostgreSQL database {name}: {exc}", file=sys.stderr)


class PostgresTarget(ThingportTarget):
    """The /topic server on PostgreSQL: a fresh database per run (created through the ``test`` database,
    migrated with ``thingport db upgrade``, dropped at the end), ``--workers N``."""

    def __init__(self, name: str, env: dict[str, str], workers: int, devices: int = 1) -> None:
        super().__init__(name, env)
        self.workers = workers
        self.devices = devices  # more than one: the rows' requests are spread over them (``fleet``)
        self.others: list[tuple[str, str, str]] = []  # (name, secret, token) of the devices after the first
        self.db_name = f"bench_{os.getpid()}_{int(time.time())}_{name}"
        self.database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.db_name
        self.created = False

    def twin(self, src: Path) -> Target:
        twin = super().twin(src)
        assert isinstance(twin, PostgresTarget)
        twin.db_name = f"{self.db_name}_before"
        twin.database_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + twin.db_name
        return twin

    def skip_reason(self) -> str | None:
        try:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
                return None
        except Exception as exc:  # noqa: BLE001 - any reason is a reason to skip, and is reported
            return f"PostgreSQL at {PG_ADMIN_URL.split('@')[-1]} is not usable: {' '.join(str(exc).split())[:160]}"

    def provision(self, data_dir: Path) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.created = True
        out = subprocess.run([sys.executable, "-m", "thingport", "db", "upgrade", "--database", self.database_url,
                              "--json"], env=clean_env(), capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise BenchError(f"thingport db upgrade failed: {out.stderr.strip()[-300:]}")
        super().provision(data_dir)
        self.others = []
        if self.devices > 1:  # through the management layer in one process: a CLI process per device is slow
            names = [f"benchdev{i:03d}" for i in range(2, self.devices + 1)]
            out = subprocess.run([sys.executable, "-c", MAKE_DEVICES, str(data_dir), self.database_url,
                                  self.product_key, *names], env=clean_env(self.env), capture_output=True,
                                 text=True, timeout=300, check=False)
            if out.returncode != 0:
                raise BenchError(f"creating {len(names)} devices failed: {out.stderr.strip()[-300:]}")
            self.others = [(name, secret, "") for name, secret in json.loads(out.stdout)]

    def after_start(self, client: Client) -> None:
        super().after_start(client)
        self.others = [(name, secret, self.authenticate(client, name, secret)) for name, secret, _ in self.others]

    def fleet(self) -> list[dict[str, str]]:
        if not self.others:
            return []
        first = self.variables()
        return [first, *({**first, "dn": name, "token": token} for name, _, token in self.others)]

    def probe(self, row: Row, data_dir: Path, server_pid: int, opts: Options) -> Probe | None:
        return LockWaitProbe(self.db_name)

    def stored(self, data_dir: Path) -> int | None:
        import psycopg

        try:
            with psycopg.connect(self.database_url, connect_timeout=5) as conn:
                row = conn.execute("SELECT count(*) FROM messages").fetchone()
                return int(row[0]) if row else None
        except psycopg.Error:
            return None

    def helper_cpu(self) -> float | None:
        """The PostgreSQL backends connected to this run's database (their cmdline names it)."""
        total, marker = 0.0, f" {self.db_name} ".encode()
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ") + b" ":
                        total += process_cpu(int(proc.name))
                except OSError:
                    continue
        return total

    def cleanup(self) -> None:
        if self.created:
            drop_database(self.db_name)


# argv: data dir, database URL, product key, device names; prints [[name, secret], ...]
MAKE_DEVICES = """import asyncio, json, sys
from pathlib import Path
from thingport.runtime.bootstrap import build
from thingport.settings import load_settings
data_dir, url, product_key, *names = sys.argv[1:]
app = build(load_settings(data_dir=Path(data_dir), database_url=url))
async def main():
    m = app.management()
    return [[name, (await m.create_device(product_key, name)).secret] for name in names]
try:
    print(json.dumps(asyncio.run(main())))
finally:
    app.close()
"""


class PgInstancesTarget(PostgresTarget):
    """``topic-pg``'s server as two instances (bench/instance.py) on one database, started by one shell (the
    row's process tree holds both; SIGTERM stops both)."""

    def command(self, port: int, data_dir: Path) -> list[str]:
        def instance(index: int, api_port: int) -> str:
            return shlex.join([sys.executable, str(BENCH_DIR / "instance.py"), str(index), "--host", HOST,
                               "--port", str(port), "--api-host", HOST, "--api-port", str(api_port),
                               "--data-dir", str(data_dir), "--database", self.database_url])

        script = INSTANCES_SH.format(first=instance(0, free_port()), second=instance(1, free_port()))
        return ["/bin/sh", "-c", script]


INSTANCES_SH = """trap 'kill -TERM $a $b 2>/dev/null; wait' TERM INT
{first} &
a=$!
{second} &
b=$!
wait
"""


class LockWaitProbe(Probe):
    """How long batches wait for each other's locks, from PostgreSQL itself (so the same for any commit of
    thingport): every 2 ms during the measured run, the backends of the row's database waiting for a lock
    (``wait_event_type`` Lock: an advisory lock or another transaction's row) and those flushing WAL, and the
    write transactions committed (``pg_stat_database.xact_commit`` minus reads is unknowable, so: the
    transaction ids assigned in the run, cluster-wide). Mean waiters x run time = time spent waiting."""

    SQL = ("SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'),"
           " count(*) FILTER (WHERE wait_event IN ('WALSync', 'WALWrite', 'WALInsert')),"
           " count(*) FILTER (WHERE backend_xid IS NOT NULL)"
           " FROM pg_stat_activity WHERE datname = %s")

    def __init__(self, db_name: str) -> None:
        self.db_name = db_name
        self.samples: list[tuple[int, int, int]] = []
        self.xids = 0
        self.wall = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_xid = 0
        self._t0 = 0.0

    def _xid(self, conn: Any) -> int:
        return int(conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()[0])

    def start(self) -> None:
        import psycopg

        def sample() -> None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:  # not the row's database: not its CPU
                self._first_xid, self._t0 = self._xid(conn), time.monotonic()
                while not self._stop.wait(0.002):
                    self.samples.append(conn.execute(self.SQL, (self.db_name,)).fetchone())
                self.xids = self._xid(conn) - self._first_xid
                self.wall = time.monotonic() - self._t0

        self._thread = threading.Thread(target=sample, name="lock-wait", daemon=True)
        self._thread.start()

    def wrk_done(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def finish(self, result: Result) -> None:
        if not self.samples or not result.good:
            return
        n = len(self.samples)
        waiting, flushing, writing = (sum(s[i] for s in self.samples) / n for i in range(3))
        messages = result.good * result.row.messages
        bits = [f"lock wait: {waiting:.2f} backends waiting on average = {waiting * 1e6 / (messages / self.wall):.0f} "
                f"us/msg", f"in a write transaction {writing:.2f}, flushing WAL {flushing:.2f} on average"]
        if self.xids:
            per_batch = waiting * self.wall / self.xids * 1e6
            bits.append(f"{self.xids / self.wall:.0f} write transactions/s (cluster-wide), "
                        f"{messages / self.xids:.1f} msgs each, {per_batch:.0f} us lock wait and "
                        f"{writing * self.wall / self.xids * 1e6:.0f} us open per transaction")
        result.notes.append("; ".join(bits) + f" ({n} samples)")


class WorkersTarget(ThingportTarget):
    """The /topic server on the embedded SQLite default with ``--workers N``."""

    def __init__(self, name: str, env: dict[str, str], workers: int) -> None:
        super().__init__(name, env)
        self.workers = workers


NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
$upstream    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:BENCH:10m;
        ssl_session_tickets on;
$server_extra        location / {
$location        }
    }
}
"""
NGINX_RETURN = """            default_type application/json;
            return 200 '{body}';
"""
# topic-nginx: the README's production snippet (keep-alive to the gateway, IoTDA's access_token header kept)
NGINX_UPSTREAM = """    upstream thingport {{
        server 127.0.0.1:{port};
        keepalive 32;
    }}
"""
NGINX_PROXY = """            proxy_pass http://thingport;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $remote_addr;
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def nginx_command(port: int, data_dir: Path, location: str, upstream: str = "", server_extra: str = "") -> list[str]:
    """nginx on ``port`` from a config written under ``data_dir`` (TLS with the one certificate)."""
    prefix = data_dir / f"nginx-{port}"
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    cert, key = data_dir / CERT_FILE, data_dir / KEY_FILE  # main copies the one certificate there
    conf = string.Template(NGINX_CONF).substitute(prefix=prefix, port=port, cert=cert, key=key, location=location,
                                                  upstream=upstream, server_extra=server_extra)
    (prefix / "nginx.conf").write_text(conf)
    return [str(nginx_binary()), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")]


class NginxTarget(Target):
    """nginx answering the bare app's JSON from memory (``return 200``): issue 8's second baseline.

    One worker process, started through the same taskset as the servers (the worker inherits the pin);
    the same certificate; TLS 1.2-1.3 with a session cache and tickets (resumption, as thingport offers)."""

    def skip_reason(self) -> str | None:
        if nginx_binary() is None:
            return "nginx is not installed (apt-get install -y nginx)"
        return None

    def command(self, port: int, data_dir: Path) -> list[str]:
        from bare_app import BODY  # the same reply as the bare ASGI app

        return nginx_command(port, data_dir, NGINX_RETURN.format(body=BODY.decode()))


# Runs the gateway and nginx as children of one shell, so the row's process tree (its server CPU) holds both
# and both inherit the server's pin; SIGTERM stops both.
FRONT_SH = """trap 'kill -TERM $gw $ng 2>/dev/null; wait' TERM INT
{gateway} &
gw=$!
{nginx} &
ng=$!
wait
"""


class NginxFrontTarget(ThingportTarget):
    """``topic``'s server behind nginx: nginx terminates TLS (the ``nginx`` row's settings) and proxies over
    plain HTTP keep-alive to ``serve`` with THINGPORT_TLS_OFFLOAD=true on a free local port."""

    upstream_port = 0

    def skip_reason(self) -> str | None:
        return NginxTarget.skip_reason(self)  # type: ignore[arg-type]

    def command(self, port: int, data_dir: Path) -> list[str]:
        self.upstream_port = free_port()
        gateway = super().command(self.upstream_port, data_dir)
        front = nginx_command(port, data_dir, NGINX_PROXY, upstream=NGINX_UPSTREAM.format(port=self.upstream_port),
                              server_extra="        underscores_in_headers on;\n")
        script = FRONT_SH.format(gateway=shlex.join(gateway), nginx=shlex.join(front))
        return ["/bin/sh", "-c", script]

    def after_start(self, client: Client) -> None:
        deadline = time.monotonic() + 30  # nginx answers TLS before the gateway behind it listens
        while True:
            try:
                with socket.create_connection((HOST, self.upstream_port), timeout=1):
                    break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise BenchError(
                        f"thingport behind nginx did not listen on {self.upstream_port} within 30 s"
                    ) from exc
                time.sleep(0.1)
        super().after_start(client)


# The per-device and per-source limits (100 reports/s, 1 auth/s per device, 5 auth/s per address by default)
# would measure the throttle, not the server (unknown THINGPORT_* variables are ignored by older commits).
UNTHROTTLED = {
    "THINGPORT_DEVICE_REPORT_RATE": "1000000000",
    "THINGPORT_DEVICE_REPORT_BURST": "1000000000",
    "THINGPORT_DEVICE_AUTH_RATE": "1000000000",
    "THINGPORT_DEVICE_AUTH_BURST": "1000000000",
    "THINGPORT_SOURCE_AUTH_RATE": "1000000000",  # per source address: every wrk connection is 127.0.0.1
    "THINGPORT_SOURCE_AUTH_BURST": "1000000000",
}
DIAG_DIR = BENCH_DIR / "diag"


class DiagnosticTarget(ThingportTarget):
    """``topic``'s server with part of the durable write switched off: bench/diag/diagnostic.py ``mode``
    serves in place of ``thingport serve``, with the same options."""

    def __init__(self, name: str, mode: str) -> None:
        super().__init__(name, UNTHROTTLED)
        self.mode = mode

    def command(self, port: int, data_dir: Path) -> list[str]:
        serve = super().command(port, data_dir)
        return [sys.executable, str(DIAG_DIR / "diagnostic.py"), self.mode, *serve[serve.index("serve") + 1:]]


TARGETS: dict[str, Target] = {
    "bare": BareTarget("bare"),
    "bare-raw": BareRawTarget("bare-raw"),
    "thingport": ThingportTarget("thingport", UNTHROTTLED),
    "thingport-os": ThingportTarget("thingport-os", {**UNTHROTTLED, "THINGPORT_DURABILITY": "os"}),
    "thingport-ecdsa": ThingportTarget("thingport-ecdsa", {**UNTHROTTLED, "THINGPORT_TLS_ECDSA": "true"}),
    "diag-nofsync": DiagnosticTarget("diag-nofsync", "nofsync"),
    "diag-nostore": DiagnosticTarget("diag-nostore", "nostore"),
    "diag-filelog": DiagnosticTarget("diag-filelog", "filelog"),
    "alink": AlinkTarget("alink", UNTHROTTLED, tsl=TSL20),
    "iotda": IotdaTarget("iotda", UNTHROTTLED),
    "forwarding": ForwardingTarget("forwarding", UNTHROTTLED),
    "rules": RulesTarget("rules", UNTHROTTLED),
    "rules-alarms": RulesAlarmsTarget("rules-alarms", UNTHROTTLED),
    "pg1": PostgresTarget("pg1", UNTHROTTLED, workers=1),
    "pg1os": PostgresTarget("pg1os", {**UNTHROTTLED, "THINGPORT_DURABILITY": "os"}, workers=1),
    "pg2": PostgresTarget("pg2", UNTHROTTLED, workers=2),
    "pg2i": PgInstancesTarget("pg2i", UNTHROTTLED, workers=2),
    "pg1d": PostgresTarget("pg1d", UNTHROTTLED, workers=1, devices=FLEET),
    "pg2d": PostgresTarget("pg2d", UNTHROTTLED, workers=2, devices=FLEET),
    "pg2id": PgInstancesTarget("pg2id", UNTHROTTLED, workers=2, devices=FLEET),
    "sqlite2": WorkersTarget("sqlite2", UNTHROTTLED, workers=2),
    "nginx": NginxTarget("nginx"),
    "thingport-nginx": NginxFrontTarget("thingport-nginx", {**UNTHROTTLED, "THINGPORT_TLS_OFFLOAD": "true",
                                                             "THINGPORT_FORWARDED_ALLOW_IPS": "127.0.0.1"}),
}


# --- before and after in one run: rows served by a second source tree -----------------------------------

BEFORE = "@before"  # suffix of the rows (and targets) served by the --before-src tree


def source_dir(path: Path) -> Path:
    """The directory to put on PYTHONPATH for a source tree: ``path`` itself when it holds the ``thingport``
    package, or its ``src/`` (a checkout, a ``git archive`` of one, a worktree)."""
    for candidate in (path, path / "src"):
        if (candidate / "thingport" / "__init__.py").is_file():
            src = candidate.resolve()
            break
    else:
        raise SystemExit(f"--before-src {path}: neither it nor its src/ holds the thingport package")
    # what a server started with it first on PYTHONPATH imports (an install could take precedence)
    env = {**clean_env(), "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH", "")]))}
    out = subprocess.run([sys.executable, "-c", "import thingport; print(thingport.__file__)"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=30, check=False)
    if not Path(out.stdout.strip() or "/").resolve().is_relative_to(src):
        raise SystemExit(f"--before-src {path}: thingport is imported from {out.stdout.strip() or out.stderr[-200:]}, "
                         f"not from {src}")
    return src


def before_twins(rows: list[Row], src: Path, patterns: str | None) -> list[Row]:
    """A twin of each chosen row served by the code in ``src``: ``topic`` gets ``topic@before``, on a twin of
    its target (own data dir, provisioned and served with ``src`` first on PYTHONPATH). Baselines (bare,
    nginx) have none: they run no thingport code. Twin targets are added to TARGETS."""
    wanted = [p.strip() for p in patterns.split(",") if p.strip()] if patterns else None
    twins = []
    for row in rows:
        target = TARGETS[row.target]
        chosen = wanted is None or any(p in (row.name, row.key) for p in wanted)
        if not isinstance(target, ServeTarget) or not chosen:
            continue
        twin_name = row.target + BEFORE
        if twin_name not in TARGETS:
            TARGETS[twin_name] = target.twin(src)
        twins.append(replace(row, name=row.name + BEFORE, target=twin_name, goal=None,
                             per_core_of=row.per_core_of + BEFORE if row.per_core_of else "",
                             what=f"{row.what}; served by the code in {src}"))
    return twins


def round_order(targets: list[str], round_no: int) -> list[str]:
    """Targets in the order a round runs them: each twin next to its target, which of the two goes first
    alternating from round to round (so neither always gets the machine's first or second minute)."""
    order = []
    for name in targets:
        if name.endswith(BEFORE):
            continue
        pair = [name, name + BEFORE] if name + BEFORE in targets else [name]
        order.extend(pair if round_no % 2 else pair[::-1])
    return order


@contextmanager
def code_of(target: Target) -> Iterator[None]:
    """While a twin is provisioned and measured, the CLI commands run for it (``cli_json``, which copies
    this process's environment) run its code too: its PYTHONPATH in os.environ, restored after."""
    if target.source is None:
        yield
        return
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = target.env["PYTHONPATH"]
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def row_order(row: Row) -> float:
    """A row's place in the report: ROWS' order, each twin right after its row."""
    if row.name.endswith(BEFORE):
        return ROWS.index(next(r for r in ROWS if r.key == row.key.replace(BEFORE, "", 1))) + 0.5
    return ROWS.index(row)


def before_summary(results: list[Result]) -> list[str]:
    """Each row against its twin of the same run: after/before by req/s and by CPU per request."""
    lines = []
    for twin in results:
        if not twin.row.name.endswith(BEFORE):
            continue
        now = next((r for r in results if r.row.key == twin.row.key.replace(BEFORE, "", 1)), None)
        if now is None or now.failure or twin.failure or not twin.rps:
            continue
        text = (f"- {now.row.key}: {now.rps:,.0f} req/s now vs {twin.rps:,.0f} before = **{now.rps / twin.rps:.2f}**")
        if all(math.isfinite(total_us(r)) and total_us(r) for r in (now, twin)):
            text += (f"; server CPU per request {total_us(now):.0f} vs {total_us(twin):.0f} us = "
                     f"{total_us(twin) / total_us(now):.2f} (above 1: now is cheaper)")
        lines.append(text + paired(now, twin))
    return lines


# --- plumbing -------------------------------------------------------------------------------------

class BenchError(Exception):
    pass


def cli_json(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    out = subprocess.run([sys.executable, "-m", "thingport", *args, "--json", "--data-dir", str(data_dir)],
                         env=clean_env(env), capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        last = "\n".join(out.stderr.strip().splitlines()[-3:])
        raise BenchError(f"thingport {' '.join(args)} failed: {last}")
    return json.loads(out.stdout)


def cli_lines(data_dir: Path, *args: str) -> list[str]:
    """A CLI command printing one JSON document per line (e.g. ``messages tail --json``)."""
    out = subprocess.run([sys.executable, "-m", "thingport", *args, "--json", "--data-dir", str(data_dir)],
                         env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise BenchError(f"thingport {' '.join(args)} failed: {out.stderr.strip()[-300:]}")
    return [line for line in out.stdout.splitlines() if line.strip()]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without the caller's THINGPORT_* (a stray config file or limit would skew figures)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGPORT_")}
    env.update(extra or {})
    return env


class Client:
    """Sanity requests from Python, verifying the server's certificate; one connection per request."""

    def __init__(self, port: int, cafiles: tuple[Path, ...], tls_max: str | None) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(cafiles[0]))  # these only, not the system's
        for cafile in cafiles[1:]:  # the ECDSA certificate a tls_ecdsa server serves
            self.context.load_verify_locations(cafile=str(cafile))
        if tls_max == "1.2":
            self.context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.tls = ""

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(HOST, self.port, context=self.context, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            sock = conn.sock
            if isinstance(sock, ssl.SSLSocket):
                cipher = sock.cipher()
                self.tls = f"{sock.version()} {cipher[0] if cipher else ''}"
            return response.status, data
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_tls(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}; log:\n{tail(log)}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as raw, context.wrap_socket(raw):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"server did not accept TLS within {timeout:.0f} s; log:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running(target: Target, data_dir: Path, logs: Path, pin: list[str]) -> Iterator[tuple[int, int]]:
    """(port, pid) of the target's server, stopped (SIGTERM, then SIGKILL) however the block ends."""
    port = free_port()
    log = logs / f"{target.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*pin, *target.command(port, data_dir)], stdout=out, stderr=subprocess.STDOUT,
                                env=clean_env(target.env), cwd=REPO)
    try:
        wait_for_tls(port, proc, log)
        yield port, proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


# --- TLS shim for wrk: full handshakes in "close" mode, and handshake counts --------------------------

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *s, SSL_SESSION *session);
int SSL_session_reused(const SSL *s);
static unsigned long handshakes, resumed;
static int fresh;
__attribute__((constructor)) static void shim_init(void) {
    const char *v = getenv("BENCH_TLS_FRESH");
    fresh = v && v[0] == '1';
}
/* wrk reconnects with SSL_shutdown + SSL_clear on the same SSL object, which keeps the session and
   resumes it on the next SSL_connect; dropping it forces a full handshake, as a device SDK does. */
int SSL_clear(SSL *s) {
    static int (*real)(SSL *);
    if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    int r = real(s);
    if (fresh) SSL_set_session(s, NULL);
    return r;
}
int SSL_connect(SSL *s) {
    static int (*real)(SSL *);
    if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    int r = real(s);
    if (r == 1) {
        __atomic_add_fetch(&handshakes, 1, __ATOMIC_RELAXED);
        if (SSL_session_reused(s)) __atomic_add_fetch(&resumed, 1, __ATOMIC_RELAXED);
    }
    return r;
}
__attribute__((destructor)) static void shim_report(void) {
    fprintf(stdout, "BENCH_TLS {\"handshakes\":%lu,\"resumed\":%lu}\n", handshakes, resumed);
    fflush(stdout);
}
"""


def build_shim(workdir: Path) -> Path | None:
    """Compile the shim (None, with a warning, when there is no C compiler)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    source, lib = workdir / "wrk_tls_shim.c", workdir / "wrk_tls_shim.so"
    source.write_text(SHIM_C)
    out = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(source), "-ldl"],
                         capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        print(f"warning: could not build the wrk TLS shim: {out.stderr.strip()}", file=sys.stderr)
        return None
    return lib


# --- running a row ----------------------------------------------------------------------------------

@dataclass
class Result:
    row: Row
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    good: int = 0
    errors: int = 0
    handshakes: int | None = None
    resumed: int | None = None
    tcp_accepts: int | None = None
    stored: int | None = None
    sample: str = ""
    failure: str = ""
    server_us: float = float("nan")  # server CPU per good reply
    server_util: float = float("nan")  # server CPU seconds per second (1.0 = one core saturated)
    loop_us: float = float("nan")  # of server_us: the event-loop (main) threads' share
    helper_us: float = float("nan")  # CPU per good reply of the processes working for the server (PostgreSQL)
    helper_util: float = float("nan")
    workers: int = 1  # server processes
    wrk_util: float = float("nan")
    other_load: float = float("nan")  # cores busy with anything else (other processes, unattributed kernel work)
    rounds: list[Result] = field(default_factory=list)  # every round of this row, when repeated
    extra: dict[str, float] = field(default_factory=dict)  # a probe's figures (e.g. forwarding)
    notes: list[str] = field(default_factory=list)  # a probe's findings, for the checks

    @property
    def mps(self) -> float:
        """Messages stored per second (a gateway batch stores one per sub-device)."""
        return self.rps * self.row.messages

    @property
    def ok(self) -> bool:
        return not self.failure and self.errors == 0


@dataclass
class Options:
    duration: int
    warmup: int
    connections: int
    close_connections: int
    threads: int
    wrk_pin: list[str]
    shim: Path | None
    tls_max: str | None
    workdir: Path
    quiet_wait: float


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by the server (its whole process tree: ``--workers N`` runs N processes under
    a supervisor, nginx a worker under its master), by waited-for children (wrk), and by the whole machine."""

    server: float
    children: float
    machine: float
    wall: float
    loop: float = float("nan")  # the main threads alone (the event loops; the rest is SQLite/PostgreSQL threads)
    helper: float = float("nan")  # processes outside the tree working for the server (PostgreSQL backends)

    @classmethod
    def take(cls, server_pid: int, target: Target | None = None) -> CpuSnapshot:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        total, loops = tree_cpu(server_pid)
        helper = target.helper_cpu() if target is not None else None
        return cls(total, usage.ru_utime + usage.ru_stime, machine_busy(), time.monotonic(), loops,
                   float("nan") if helper is None else helper)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc's parent pids)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def tree_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds of the whole tree under ``pid``, of its processes' main threads only). A process that
    exits during a run takes its CPU time with it (none does while the servers run)."""
    total = loops = 0.0
    for member in process_tree(pid):
        cpu = process_cpu(member)
        if cpu == cpu:  # gone in between: skipped
            total += cpu
            main = process_cpu(member, f"task/{member}/stat")
            loops += main if main == main else 0.0
    return total, loops


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, which: str = "stat") -> float:
    """user + system CPU seconds of ``pid`` (all its threads, so the group-commit writer counts too), or
    of one of its threads with ``which="task/TID/stat"``."""
    try:
        fields = Path(f"/proc/{pid}/{which}").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError, IndexError):
        return float("nan")


def machine_busy() -> float:
    """Non-idle CPU seconds of all CPUs (to see other processes competing with the benchmark)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return (sum(values[:8]) - values[3] - values[4]) / TICKS  # minus idle and iowait
    except (OSError, ValueError, IndexError):
        return float("nan")


def wait_for_quiet(server_pid: int, limit: float, threshold: float = 0.15, target: Target | None = None) -> None:
    """Wait up to ``limit`` s until nothing but the idle server uses more than ``threshold`` cores.

    The machine may be shared (other people's test suites): a row measured while something else runs
    tells little. The wait is bounded; whatever load remains shows in the row's "other load".
    """
    deadline = time.monotonic() + limit
    while True:
        before = CpuSnapshot.take(server_pid, target)
        time.sleep(0.5)
        after = CpuSnapshot.take(server_pid, target)
        helper = after.helper - before.helper if after.helper == after.helper else 0.0
        other = (after.machine - before.machine - (after.server - before.server) - helper) / (after.wall - before.wall)
        if other < threshold or time.monotonic() >= deadline:
            return


def passive_opens() -> int | None:
    """TCP connections accepted in this network namespace (a cross-check of wrk's reconnects)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
        return int(lines[1][lines[0].index("PassiveOpens")])
    except (OSError, ValueError, IndexError):
        return None


def wrk_script(port: int, script: Path, env: dict[str, str], seconds: int, connections: int) -> dict[str, Any]:
    """wrk (one thread, keep-alive) driven by a Lua ``script`` that prints BENCH_RESULT (fleet_report.lua):
    that result, with every reply good (BenchError otherwise)."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"https://{HOST}:{port}/"],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise BenchError(f"wrk gave no result: {out.stdout[-300:]} {out.stderr[-300:]}")
    doc: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    if doc["bad"] or doc["errors"]:
        raise BenchError(f"wrk saw {doc['bad']} bad replies and {doc['errors']} errors")
    return doc


def fill_with(text: str, variables: dict[str, str]) -> str:
    return string.Template(text).substitute(variables)


def wrk(row: Row, port: int, path: str, headers: list[tuple[str, str]], body_file: Path, seconds: int,
        opts: Options, variants: str = "") -> dict:
    """One wrk run; returns BENCH_RESULT plus the shim's BENCH_TLS counts (and "sample")."""
    connections = opts.connections if row.mode == KEEP_ALIVE else opts.close_connections
    threads = max(1, min(opts.threads, connections))
    env = dict(os.environ)
    env.update({
        "BENCH_METHOD": row.method,
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers),
        "BENCH_BODY_FILE": str(body_file) if row.body else "",
        "BENCH_EXPECT": row.expect,
        "BENCH_REJECT": row.reject,
        "BENCH_TLS_FRESH": "1" if row.mode == CLOSE else "0",
        "BENCH_VARIANTS": variants,
    })
    if opts.shim:
        env["LD_PRELOAD"] = str(opts.shim)
    if opts.tls_max == "1.2":
        conf = opts.workdir / "wrk-openssl.cnf"
        conf.write_text("openssl_conf = init\n[init]\nssl_conf = ssl_sect\n[ssl_sect]\nsystem_default = sys\n"
                        "[sys]\nMaxProtocol = TLSv1.2\n")
        env["OPENSSL_CONF"] = str(conf)
    argv = [*opts.wrk_pin, "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "10s", "--latency", "-s", str(LUA_SCRIPT), f"https://{HOST}:{port}{path}"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    result: dict = {}
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result.update(json.loads(line.removeprefix("BENCH_RESULT ")))
        elif line.startswith("BENCH_TLS "):
            result.update(json.loads(line.removeprefix("BENCH_TLS ")))
        elif line.startswith("BENCH_SAMPLE "):
            result["sample"] = line.removeprefix("BENCH_SAMPLE ").strip()
    if out.returncode != 0 or "requests" not in result:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    return result


def run_row(row: Row, target: Target, port: int, pid: int, client: Client, data_dir: Path, opts: Options) -> Result:
    """Sanity request, warm-up, measured run, sanity request again; errors are counted, never hidden."""
    result = Result(row, workers=target.workers)
    variables = target.variables()

    def fill(text: str) -> str:
        return string.Template(text).substitute(variables)

    path = fill(row.path)
    headers = [(name, fill(value)) for name, value in row.headers]
    if row.mode != KEEP_ALIVE:
        headers.append(("Connection", "close"))
    body = fill(row.body).encode()
    variants = ""
    for per_device in target.fleet():  # the row's path and token header, once per device
        token = next((fill_with(value, per_device) for name, value in row.headers if "$token" in value), "")
        name = next((name for name, value in row.headers if "$token" in value), "")
        variants += f"{fill_with(row.path, per_device)}\t{name}: {token}\n"
    body_file = opts.workdir / "body.bin"
    body_file.write_bytes(body)

    def sanity(when: str) -> None:
        status, reply = client.request(row.method, path, dict(headers), body)
        if status != 200 or row.expect.encode() not in reply or (row.reject and row.reject.encode() in reply):
            raise BenchError(f"sanity request {when} {row.key} failed: {status} {reply[:200]!r}")
        target.verify(row, data_dir)

    probe = target.probe(row, data_dir, pid, opts)
    try:
        sanity("before")
        if opts.warmup:
            wrk(row, port, path, headers, body_file, opts.warmup, opts, variants)
        if probe:
            probe.prepare()
        if opts.quiet_wait:
            wait_for_quiet(pid, opts.quiet_wait, target=target)
        stored_before, opens_before = target.stored(data_dir), passive_opens()
        if probe:
            probe.start()
        cpu_before = CpuSnapshot.take(pid, target)
        measured = wrk(row, port, path, headers, body_file, opts.duration, opts, variants)
        cpu_after = CpuSnapshot.take(pid, target)
        stored_after, opens_after = target.stored(data_dir), passive_opens()
        if probe:
            probe.wrk_done()
        sanity("after")
    except (BenchError, OSError, subprocess.TimeoutExpired, sqlite3.Error) as exc:
        result.failure = str(exc)
        return result
    seconds = measured["duration_us"] / 1e6
    result.requests = measured["requests"]
    result.good = measured["good"]
    result.rps = measured["good"] / seconds if seconds else 0.0
    result.p50_ms = measured["p50_us"] / 1000
    result.p99_ms = measured["p99_us"] / 1000
    result.errors = measured["bad"] + sum(measured[k] for k in ("connect_errors", "read_errors", "write_errors",
                                                                "timeouts"))
    result.handshakes = measured.get("handshakes")
    result.resumed = measured.get("resumed")
    if opens_before is not None and opens_after is not None:
        result.tcp_accepts = opens_after - opens_before
    if stored_before is not None and stored_after is not None:
        result.stored = stored_after - stored_before
    result.sample = measured.get("sample", "")
    wall = cpu_after.wall - cpu_before.wall
    server = cpu_after.server - cpu_before.server
    wrk_cpu = cpu_after.children - cpu_before.children
    result.server_util = server / wall
    result.wrk_util = wrk_cpu / wall
    processes = len(process_tree(pid))
    if target.workers > 1:
        result.notes.append(f"{processes} server processes (supervisor + workers)")
        if processes < target.workers + 1:  # e.g. a server that accepts --workers but ignores it
            result.failure = f"--workers {target.workers} asked, but the server runs {processes} process(es)"
    helper = cpu_after.helper - cpu_before.helper  # nan when the target has no helper processes
    result.other_load = (cpu_after.machine - cpu_before.machine - server - wrk_cpu
                         - (helper if helper == helper else 0.0)) / wall
    if helper == helper and measured["good"]:
        result.helper_us = helper / measured["good"] * 1e6
        result.helper_util = helper / wall
        result.notes.append(f"PostgreSQL backends of this database: {helper / wall:.0%} of a core, "
                            f"{result.helper_us:.0f} us/req (unpinned; not in server CPU, not in other load)")
    result.server_us = server / measured["good"] * 1e6 if measured["good"] else float("nan")
    loop = cpu_after.loop - cpu_before.loop
    result.loop_us = loop / measured["good"] * 1e6 if measured["good"] else float("nan")
    if row.durable and result.stored is not None and result.stored < measured["good"] * row.messages:
        result.failure = (f"{measured['good']} replies acknowledged ({measured['good'] * row.messages} messages) "
                          f"but only {result.stored} messages stored")
    if probe:
        try:
            probe.finish(result)
        except (BenchError, OSError, subprocess.TimeoutExpired, sqlite3.Error) as exc:
            result.failure = result.failure or f"probe: {exc}"
    return result


# --- reporting --------------------------------------------------------------------------------------

def ratio_to_baseline(result: Result, results: list[Result], baseline: str = BASELINE) -> float | None:
    base = baseline_of(result, results, baseline)
    return result.rps / base.rps if base else None


def baseline_of(result: Result, results: list[Result], baseline: str = BASELINE) -> Result | None:
    return next((b for b in results if b.row.name == baseline and b.row.mode == result.row.mode and b.rps
                 and not b.failure), None)


def total_us(result: Result) -> float:
    """CPU per request of the server and of the processes working for it (PostgreSQL backends)."""
    return result.server_us + (result.helper_us if result.helper_us == result.helper_us else 0.0)


def cost_ratio(result: Result, results: list[Result], baseline: str = BASELINE) -> float | None:
    """Bare CPU per request / this row's (the noise-robust ratio: 1.0 = as cheap as the bare app). A row on
    PostgreSQL is charged its database backends' CPU too."""
    base = baseline_of(result, results, baseline)
    if base and base.server_us == base.server_us and result.server_us == result.server_us and result.server_us:
        return total_us(base) / total_us(result)
    return None


def table(results: list[Result]) -> str:
    """Markdown table (readable as plain text too)."""
    lines = [("| row | mode | req/s | msgs/s | p50 ms | p99 ms | errors | TLS handshakes (resumed) | server CPU | "
              "server CPU us/req | vs bare (req/s) | vs bare (CPU/req) | vs nginx (req/s) | target |"),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in results:
        goal = "-" if r.row.goal is None else f">= {r.row.goal}"
        if r.row.mode != KEEP_ALIVE and r.row.name not in (BASELINE, NGINX) and baseline_of(r, results, NGINX):
            goal = f">= {SHORT_GOAL} of nginx"
        if r.failure:
            lines.append(f"| {r.row.name} | {r.row.mode} | FAILED | | | | | | | | | | | {goal} |")
            continue
        ratio, cost = ratio_to_baseline(r, results), cost_ratio(r, results)
        vs_nginx = ratio_to_baseline(r, results, NGINX) if r.row.name != NGINX else None
        shakes = "n/a" if r.handshakes is None else f"{r.handshakes} ({r.resumed})"
        mps = f"{r.mps:,.0f}" if r.row.name not in (BASELINE, NGINX) else "-"
        cpu = f"{r.server_us:.0f}" + (f" + {r.helper_us:.0f} PG" if r.helper_us == r.helper_us else "")
        lines.append(f"| {r.row.name} | {r.row.mode} | {r.rps:,.0f} | {mps} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                     f"{r.errors} | {shakes} | {r.server_util:.0%} | {cpu} | {fmt(ratio)} | {fmt(cost)} | "
                     f"{fmt(vs_nginx)} | {goal} |")
    return "\n".join(lines)


def cluster_summary(results: list[Result]) -> list[str]:
    """Multi-worker rows against their one-worker row: req/s per core and CPU per request."""
    lines = []
    for r in results:
        one = next((o for o in results if o.row.name == r.row.per_core_of and o.row.mode == r.row.mode
                    and not o.failure and o.rps), None) if r.row.per_core_of else None
        if one is None or r.failure or not r.rps:
            continue
        per_core = r.rps / r.workers / one.rps
        cpu = total_us(one) / total_us(r) if total_us(r) else float("nan")
        lines.append(
            f"- {r.row.name} ({r.workers} workers) vs {one.row.name} (1): {r.rps:,.0f} vs {one.rps:,.0f} req/s = "
            f"x{r.rps / one.rps:.2f}; per core {r.rps / r.workers:,.0f} vs {one.rps:,.0f} req/s: **efficiency "
            f"{per_core:.2f}** by req/s; {cpu:.2f} by CPU per request ({total_us(one):.0f} vs {total_us(r):.0f} us, "
            f"{'server + PostgreSQL backends' if r.helper_us == r.helper_us else 'all server processes'}); "
            f"server processes used {r.server_util:.0%} of a core (wrk {r.wrk_util:.0%}"
            + (f", PostgreSQL {r.helper_util:.0%}" if r.helper_util == r.helper_util else "") + ")")
    return lines


def nginx_summary(results: list[Result]) -> list[str]:
    """Each mode's rows against nginx of the same mode; issue 8's target (>= 0.8) applies to short connections."""
    lines = []
    for r in results:
        if r.row.name == NGINX or r.failure or (r.row.mode == KEEP_ALIVE
                                                and r.row.name not in (BASELINE, "topic", "topic-nginx")):
            continue
        base = baseline_of(r, results, NGINX)
        if base is None:
            continue
        ratio, cost = r.rps / base.rps, cost_ratio(r, results, NGINX)
        text = (f"- {r.row.key}: {ratio:.2f} of nginx by req/s ({r.rps:,.0f} vs {base.rps:,.0f})"
                + ("" if cost is None else f", {cost:.2f} by server CPU per request ({base.server_us:.0f} vs "
                   f"{total_us(r):.0f} us)"))
        if r.row.mode != KEEP_ALIVE and r.row.name != BASELINE:
            text += f"; target >= {SHORT_GOAL}: **{'met' if ratio >= SHORT_GOAL else 'MISSED'}**"
            if cost is not None and (cost >= SHORT_GOAL) != (ratio >= SHORT_GOAL):
                text += f" (by CPU per request: {'met' if cost >= SHORT_GOAL else 'missed'})"
        lines.append(text + paired(r, base))
    return lines


def chart(results: list[Result], png: Path, title: str) -> str | None:
    """A PNG of req/s and p99 per row (matplotlib, the optional ``bench`` extra); None, or why there is none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]')"
    shown = [r for r in results if not r.failure and r.rps]
    if not shown:
        return "no chart: no row succeeded"
    colours = {KEEP_ALIVE: "tab:blue", CLOSE: "tab:orange", CLOSE_RESUME: "tab:green"}
    labels = [r.row.key for r in shown][::-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.38 * len(shown) + 1.6), sharey=True)
    for ax, values, name in ((ax1, [r.rps for r in shown][::-1], "requests/s (log scale; good replies only)"),
                             (ax2, [r.p99_ms for r in shown][::-1], "p99 latency, ms (log scale)")):
        bars = ax.barh(labels, values, color=[colours[r.row.mode] for r in shown][::-1])
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.grid(axis="x", which="both", alpha=0.3)
        for bar, value in zip(bars, values, strict=True):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:,.0f}" if value >= 100
                    else f" {value:.1f}", va="center", fontsize=8)
        ax.set_xlim(right=max(values) * 4)
    handles = [matplotlib.patches.Patch(color=c, label=m) for m, c in colours.items()
               if any(r.row.mode == m for r in shown)]
    ax2.legend(handles=handles, loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return None


def paired(result: Result, base: Result) -> str:
    """The ratio round by round (this row against its baseline of the same round), as median [min-max].

    The best rounds of two rows may come from different minutes of a machine whose speed drifts (a shared
    VM's bare app has measured 32-57 us per request within minutes); a round's own pair shares its minute."""
    rounds = zip(result.rounds, base.rounds, strict=False)  # equal (every row runs each round); not worth a crash
    pairs = [(r, b) for r, b in rounds if not r.failure and not b.failure and r.rps and b.rps]
    if len(pairs) < 2:
        return ""
    by_rps = sorted(r.rps / b.rps for r, b in pairs)
    by_cpu = sorted(total_us(b) / total_us(r) for r, b in pairs if total_us(r) == total_us(r) and total_us(r))
    text = f"; round by round ({len(pairs)} rounds): {statistics.median(by_rps):.2f} [{by_rps[0]:.2f}-{by_rps[-1]:.2f}]"
    if by_cpu:
        text += f" by req/s, {statistics.median(by_cpu):.2f} [{by_cpu[0]:.2f}-{by_cpu[-1]:.2f}] by CPU per request"
    return text


def summary(results: list[Result]) -> list[str]:
    """Each keep-alive row's ratio to bare, with its issue target (one server process), and extra verdicts."""
    lines = []
    for r in results:
        if r.row.mode != KEEP_ALIVE or r.row.name == BASELINE:
            continue
        if r.failure:
            lines.append(f"- {r.row.name}: FAILED ({r.failure[:160]})")
            continue
        ratio, cost = ratio_to_baseline(r, results), cost_ratio(r, results)
        base = baseline_of(r, results)
        if ratio is None or base is None:
            continue
        text = f"- {r.row.name}: {ratio:.2f} of bare by req/s"
        if cost is not None:
            text += f", {cost:.2f} by server CPU per request ({total_us(base):.0f} vs {total_us(r):.0f} us)"
        if r.row.goal is not None:
            verdict = "met" if ratio >= r.row.goal else "MISSED"
            text += f"; target >= {r.row.goal}: **{verdict}**"
            if cost is not None and (cost >= r.row.goal) != (ratio >= r.row.goal):
                text += f" (by CPU per request: {'met' if cost >= r.row.goal else 'missed'})"
        text += paired(r, base)
        if r.row.messages > 1:
            text += (f"; {r.mps:,.0f} messages/s ({r.row.messages} per request), "
                     f"{r.server_us / r.row.messages:.1f} us server CPU per message")
        if "keeps_up" in r.extra:
            text += (f"; forwarding {'keeps up' if r.extra['keeps_up'] else '**does not keep up**'}: "
                     f"{r.extra['forwarded']:,.0f} of {r.extra['ingest']:,.0f} msg/s forwarded during the run, "
                     f"max backlog {r.extra['peak']:,.0f}, back to 0 {r.extra['drain_s']:.2f} s after wrk stopped")
        lines.append(text)
    return lines


def machine(pinned: str, tls: str, data_fs: str) -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10,
                                     check=False).stdout.split(" [")[0]
    except (OSError, subprocess.TimeoutExpired):
        wrk_version = "?"
    return [
        ("host", f"{platform.node()} ({platform.system()} {platform.release()})"),
        ("thingport", git_state()),
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("Python", platform.python_version()),
        ("OpenSSL", ssl.OPENSSL_VERSION),
        ("stack", f"uvicorn {uvicorn.__version__}, httptools, uvloop; {wrk_version.strip()}"),
        ("TLS", tls),
        ("pinning", pinned),
        ("data dir filesystem", data_fs),
    ]


def git_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes (figures then describe those too)."""
    import thingport

    where = Path(thingport.__file__).resolve().parent.parent
    if where != REPO / "src":
        return f"imported from {where} (not this checkout's src/)"
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"commit {sha or '?'}" + (" + uncommitted changes in src/" if dirty else "")


def source_state(src: Path) -> str:
    """What a --before-src tree is: its git commit when it is a checkout (a `git archive` has none)."""
    if not any((d / ".git").exists() for d in (src, src.parent)):
        return "not a git checkout"
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not a git checkout"
    return f"commit {out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() else "not a git checkout"


def filesystem_of(path: Path) -> str:
    """Type of the filesystem holding ``path`` (fsync on tmpfs is free, which would flatter /topic)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1]
            if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) >= len(best):
                best, kind = mount, f"{parts[2]} ({parts[0]} on {mount})"
    except (OSError, IndexError):
        pass
    return kind


def write_benchmarks(section: str) -> None:
    header = (
        "# Benchmarks\n\n"
        "Written by `bench/run.py --write` (see bench/README.md). Figures depend on the machine: compare the\n"
        "ratios to the bare ASGI row, and absolute figures only within one section.\n\n"
        f"{RUNS_MARKER}\n"
    )
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else header
    if RUNS_MARKER not in text:
        text = text.rstrip("\n") + f"\n\n{RUNS_MARKER}\n"
    before, after = text.split(RUNS_MARKER, 1)
    older = "\n" + after.lstrip("\n") if after.strip() else ""
    BENCHMARKS_MD.write_text(f"{before}{RUNS_MARKER}\n\n{section.strip()}\n{older}")


# --- main -------------------------------------------------------------------------------------------

def select_rows(patterns: str | None) -> list[Row]:
    """Rows matching any comma-separated name or name/mode; each selected mode keeps its baseline row."""
    if not patterns:
        return list(ROWS)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [r for r in ROWS if any(p in (r.name, r.key) for p in wanted)]
    if not chosen:
        raise SystemExit(f"no row matches {patterns!r}; rows: {', '.join(r.key for r in ROWS)}")
    modes = {r.mode for r in chosen}
    return [r for r in ROWS if r in chosen or (r.name == BASELINE and r.mode in modes)]


def best_of(rounds: list[Result]) -> Result:
    """The round with the most req/s (interference only ever slows a round down); a failure wins."""
    failed = [r for r in rounds if r.failure]
    chosen = failed[0] if failed else max(rounds, key=lambda r: r.rps)
    chosen.rounds = rounds
    return chosen


def progress(result: Result) -> str:
    if result.failure:
        return "FAILED: " + result.failure
    extra = f" ({result.mps:,.0f} msgs/s)" if result.row.messages > 1 else ""
    if "keeps_up" in result.extra:
        e = result.extra
        extra += (f" [forwarded {e['forwarded']:,.0f}/{e['ingest']:,.0f} msg/s, max backlog {e['peak']:,.0f}, "
                  f"drained {e['drain_s']:.2f} s after]")
    return (f"{result.rps:,.0f} req/s{extra}, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms,"
            f" errors {result.errors}, server CPU {result.server_util:.0%} ({result.server_us:.0f} us/req),"
            f" wrk CPU {result.wrk_util:.0%},"
            f" other {result.other_load:.2f} cores")


def report(results: list[Result], info: list[tuple[str, str]], args: argparse.Namespace,
           skipped: dict[str, str] | None = None, png: Path | None = None, chart_note: str | None = None) -> str:
    """The run as a BENCHMARKS.md section."""
    notes = [f"- `{r.row.name}`: {r.row.what} (good reply: 200 with `{r.row.expect}`"
             + (f", without `{r.row.reject}`" if r.row.reject else "") + ")"
             for r in results if r is next(o for o in results if o.row.name == r.row.name)]
    checks = []
    for r in results:
        if r.failure:
            checks.append(f"- {r.row.key}: FAILED: {r.failure}")
            continue
        bits = [f"{r.requests} replies checked, {r.errors} bad",
                f"wrk CPU {r.wrk_util:.0%}, other load {r.other_load:.2f} cores",
                (f"server CPU per reply: event loop {r.loop_us:.0f} us + other threads "
                 f"{r.server_us - r.loop_us:.0f} us")]
        if r.handshakes is not None and r.requests:
            bits.append(f"{r.handshakes} TLS connections ({r.resumed} resumed) for {r.requests} replies "
                        f"= {r.handshakes / r.requests:.3f} per reply")
        elif r.tcp_accepts is not None:  # machine-wide count: other processes' connections show up too
            bits.append(f"{r.tcp_accepts} TCP connections accepted on this machine")
        if r.row.durable and r.stored is not None:
            bits.append(f"{r.stored} messages stored")
        bits.extend(r.notes)
        if len(r.rounds) > 1:
            bits.append("rounds " + " / ".join(f"{o.rps:,.0f}" for o in r.rounds) + " req/s")
            bad = sum(o.errors for o in r.rounds)
            if bad:
                bits.append(f"{bad} bad replies over all rounds")
            if any("keeps_up" in o.extra for o in r.rounds):
                bits.append("forwarding per round: " + " / ".join(
                    ("failed" if "keeps_up" not in o.extra else
                     f"{'keeps up' if o.extra['keeps_up'] else 'behind'} (max backlog {o.extra['peak']:,.0f}, "
                     f"drain {o.extra['drain_s']:.2f} s)") for o in r.rounds))
        if r.sample:
            bits.append(f"first bad reply: {r.sample}")
        checks.append(f"- {r.row.key}: " + "; ".join(bits))
    head = summary(results)
    cluster, vs_nginx, before = cluster_summary(results), nginx_summary(results), before_summary(results)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = (f"wrk -t{args.threads}, {args.connections} connections (keep-alive) / {args.close_connections} (close), "
            f"{args.duration} s per row after {args.warmup} s warm-up, best of {args.repeat} round(s); "
            "one server process unless the row says workers")
    skips = [f"- skipped: {', '.join(r.key for r in ROWS if r.target == name)}: {reason}"
             for name, reason in (skipped or {}).items()]
    if png is not None:
        shown = os.path.relpath(png, REPO) if png.resolve().is_relative_to(REPO) else str(png)
        picture = [chart_note or f"![req/s and p99 per row]({shown})", ""]
    else:
        picture = []
    pythonpath = os.environ.get("PYTHONPATH")
    command = " ".join([*([f"PYTHONPATH={pythonpath}"] if pythonpath else []), ".venv/bin/python", "bench/run.py",
                        *sys.argv[1:]])
    return "\n".join([
        f"## {now}: {dict(info)['CPU']}",
        "",
        *[f"- {k}: {v}" for k, v in info],
        f"- load: {load}",
        f"- command: `{command}`",
        *skips,
        "",
        table(results),
        "",
        *picture,
        *(["Ratio to bare, keep-alive, one server process (req/s; CPU per request is the noise-robust view):",
            *head, ""] if head else []),
        *(["Workers (this machine has 2 cores; per-core efficiency = N workers' req/s / N against 1 worker's):",
            *cluster, ""] if cluster else []),
        *(["Against nginx, same mode (issue 8: short connections >= 0.8 of nginx):", *vs_nginx, ""]
          if vs_nginx else []),
        *([f"Now against {BEFORE} (the same row served by the older code, same run, interleaved round by round):",
           *before, ""] if before else []),
        "Rows:",
        *notes,
        "",
        "Checks. Every reply is checked in wrk (status 200 and the row's expected text, see Rows) and req/s",
        "counts good replies only; msgs/s = req/s x messages per request; p50/p99",
        "exclude the TLS handshake (wrk starts a request's clock after connecting); server CPU is the server",
        "process tree's CPU time (all threads of all its processes) over the run, 100% = one core; other load =",
        "CPU time used by neither server nor wrk (nor the run's PostgreSQL backends), in cores:",
        *checks,
        "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark thingport over TLS with wrk (see bench/README.md).")
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per row [10]")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unrecorded load before each row [2]")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections, keep-alive rows [32]")
    parser.add_argument("--close-connections", type=int, default=8,
                        help="wrk connections, connection-per-request rows [8]")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads [1: wrk has one core when pinned]")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over all rows (servers restarted each round); the best round counts [1]")
    parser.add_argument("--quiet-wait", type=float, default=20,
                        help="before each row, wait up to this many seconds for other CPU load to stop [20]")
    parser.add_argument("--rows", help="comma-separated row names or name/mode to run (baselines are kept)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s per row, 1 s warm-up")
    parser.add_argument("--tls-max", choices=["1.2", "1.3"], default=None,
                        help="cap the client at TLS 1.2, as most device SDKs are [default: negotiate, i.e. 1.3]")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and wrk to separate CPUs")
    parser.add_argument("--write", action="store_true",
                        help=f"record the run in {BENCHMARKS_MD.name}, with a PNG chart in bench/charts/")
    parser.add_argument("--png", type=Path, default=None,
                        help="write the chart (req/s and p99 per row) here [with --write: bench/charts/bench-DATE.png]")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and server logs")
    parser.add_argument("--before-src", type=Path, default=None,
                        help="also run each selected thingport row as ROW@before, served by this source tree (a "
                             "`git archive` of an older commit, a worktree; the dir holding thingport/ or its "
                             "parent), interleaved with the current rows round by round")
    parser.add_argument("--before-rows", default=None,
                        help="with --before-src: only these comma-separated row names or name/mode get a twin "
                             "[every selected row served by thingport]")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 2, 1
    if min(args.duration, args.connections, args.close_connections, args.threads, args.repeat) < 1:
        parser.error("--duration, --connections, --close-connections, --threads and --repeat must be >= 1")

    # SIGTERM (or SIGINT, which a background shell ignores) stops the run through the same `finally` blocks
    # as an error: servers stopped, PostgreSQL databases dropped, RabbitMQ objects deleted, temp dir removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not shutil.which("wrk"):
        print("error: wrk is not installed; on Debian/Ubuntu: apt-get install -y wrk", file=sys.stderr)
        return 2
    rows = select_rows(args.rows)
    skipped = {name: reason for name in dict.fromkeys(r.target for r in rows)
               if (reason := TARGETS[name].skip_reason())}
    for name, reason in skipped.items():
        print(f"warning: skipping {', '.join(r.key for r in rows if r.target == name)}: {reason}", file=sys.stderr)
    rows = [r for r in rows if r.target not in skipped]
    before_src = source_dir(args.before_src) if args.before_src else None
    if before_src is not None:
        rows += before_twins(rows, before_src, args.before_rows)

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not args.no_pin and shutil.which("taskset") and len(cpus) >= 2:
        server_pin, wrk_pin = ["taskset", "-c", str(cpus[0])], ["taskset", "-c", str(cpus[1])]
        wide_pin = ["taskset", "-c", ",".join(map(str, cpus))]
        pinned = f"server on CPU {cpus[0]}, wrk on CPU {cpus[1]} (taskset)"
        if any(TARGETS[r.target].workers > 1 for r in rows):
            pinned += (f"; multi-worker servers on CPUs {','.join(map(str, cpus))} (sharing CPU {cpus[1]} with wrk); "
                       "PostgreSQL unpinned")
    else:
        server_pin, wrk_pin, wide_pin = [], [], []
        pinned = "none (" + ("--no-pin" if args.no_pin else "needs taskset and 2 CPUs") + ")"

    workdir = Path(tempfile.mkdtemp(prefix="thingport-bench-"))
    cert_dir = workdir / "cert"
    rounds: dict[str, list[Result]] = {}
    provisioned: set[str] = set()
    tls = "?"
    data_fs = filesystem_of(workdir)
    try:
        shim = build_shim(workdir)
        if shim is None:
            print("warning: no C compiler: 'close' rows will use TLS session resumption (wrk's default), "
                  "not full handshakes", file=sys.stderr)
        opts = Options(args.duration, args.warmup, args.connections, args.close_connections, args.threads,
                       wrk_pin, shim, args.tls_max, workdir, args.quiet_wait)
        # one certificate for every server, and one ECDSA certificate for those that serve it (topic-ecdsa)
        files = certificate_for(load_settings(data_dir=cert_dir, tls_ecdsa=True))
        assert files.ecdsa is not None
        print(f"thingport bench: {len(rows)} rows x {args.duration} s (+{args.warmup} s warm-up) x {args.repeat}"
              f" round(s); pinning: {pinned}")
        for round_no in range(1, args.repeat + 1):
            for target_name in round_order(list(dict.fromkeys(r.target for r in rows)), round_no):
                target = TARGETS[target_name]
                data_dir = workdir / f"data-{target_name}"  # each target its own database
                if target_name not in provisioned:
                    data_dir.mkdir()
                    for f in (files.cert, files.key, files.ecdsa.cert, files.ecdsa.key):  # where the server looks
                        shutil.copy2(f, data_dir / f.name)
                    provisioned.add(target_name)  # before provision: cleanup() then runs even if it fails
                    started = time.monotonic()
                    with code_of(target):
                        target.provision(data_dir)
                    print(f"  provisioned {target_name} in {time.monotonic() - started:.1f} s", flush=True)
                pin = wide_pin if target.workers > 1 else server_pin
                with code_of(target), running(target, data_dir, workdir, pin) as (port, pid):
                    client = Client(port, (files.cert, files.ecdsa.cert), args.tls_max)
                    target.after_start(client)
                    for row in (r for r in rows if r.target == target_name):
                        print(f"  [{round_no}] {row.key:<22} ", end="", flush=True)
                        result = run_row(row, target, port, pid, client, data_dir, opts)
                        rounds.setdefault(row.key, []).append(result)
                        tls = client.tls or tls
                        print(progress(result))
    except BenchError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    finally:
        for target_name in provisioned:
            with code_of(TARGETS[target_name]):
                TARGETS[target_name].cleanup()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    order = {mode: i for i, mode in enumerate(MODES)}
    results = sorted((best_of(rs) for rs in rounds.values()),
                     key=lambda r: (order[r.row.mode], row_order(r.row)))
    now = datetime.datetime.now(datetime.UTC)
    png = args.png or (REPO / "bench" / "charts" / f"bench-{now:%Y%m%d-%H%M}.png" if args.write else None)
    chart_note = None
    if png is not None:
        chart_note = chart(results, png, f"thingport bench {now:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    info = machine(pinned, tls, data_fs)
    if before_src is not None:
        info.append((f"rows marked {BEFORE}", f"served by the code in {before_src} ({source_state(before_src)})"))
    section = report(results, info, args, skipped, png, chart_note)
    print()
    print(section)
    if args.write:
        write_benchmarks(section)
        print(f"recorded in {BENCHMARKS_MD}" + (f" and {png}" if png is not None and chart_note is None else ""))
    return 0 if all(o.ok for r in results for o in r.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
