"""Benchmark of the device endpoint over TLS with wrk: req/s, p50 and p99 per row, against a bare ASGI baseline.

Run with the project's Python (it imports thingport to sign /auth requests and share its certificate):

    .venv/bin/python bench/run.py            # full run: 10 s per row
    .venv/bin/python bench/run.py --quick    # smoke run: 2 s per row
    .venv/bin/python bench/run.py --write    # and record the run in BENCHMARKS.md

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
import datetime
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import sqlite3
import ssl
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from thingport.core.signing import aliyun_sign
from thingport.server import certificate_for
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
    expect: str = SUCCESS  # substring every good reply contains
    durable: bool = False  # each good reply must be backed by a stored message (checked with Target.stored)
    what: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}/{self.mode}"


def in_modes(modes: tuple[str, ...], **fields: object) -> list[Row]:
    return [Row(mode=mode, **fields) for mode in modes]  # type: ignore[arg-type]


OCTET = (("Content-Type", "application/octet-stream"),)
ROWS: list[Row] = [
    *in_modes(MODES, name="bare", target="bare", path="/topic/$pk/$dn/user/bench", headers=OCTET,
              body=TOPIC_PAYLOAD, what="(a) raw ASGI app, same JSON reply, same uvicorn/TLS stack"),
    *in_modes(MODES, name="topic", target="thingport", path="/topic/$pk/$dn/user/bench",
              headers=(("password", "$token"), *OCTET), body=TOPIC_PAYLOAD, durable=True,
              what="(b) POST /topic: token, ACL, throttle, durable SQLite group commit"),
    *in_modes((KEEP_ALIVE, CLOSE), name="auth", target="thingport", path="/auth",
              headers=(("Content-Type", "application/json"),), body="$auth_body",
              what="(c) POST /auth: signature check, session record, token issue"),
]
BASELINE = "bare"  # rows are compared with this row of the same mode
RATIO_ROW = "topic"  # the figure: RATIO_ROW / BASELINE, keep-alive


# --- targets: the servers rows run against --------------------------------------------------------

@dataclass
class Target:
    """A server process to benchmark. Subclasses provision data and supply the rows' template variables."""

    name: str
    env: dict[str, str] = field(default_factory=dict)

    def command(self, port: int, data_dir: Path) -> list[str]:
        raise NotImplementedError

    def provision(self, data_dir: Path) -> None:
        """Before the server starts: create what its rows need."""

    def after_start(self, client: Client) -> None:
        """Once the server answers: e.g. obtain a token."""

    def variables(self) -> dict[str, str]:
        """Template variables for a row, computed just before it runs (so timestamps are fresh)."""
        return {"pk": "a1BenchPK01", "dn": "benchdev01"}

    def stored(self, data_dir: Path) -> int | None:
        """Messages stored durably so far (None when unknown), to cross-check acknowledged reports."""
        return None


class BareTarget(Target):
    def command(self, port: int, data_dir: Path) -> list[str]:
        return [sys.executable, str(BENCH_DIR / "bare_app.py"), "--host", HOST, "--port", str(port),
                "--data-dir", str(data_dir)]


class ThingportTarget(Target):
    """The real server: ``python -m thingport serve`` with one product and one device."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        super().__init__(name, env)
        self.product_key = ""
        self.device_name = "benchdev01"
        self.secret = ""
        self.token = ""

    def command(self, port: int, data_dir: Path) -> list[str]:
        return [sys.executable, "-m", "thingport", "serve", "--host", HOST, "--port", str(port),
                "--data-dir", str(data_dir)]

    def provision(self, data_dir: Path) -> None:
        product = cli_json(data_dir, "product", "create", "--name", "bench")
        self.product_key = product["productKey"]
        device = cli_json(data_dir, "device", "create", "--product-key", self.product_key,
                          "--name", self.device_name)
        self.secret = device["deviceSecret"]

    def auth_body(self) -> str:
        params = {"productKey": self.product_key, "deviceName": self.device_name, "clientId": "bench-client-1",
                  "timestamp": str(int(time.time() * 1000))}
        sign = aliyun_sign(self.secret, params, "hmacsha256")
        return json.dumps({**params, "signmethod": "hmacsha256", "sign": sign}, separators=(",", ":"))

    def after_start(self, client: Client) -> None:
        status, body = client.request("POST", "/auth", {"Content-Type": "application/json"},
                                      self.auth_body().encode())
        doc = json.loads(body)
        if status != 200 or doc.get("code") != 0:
            raise BenchError(f"/auth failed during setup: {status} {body[:200]!r}")
        self.token = doc["info"]["token"]

    def variables(self) -> dict[str, str]:
        return {"pk": self.product_key, "dn": self.device_name, "token": self.token, "auth_body": self.auth_body()}

    def stored(self, data_dir: Path) -> int | None:
        try:
            with closing(sqlite3.connect(f"file:{db_path(data_dir)}?mode=ro", uri=True, timeout=5)) as conn:
                return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
        except sqlite3.Error:
            return None


# The per-device limits (100 reports/s, 1 auth/s by default) would measure the throttle, not the server.
UNTHROTTLED = {
    "THINGPORT_DEVICE_REPORT_RATE": "1000000000",
    "THINGPORT_DEVICE_REPORT_BURST": "1000000000",
    "THINGPORT_DEVICE_AUTH_RATE": "1000000000",
    "THINGPORT_DEVICE_AUTH_BURST": "1000000000",
}
TARGETS: dict[str, Target] = {
    "bare": BareTarget("bare"),
    "thingport": ThingportTarget("thingport", UNTHROTTLED),
}


# --- plumbing -------------------------------------------------------------------------------------

class BenchError(Exception):
    pass


def cli_json(data_dir: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "thingport", *args, "--json", "--data-dir", str(data_dir)],
                         env=clean_env(), capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        last = "\n".join(out.stderr.strip().splitlines()[-3:])
        raise BenchError(f"thingport {' '.join(args)} failed: {last}")
    return json.loads(out.stdout)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without the caller's THINGPORT_* (a stray config file or limit would skew figures)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGPORT_")}
    env.update(extra or {})
    return env


class Client:
    """Sanity requests from Python, verifying the server's certificate; one connection per request."""

    def __init__(self, port: int, cafile: Path, tls_max: str | None) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(cafile))
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
                         capture_output=True, text=True, timeout=60)
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
    errors: int = 0
    handshakes: int | None = None
    resumed: int | None = None
    tcp_accepts: int | None = None
    stored: int | None = None
    sample: str = ""
    failure: str = ""
    server_us: float = float("nan")  # server CPU per good reply
    server_util: float = float("nan")  # server CPU seconds per second (1.0 = one core saturated)
    wrk_util: float = float("nan")
    other_load: float = float("nan")  # cores busy with anything else (other processes, unattributed kernel work)
    rounds: list[Result] = field(default_factory=list)  # every round of this row, when repeated

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
    """CPU seconds used so far by the server process, by waited-for children (wrk), and by the whole machine."""

    server: float
    children: float
    machine: float
    wall: float

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(process_cpu(server_pid), usage.ru_utime + usage.ru_stime, machine_busy(), time.monotonic())


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """user + system CPU seconds of ``pid`` (all its threads, so the group-commit writer counts too)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
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


def wait_for_quiet(server_pid: int, limit: float, threshold: float = 0.15) -> None:
    """Wait up to ``limit`` s until nothing but the idle server uses more than ``threshold`` cores.

    The machine may be shared (other people's test suites): a row measured while something else runs
    tells little. The wait is bounded; whatever load remains shows in the row's "other load".
    """
    deadline = time.monotonic() + limit
    while True:
        before = CpuSnapshot.take(server_pid)
        time.sleep(0.5)
        after = CpuSnapshot.take(server_pid)
        other = (after.machine - before.machine - (after.server - before.server)) / (after.wall - before.wall)
        if other < threshold or time.monotonic() >= deadline:
            return


def passive_opens() -> int | None:
    """TCP connections accepted in this network namespace (a cross-check of wrk's reconnects)."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
        return int(lines[1][lines[0].index("PassiveOpens")])
    except (OSError, ValueError, IndexError):
        return None


def wrk(row: Row, port: int, path: str, headers: list[tuple[str, str]], body_file: Path, seconds: int,
        opts: Options) -> dict:
    """One wrk run; returns BENCH_RESULT plus the shim's BENCH_TLS counts (and "sample")."""
    connections = opts.connections if row.mode == KEEP_ALIVE else opts.close_connections
    threads = max(1, min(opts.threads, connections))
    env = dict(os.environ)
    env.update({
        "BENCH_METHOD": row.method,
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in headers),
        "BENCH_BODY_FILE": str(body_file) if row.body else "",
        "BENCH_EXPECT": row.expect,
        "BENCH_TLS_FRESH": "1" if row.mode == CLOSE else "0",
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
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60)
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
    result = Result(row)
    variables = target.variables()
    fill = lambda text: string.Template(text).substitute(variables)  # noqa: E731
    path = fill(row.path)
    headers = [(name, fill(value)) for name, value in row.headers]
    if row.mode != KEEP_ALIVE:
        headers.append(("Connection", "close"))
    body = fill(row.body).encode()
    body_file = opts.workdir / "body.bin"
    body_file.write_bytes(body)

    def sanity(when: str) -> None:
        status, reply = client.request(row.method, path, dict(headers), body)
        if status != 200 or row.expect.encode() not in reply:
            raise BenchError(f"sanity request {when} {row.key} failed: {status} {reply[:200]!r}")

    try:
        sanity("before")
        if opts.warmup:
            wrk(row, port, path, headers, body_file, opts.warmup, opts)
        if opts.quiet_wait:
            wait_for_quiet(pid, opts.quiet_wait)
        stored_before, opens_before = target.stored(data_dir), passive_opens()
        cpu_before = CpuSnapshot.take(pid)
        measured = wrk(row, port, path, headers, body_file, opts.duration, opts)
        cpu_after = CpuSnapshot.take(pid)
        stored_after, opens_after = target.stored(data_dir), passive_opens()
        sanity("after")
    except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
        result.failure = str(exc)
        return result
    seconds = measured["duration_us"] / 1e6
    result.requests = measured["requests"]
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
    result.other_load = (cpu_after.machine - cpu_before.machine - server - wrk_cpu) / wall
    result.server_us = server / measured["good"] * 1e6 if measured["good"] else float("nan")
    if row.durable and result.stored is not None and result.stored < measured["good"]:
        result.failure = f"{measured['good']} replies acknowledged but only {result.stored} messages stored"
    return result


# --- reporting --------------------------------------------------------------------------------------

def ratio_to_baseline(result: Result, results: list[Result]) -> float | None:
    base = next((r for r in results if r.row.name == BASELINE and r.row.mode == result.row.mode and r.rps), None)
    return result.rps / base.rps if base else None


def table(results: list[Result]) -> str:
    """Markdown table (readable as plain text too)."""
    lines = ["| row | mode | req/s | p50 ms | p99 ms | errors | TLS handshakes (resumed) | server CPU | "
             "server CPU us/req | vs bare (req/s) | vs bare (CPU/req) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        if r.failure:
            lines.append(f"| {r.row.name} | {r.row.mode} | FAILED | | | | | | | | |")
            continue
        ratio = ratio_to_baseline(r, results)
        base = next((b for b in results if b.row.name == BASELINE and b.row.mode == r.row.mode and b.rps), None)
        cost = f"{base.server_us / r.server_us:.2f}" if base and r.server_us else "-"
        shakes = "n/a" if r.handshakes is None else f"{r.handshakes} ({r.resumed})"
        lines.append(f"| {r.row.name} | {r.row.mode} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                     f"{r.errors} | {shakes} | {r.server_util:.0%} | {r.server_us:.0f} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}'} | {cost} |")
    return "\n".join(lines)


def headline(results: list[Result]) -> str | None:
    row = next((r for r in results if r.row.name == RATIO_ROW and r.row.mode == KEEP_ALIVE and not r.failure), None)
    ratio = ratio_to_baseline(row, results) if row else None
    if ratio is None:
        return None
    verdict = "meets" if ratio >= 0.6 else "MISSES"
    text = f"(b)/(a) keep-alive = {ratio:.2f} req/s ({verdict} the 0.6 target on one worker)"
    base = next((r for r in results if r.row.name == BASELINE and r.row.mode == KEEP_ALIVE), None)
    if base and base.server_us and row.server_us:  # noise-robust view: CPU per request, not req/s
        text += (f"; by server CPU per request {base.server_us:.0f} us vs {row.server_us:.0f} us = "
                 f"{base.server_us / row.server_us:.2f}")
    return text


def machine(pinned: str, tls: str, data_fs: str) -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10).stdout.split(" [")[0]
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
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"commit {sha or '?'}" + (" + uncommitted changes in src/" if dirty else "")


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
    return (f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, errors {result.errors},"
            f" server CPU {result.server_util:.0%} ({result.server_us:.0f} us/req), wrk CPU {result.wrk_util:.0%},"
            f" other {result.other_load:.2f} cores")


def report(results: list[Result], info: list[tuple[str, str]], args: argparse.Namespace) -> str:
    """The run as a BENCHMARKS.md section."""
    notes = [f"- `{r.row.name}`: {r.row.what}" for r in results
             if r is next(o for o in results if o.row.name == r.row.name)]
    checks = []
    for r in results:
        if r.failure:
            checks.append(f"- {r.row.key}: FAILED: {r.failure}")
            continue
        bits = [f"{r.requests} replies checked, {r.errors} bad",
                f"wrk CPU {r.wrk_util:.0%}, other load {r.other_load:.2f} cores"]
        if r.handshakes is not None and r.requests:
            bits.append(f"{r.handshakes} TLS connections ({r.resumed} resumed) for {r.requests} replies "
                        f"= {r.handshakes / r.requests:.3f} per reply")
        elif r.tcp_accepts is not None:  # machine-wide count: other processes' connections show up too
            bits.append(f"{r.tcp_accepts} TCP connections accepted on this machine")
        if r.row.durable and r.stored is not None:
            bits.append(f"{r.stored} messages stored")
        if len(r.rounds) > 1:
            bits.append("rounds " + " / ".join(f"{o.rps:,.0f}" for o in r.rounds) + " req/s")
            bad = sum(o.errors for o in r.rounds)
            if bad:
                bits.append(f"{bad} bad replies over all rounds")
        if r.sample:
            bits.append(f"first bad reply: {r.sample}")
        checks.append(f"- {r.row.key}: " + "; ".join(bits))
    head = headline(results)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = (f"wrk -t{args.threads}, {args.connections} connections (keep-alive) / {args.close_connections} (close), "
            f"{args.duration} s per row after {args.warmup} s warm-up, best of {args.repeat} round(s); "
            "one server process")
    return "\n".join([
        f"## {now}: {dict(info)['CPU']}",
        "",
        *[f"- {k}: {v}" for k, v in info],
        f"- load: {load}",
        f"- command: `{' '.join(['.venv/bin/python', 'bench/run.py', *sys.argv[1:]])}`",
        "",
        table(results),
        "",
        *([f"**{head}**", ""] if head else []),
        "Rows:",
        *notes,
        "",
        "Checks. Every reply's body is checked for `\"code\":0,` and req/s counts good replies only; p50/p99",
        "exclude the TLS handshake (wrk starts a request's clock after connecting); server CPU is the server",
        "process's CPU time (all threads) over the run, 100% = its one core; other load = CPU time used by",
        "neither server nor wrk (other processes, kernel), in cores:",
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
    parser.add_argument("--write", action="store_true", help=f"record the run in {BENCHMARKS_MD.name}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and server logs")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 2, 1
    if min(args.duration, args.connections, args.close_connections, args.threads, args.repeat) < 1:
        parser.error("--duration, --connections, --close-connections, --threads and --repeat must be >= 1")

    if not shutil.which("wrk"):
        print("error: wrk is not installed; on Debian/Ubuntu: apt-get install -y wrk", file=sys.stderr)
        return 2
    rows = select_rows(args.rows)

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not args.no_pin and shutil.which("taskset") and len(cpus) >= 2:
        server_pin, wrk_pin = ["taskset", "-c", str(cpus[0])], ["taskset", "-c", str(cpus[1])]
        pinned = f"server on CPU {cpus[0]}, wrk on CPU {cpus[1]} (taskset)"
    else:
        server_pin, wrk_pin = [], []
        pinned = "none (" + ("--no-pin" if args.no_pin else "needs taskset and 2 CPUs") + ")"

    workdir = Path(tempfile.mkdtemp(prefix="thingport-bench-"))
    data_dir = workdir / "data"
    rounds: dict[str, list[Result]] = {}
    tls = "?"
    data_fs = filesystem_of(workdir)
    try:
        shim = build_shim(workdir)
        if shim is None:
            print("warning: no C compiler: 'close' rows will use TLS session resumption (wrk's default), "
                  "not full handshakes", file=sys.stderr)
        opts = Options(args.duration, args.warmup, args.connections, args.close_connections, args.threads,
                       wrk_pin, shim, args.tls_max, workdir, args.quiet_wait)
        files = certificate_for(load_settings(data_dir=data_dir))  # one certificate for every server
        print(f"thingport bench: {len(rows)} rows x {args.duration} s (+{args.warmup} s warm-up) x {args.repeat}"
              f" round(s); pinning: {pinned}")
        provisioned: set[str] = set()
        for round_no in range(1, args.repeat + 1):
            for target_name in dict.fromkeys(r.target for r in rows):
                target = TARGETS[target_name]
                if target_name not in provisioned:
                    target.provision(data_dir)
                    provisioned.add(target_name)
                with running(target, data_dir, workdir, server_pin) as (port, pid):
                    client = Client(port, files.cert, args.tls_max)
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
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    order = {mode: i for i, mode in enumerate(MODES)}
    results = sorted((best_of(rs) for rs in rounds.values()),
                     key=lambda r: (order[r.row.mode], ROWS.index(r.row)))
    section = report(results, machine(pinned, tls, data_fs), args)
    print()
    print(section)
    if args.write:
        write_benchmarks(section)
        print(f"recorded in {BENCHMARKS_MD}")
    return 0 if all(o.ok for r in results for o in r.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
