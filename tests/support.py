"""Test helpers: a real thingport server (subprocess or in-process thread) and an HTTPS device client."""

import asyncio
import contextlib
import http.client
import inspect
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner

from thingport.cli import main as cli_main
from thingport.core.signing import aliyun_sign

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout: float = 5.0, interval: float = 0.02,
               ignore: tuple[type[BaseException], ...] = (), accept: Callable[[T], object] = bool) -> T:
    """Poll ``condition()`` until its value is accepted (truthy, or ``accept(value)``) and return that value: a
    test waits for what it then asserts (a change reaching a server, a state flipping) for as long as it takes
    and no longer, instead of sleeping a guess. Fails naming ``what`` was awaited, with the last value, after
    ``timeout`` seconds. An exception of a type in ``ignore`` counts as "not yet" (a server still starting);
    any other propagates."""
    deadline = time.monotonic() + timeout
    while True:
        last_try = time.monotonic() >= deadline
        try:
            value = condition()
        except ignore as e:
            value = e  # type: ignore[assignment]
        else:
            if accept(value):
                return value
        if last_try:
            raise AssertionError(f"not within {timeout} s: {what} (last: {value!r})")
        time.sleep(interval)


async def wait_until_async(condition: Callable[[], T | Awaitable[T]], what: str, timeout: float = 5.0,
                           interval: float = 0.02, ignore: tuple[type[BaseException], ...] = (),
                           accept: Callable[[T], object] = bool) -> T:
    """``wait_until`` inside an event loop: sleeps without blocking it, and ``condition`` may be a coroutine
    function (a store read)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last_try = loop.time() >= deadline
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
        except ignore as e:
            value = e  # type: ignore[assignment]
        else:
            if accept(value):
                return value
        if last_try:
            raise AssertionError(f"not within {timeout} s: {what} (last: {value!r})")
        await asyncio.sleep(interval)


class FakeClock:
    """A wall clock the test moves (``Overrides(clock=...)``, ``LocalLimits``): refills, expiries and presence
    timeouts are checked at exact instants, without sleeping through them."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(data_dir: Path, *args: str) -> Any:
    """Run a CLI command in-process with ``--json``; returns the parsed output (fails the test on error)."""
    result = CliRunner().invoke(cli_main, [*args, "--data-dir", str(data_dir), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def subscription(data_dir: Path, name: str) -> dict:
    """The subscription as ``subscription list`` shows it (state, backlog, last error)."""
    return {s["name"]: s for s in cli(data_dir, "subscription", "list")}[name]


@contextlib.contextmanager
def stores_of(settings: Any) -> Iterator[Any]:
    """The stores ``settings`` name, opened as the process opens them (``runtime.bootstrap.build``), then closed."""
    from thingport.runtime.bootstrap import build

    app = build(settings)
    try:
        yield app.stores
    finally:
        app.close()


def client_context(cert: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False  # the self-signed cert names localhost; we connect by IP too
    return ctx


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class DeviceClient:
    """Speaks to the device endpoint over real HTTPS, one keep-alive connection per client."""

    port: int
    cert: Path
    _conn: http.client.HTTPSConnection | None = field(default=None, repr=False)

    def connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=client_context(self.cert), timeout=10
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
        except (ConnectionError, http.client.HTTPException):
            self.close()
            raise
        raw = response.read()
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, raw)
        if response.will_close:
            self.close()
        return reply

    def post_json(self, path: str, doc: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.request(
            "POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json", **(headers or {})}
        )

    def auth(self, product_key: str, device_name: str, secret: str, method: str = "hmacsha256",
             timestamp: int | None = None, client_id: str = "test-client", **extra: Any) -> Reply:
        params = {"productKey": product_key, "deviceName": device_name, "clientId": client_id,
                  "timestamp": str(timestamp if timestamp is not None else int(time.time() * 1000))}
        params.update({k: str(v) for k, v in extra.items()})
        doc = {**params, "version": "default", "signmethod": method, "sign": aliyun_sign(secret, params, method)}
        return self.post_json("/auth", doc)

    def token(self, product_key: str, device_name: str, secret: str) -> str:
        reply = self.auth(product_key, device_name, secret)
        assert reply.json["code"] == 0, reply.json
        return reply.json["info"]["token"]

    def publish(self, topic: str, payload: bytes, token: str | None,
                content_type: str = "application/octet-stream") -> Reply:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["password"] = token
        return self.request("POST", "/topic" + topic, payload, headers)


def wait_for_tls(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def handshakes() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock, ctx.wrap_socket(sock):
            return True

    wait_until(handshakes, f"a TLS handshake with the server on port {port}", timeout, 0.05, ignore=(OSError,))


class ServerProcess:
    """``thingport serve`` as a real subprocess on a free port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 database_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.api_port = free_port()
        self.database_url = database_url
        if database_url:  # in the data dir's settings file, so every CLI command on it finds the database too
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / "thingport.toml").write_text(f'database_url = "{database_url}"\n')
        self.env = {**os.environ, "THINGPORT_LOG_LEVEL": "warning", **(env or {})}
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def cert(self) -> Path:
        return self.data_dir / "tls-cert.pem"

    def start(self) -> "ServerProcess":
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)  # serve creates the data dir itself (0700)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "thingport", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--api-port", str(self.api_port), "--data-dir", str(self.data_dir), *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_tls(self.port, proc=self.proc)
        return self

    def client(self) -> DeviceClient:
        return DeviceClient(self.port, self.cert)

    def settings(self, **overrides: Any) -> Any:
        """Settings that open this server's stores (its data dir, and its database when not SQLite)."""
        from thingport.settings import load_settings

        return load_settings(data_dir=self.data_dir, database_url=self.database_url, **overrides)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class ThreadServer:
    """The device endpoint of ``app`` (``runtime.bootstrap.build(settings, overrides)``, an adapter swapped
    through its overrides) in this process: its own event loop in a thread, which starts and stops the app."""

    def __init__(self, app: Any) -> None:
        from thingport.runtime.server import certificate_for

        settings = app.settings
        self.app = app
        self.port = settings.port
        self.files = certificate_for(settings)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import uvloop

        uvloop.run(self._serve())

    async def _serve(self) -> None:
        from thingport.runtime.server import device_server

        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        await self.app.start()
        device = device_server(self.app.settings, self.app, self.files)
        try:
            await device.start()
            await self.stopping.wait()
        finally:
            await device.stop()
            await self.app.stop()

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        wait_for_tls(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(10)

    def client(self) -> DeviceClient:
        return DeviceClient(self.port, self.files.cert)
