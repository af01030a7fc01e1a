"""The data dir's filesystem fills up, or turns read-only, while devices report.

Reports are then refused with the protocol's error (Alibaba: 30001 "publish message error: message could
not be stored: ..."; IoTDA: its internal-error row, 500 IOTDA.000001, the only row for a server-side
failure), nothing is acknowledged that was not stored, and the running server takes reports again by itself
once space (or write access) returns: no restart, no operator action on thingport.
"""

from __future__ import annotations

import errno
import itertools
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.hostile.common import assert_aliyun_error, hw_post, hw_token
from tests.support import DeviceClient, ServerProcess, cli, wait_until

PAYLOAD_BYTES = 32 * 1024  # per report; the tmpfs below holds ~250 of them
FS_SIZE = "8m"


@dataclass
class Outcome:
    """What the device was told, by payload tag."""

    acked: dict[str, int] = field(default_factory=dict)  # tag -> messageId
    refused: list[str] = field(default_factory=list)


def provision(data_dir: Path) -> dict:
    product = cli(data_dir, "product", "create", "--name", "storage")
    return cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-s001")


def start(data_dir: Path, logs: Path) -> ServerProcess:
    server = ServerProcess(data_dir)
    server.log_path = logs / "server.log"  # off the filesystem under test
    return server.start()


def publish(client: DeviceClient, device: dict, token: str, tag: str, outcome: Outcome) -> int:
    """One report whose payload starts with ``tag``; records the answer; returns its code."""
    pk, dn = device["productKey"], device["deviceName"]
    reply = client.publish(f"/{pk}/{dn}/user/store", tag.encode().ljust(PAYLOAD_BYTES, b"."), token)
    doc = reply.json
    if doc["code"] == 0:
        outcome.acked[tag] = doc["info"]["messageId"]
    else:
        assert_aliyun_error(reply, {30001})
        assert doc["message"].startswith("publish message error: message could not be stored"), doc
        outcome.refused.append(tag)
    return doc["code"]


def publish_until_refused(client: DeviceClient, device: dict, token: str, outcome: Outcome, prefix: str,
                          limit: int = 600) -> None:
    for n in range(limit):
        if publish(client, device, token, f"{prefix}-{n}", outcome) != 0:
            break
    else:
        pytest.fail(f"{limit} reports of {PAYLOAD_BYTES} bytes were all acknowledged on a full filesystem")
    for n in range(5):  # and it stays refused while the fault lasts
        assert publish(client, device, token, f"{prefix}-after-{n}", outcome) == 30001


def publish_until_accepted(client: DeviceClient, device: dict, token: str, outcome: Outcome, prefix: str,
                           within_s: float = 10.0) -> float:
    """Seconds until a report is acknowledged again."""
    started = time.monotonic()
    tags = (f"{prefix}-{n}" for n in itertools.count())
    wait_until(lambda: publish(client, device, token, next(tags), outcome), "a report acknowledged after the fault",
               within_s, 0.2, accept=lambda code: code == 0)
    return time.monotonic() - started


def stored_payload_tags(data_dir: Path) -> dict[str, int]:
    """tag -> messageId of every stored report (read from SQLite directly)."""
    uri = f"file:{data_dir / 'thingport.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
        rows = conn.execute("SELECT id, payload FROM messages WHERE kind = 'custom'").fetchall()
    return {bytes(payload).split(b".", 1)[0].decode(): message_id for message_id, payload in rows}


def assert_stored_exactly_the_acknowledged(data_dir: Path, outcome: Outcome) -> None:
    stored = stored_payload_tags(data_dir)
    for tag, message_id in outcome.acked.items():
        assert stored.get(tag) == message_id, f"acknowledged {tag} ({message_id}) is not stored"
    wrongly = [tag for tag in outcome.refused if tag in stored]
    assert not wrongly, f"refused reports were stored anyway: {wrongly[:5]}"


# --- disk full --------------------------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MB tmpfs (needs root, or CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip()}): the storage quota test "
                    "(tests/dialects/test_aliyun_faults.py, THINGPORT_STORAGE_MAX_MB) covers the refusal")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """A file that takes every free byte of ``directory``'s filesystem."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler


def test_disk_full_refuses_reports_acknowledges_nothing_unstored_and_recovers(small_fs: Path, tmp_path: Path) -> None:
    data_dir = small_fs / "data"
    device = provision(data_dir)
    key = cli(data_dir, "apikey", "create", "--name", "ops")["key"]
    server = start(data_dir, tmp_path)
    outcome = Outcome()
    try:
        client = server.client()
        token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
        hw = hw_token(client, device)
        assert publish(client, device, token, "before", outcome) == 0

        filler = fill(small_fs)
        publish_until_refused(client, device, token, outcome, "full")
        iotda = hw_post(client, device["deviceId"], "messages/up", b'{"content":"full"}', hw)
        assert iotda.status == 500 and iotda.json["error_code"] == "IOTDA.000001", iotda.raw
        assert "could not be stored" in iotda.json["error_msg"]
        assert_failing_writes_are_visible(server, key, 6)

        filler.unlink()  # space returns
        wait_ready(server)
        publish_until_accepted(client, device, token, outcome, "recovered")
        for n in range(20):  # and keeps being taken
            assert publish(client, device, token, f"later-{n}", outcome) == 0
        assert hw_post(client, device["deviceId"], "messages/up", b'{"content":"back"}', hw).status == 200
        client.close()
    finally:
        server.stop()
    assert outcome.refused, "nothing was refused: the filesystem never filled"
    assert_stored_exactly_the_acknowledged(data_dir, outcome)


# --- read-only --------------------------------------------------------------------------------------

def _immutable(paths: list[Path], on: bool) -> subprocess.CompletedProcess:
    return subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], capture_output=True, text=True)


def readiness(server: ServerProcess) -> tuple[int, dict]:
    reply = httpx.get(f"http://127.0.0.1:{server.api_port}/readyz", timeout=10)
    return reply.status_code, reply.json()


def write_failures(server: ServerProcess, key: str) -> int:
    """thingport_store_write_failures_total of the log's message writes."""
    text = httpx.get(f"http://127.0.0.1:{server.api_port}/metrics", headers={"Authorization": f"Bearer {key}"},
                     timeout=10).text
    for line in text.splitlines():
        if line.startswith("thingport_store_write_failures_total{") and 'operation="messages"' in line:
            return int(float(line.split()[-1]))
    return 0


def assert_failing_writes_are_visible(server: ServerProcess, key: str, refused: int) -> None:
    """Not ready (checks and states only), counted in /metrics, and logged once, not once per write."""
    status, doc = readiness(server)
    assert status == 503 and doc == {"status": "not ready", "checks": {"database": "ok", "writes": "failing"}}, doc
    assert write_failures(server, key) >= refused
    assert server.output().count("writes to the log store are failing") == 1


def wait_ready(server: ServerProcess, within_s: float = 10.0) -> float:
    """Seconds until /readyz says ready again, with no device sending anything meanwhile."""
    started = time.monotonic()
    wait_until(lambda: readiness(server), "/readyz ready after the fault", within_s, 0.2,
               accept=lambda found: found[0] == 200)
    return time.monotonic() - started


def test_read_only_database_refuses_reports_and_recovers_when_writable_again(tmp_path: Path) -> None:
    """The database and its WAL made immutable (``chattr +i``: even root may not write; mode bits would not stop
    root, and a remount fails while the server holds the files open for writing). The WAL index (``-shm``) is
    left alone: SQLite maps it, and an immutable mapping kills the process with SIGBUS, which no server
    survives."""
    data_dir = tmp_path / "data"
    device = provision(data_dir)
    key = cli(data_dir, "apikey", "create", "--name", "ops")["key"]
    server = start(data_dir, tmp_path)
    outcome = Outcome()
    files = [data_dir / "thingport.db", data_dir / "thingport.db-wal"]
    try:
        client = server.client()
        token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
        assert publish(client, device, token, "before", outcome) == 0
        assert readiness(server) == (200, {"status": "ready", "checks": {"database": "ok", "writes": "ok"}})
        done = _immutable(files, True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")
        try:
            for n in range(5):
                assert publish(client, device, token, f"read-only-{n}", outcome) == 30001
            assert_failing_writes_are_visible(server, key, 5)
            assert readiness(server)[0] == 503  # the probe write fails too while the fault lasts
        finally:
            assert _immutable(files, False).returncode == 0
        wait_ready(server)  # the probe write found the database writable, with no device sending
        assert "writes to the log store succeed again" in server.output()
        publish_until_accepted(client, device, token, outcome, "writable")
        for n in range(20):
            assert publish(client, device, token, f"later-{n}", outcome) == 0
        client.close()
    finally:
        _immutable(files, False)
        server.stop()
    assert_stored_exactly_the_acknowledged(data_dir, outcome)
