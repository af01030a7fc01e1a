"""Fixtures for the device SDK's tests: both flavours behind one interface, stored-message lookups, and a
TCP proxy that fails connections on purpose."""

import asyncio
import inspect
import itertools
import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main as cli_main
from thingport.device import (
    AliyunDevice,
    AsyncAliyunDevice,
    AsyncHuaweiDevice,
    HuaweiDevice,
)

_names = itertools.count(1)


def endpoint(server: ServerProcess) -> str:
    return f"https://localhost:{server.port}"


def new_device(server: ServerProcess, *product_args: str) -> dict:
    """A fresh product (with ``product_args``, e.g. ``--tsl F``) and one device on it."""
    n = next(_names)
    product = cli(server.data_dir, "product", "create", "--name", f"sdk{n}", *product_args)
    return cli(server.data_dir, "device", "create", "--product-key", product["productKey"], "--name", f"sdk-{n:04d}")


def stored(server: ServerProcess, device: dict, limit: int = 500) -> list[dict]:
    """The device's own messages in the server's log (not its presence ``status`` messages), oldest
    first (``messages tail`` prints JSON lines)."""
    result = CliRunner().invoke(cli_main, ["messages", "tail", "--limit", str(limit), "--json",
                                           "--data-dir", str(server.data_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    docs = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    mine = [d for d in docs if (d["productKey"], d["deviceName"]) == (device["productKey"], device["deviceName"])
            and d["kind"] != "status"]
    return sorted(mine, key=lambda d: d["seq"])


def status(server: ServerProcess, device: dict) -> dict:
    return cli(server.data_dir, "device", "status", "--product-key", device["productKey"],
               "--name", device["deviceName"])


def history(server: ServerProcess, device: dict, prop: str) -> list[dict]:
    return cli(server.data_dir, "device", "history", "--product-key", device["productKey"],
               "--name", device["deviceName"], "--property", prop)


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


class Blocking:
    """An asyncio device whose coroutine methods run to completion on a private loop, so one test body
    covers both flavours (and checks that the async flavour's methods really are coroutines)."""

    def __init__(self, device: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._device = device
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._device, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if name in ("authenticate", "publish", "post_properties", "post_event", "report_properties",
                        "message_up", "report_sub_devices", "close"):
                assert inspect.iscoroutine(result), f"{name} of the async flavour must be a coroutine"
                return self._loop.run_until_complete(asyncio.wait_for(result, 9))
            return result

        return call


class Flavour:
    """Makes devices of one flavour (``sync`` or ``async``) and closes them after the test."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop() if name == "async" else None
        self._opened: list[Any] = []

    def aliyun(self, url: str, device: dict, **options: Any) -> Any:
        cls = AsyncAliyunDevice if self.loop else AliyunDevice
        return self._keep(cls(url, device["productKey"], device["deviceName"], device["deviceSecret"], **options))

    def huawei(self, url: str, device: dict, **options: Any) -> Any:
        cls = AsyncHuaweiDevice if self.loop else HuaweiDevice
        return self._keep(cls(url, device["deviceId"], device["deviceSecret"], **options))

    def _keep(self, device: Any) -> Any:
        wrapped = Blocking(device, self.loop) if self.loop else device
        self._opened.append(wrapped)
        return wrapped

    def close(self) -> None:
        for device in self._opened:
            device.close()
        if self.loop:
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Iterator[Flavour]:
    f = Flavour(request.param)
    try:
        yield f
    finally:
        f.close()


class FlakyProxy:
    """A TCP proxy to ``127.0.0.1:target`` that resets its first ``refuse`` connections (a server
    restarting, a flaky link) and counts the connections it accepted."""

    def __init__(self, target: int, refuse: int = 0) -> None:
        self.target = target
        self.refuse = refuse
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        self._listener.close()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.refuse:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # RST
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for s in (conn, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [conn, upstream]
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
