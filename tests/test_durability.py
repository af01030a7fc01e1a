"""An acknowledged message survives the server being killed with SIGKILL under load, once or repeatedly, in
both durability modes (``os`` promises exactly this: a crash of thingport loses nothing acknowledged), on
SQLite and on PostgreSQL; and each mode reaches the log writer's own connection."""

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from tests.postgres import fresh_database
from tests.support import ServerProcess, cli, stores_of
from thingport.cli import main
from thingport.runtime.stores import open_stores
from thingport.settings import Settings, load_settings
from thingport.store.database import Database
from thingport.store.sql_log import SqlMessageLog


def stored_ids(data_dir: Path) -> set[int]:
    with stores_of(load_settings(data_dir=data_dir)) as stores:
        return {m.message_id for m in asyncio.run(stores.log.newest(1_000_000))}


def _load_then_kill(data_dir: Path, devices: list[dict], seconds: float, args: tuple[str, ...] = ()) -> list[int]:
    """Devices report to a fresh server on ``data_dir`` (``serve ARGS``) for ``seconds``, then it is SIGKILLed
    under the load. Returns the acknowledged messageIds."""
    server = ServerProcess(data_dir, args=args).start()
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def report(device: dict) -> None:
        client = server.client()
        pk, dn = device["productKey"], device["deviceName"]
        token = client.token(pk, dn, device["deviceSecret"])
        n = 0
        while not stop.is_set():
            try:
                doc = client.publish(f"/{pk}/{dn}/user/load", b"reading-%d" % n, token).json
            except Exception:  # the server died mid-request: never acknowledged
                return
            if doc["code"] == 0:
                with lock:
                    acked.append(doc["info"]["messageId"])
            n += 1
            time.sleep(0.012)  # under the default device rate limit (100/s)

    threads = [threading.Thread(target=report, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    time.sleep(seconds)
    server.kill()
    stop.set()
    for t in threads:
        t.join(10)
    return acked


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_sigkill_under_load_loses_no_acknowledged_message(tmp_path: Path, engine: str, durability: str) -> None:
    data_dir = tmp_path / "data"
    if engine == "postgresql":  # in the data dir's settings file: the server and every CLI command find it
        data_dir.mkdir(mode=0o700)
        (data_dir / "thingport.toml").write_text(f'database_url = "{fresh_database()}"\n')
    args = ("--durability", durability)
    product = cli(data_dir, "product", "create", "--name", "p")
    devices = [cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", f"dev-{i}")
               for i in range(6)]
    acked = _load_then_kill(data_dir, devices, seconds=1.5, args=args)
    assert len(acked) > 200, "the load was too light to prove anything"
    assert set(acked) <= stored_ids(data_dir)

    restarted = ServerProcess(data_dir, args=args).start()  # and the server comes back on the same data
    try:
        client = restarted.client()
        d = devices[0]
        token = client.token(d["productKey"], d["deviceName"], d["deviceSecret"])
        after = client.publish(f"/{d['productKey']}/{d['deviceName']}/user/load", b"after", token).json
        assert after["code"] == 0 and after["info"]["messageId"] > max(acked)
        client.close()
    finally:
        restarted.stop()
    assert set(acked) | {after["info"]["messageId"]} <= stored_ids(data_dir)


# --- repeated: three kills in a row, then every acknowledged message reaches a subscription -----------------

ROUNDS = 3


def _api(server: ServerProcess, path: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.api_port}{path}", method="POST", data=json.dumps(body or {}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


def _pull_all(server: ServerProcess, key: str, subscription: str, wanted: set[int], timeout: float = 20.0) -> set[int]:
    """messageIds the embedded http subscription delivers (pull, then ack) until ``wanted`` are all in or
    ``timeout`` passes."""
    got: set[int] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= got and time.monotonic() < deadline:
        batch = _api(server, f"/api/subscriptions/{subscription}/pull?max=1000&wait=1", key)
        got.update(envelope["messageId"] for envelope in batch["messages"])
        if batch["messages"]:
            _api(server, f"/api/subscriptions/{subscription}/ack", key, {"cursor": batch["cursor"]})
    return got


@pytest.mark.parametrize("durability", ["fsync", "os"])
def test_repeated_sigkill_under_load_loses_no_acknowledged_message_and_all_reach_the_sink(
        tmp_path: Path, durability: str) -> None:
    data_dir = tmp_path / "data"
    product = cli(data_dir, "product", "create", "--name", "p")
    pk = product["productKey"]
    devices = [cli(data_dir, "device", "create", "--product-key", pk, "--name", f"dev-{i}") for i in range(6)]
    cli(data_dir, "subscription", "create", "--name", "app", "--product-key", pk, "--sink", "http", "--kinds", "raw")
    key = cli(data_dir, "apikey", "create", "--name", "durability", "--role", "admin")["key"]

    acked: list[int] = []
    for round_ in range(ROUNDS):
        ids = _load_then_kill(data_dir, devices, seconds=1.2, args=("--durability", durability))
        assert len(ids) > 100, f"round {round_}: the load was too light to prove anything"
        assert set(ids) <= stored_ids(data_dir), f"round {round_}: acknowledged messages lost"
        acked.extend(ids)
    assert len(set(acked)) == len(acked), "a messageId was given twice across restarts"

    server = ServerProcess(data_dir, args=("--durability", durability)).start()
    try:
        assert set(acked) <= stored_ids(data_dir)
        delivered = _pull_all(server, key, "app", set(acked))
    finally:
        server.stop()
    missing = set(acked) - delivered
    assert not missing, f"{len(missing)} acknowledged messages never reached the subscription: {sorted(missing)[:5]}"


# --- the setting reaches the log writer's own connection ----------------------------------------------------

def _writer_says(settings: Settings, query: str) -> Any:
    """``query``'s answer on the log writer's own connection of the stores ``settings`` open."""
    writers: list[Database] = []

    def capture(writer: Database, *rest: Any) -> SqlMessageLog:
        writers.append(writer)
        return SqlMessageLog(writer, *rest)

    stores = open_stores(settings, message_log=capture)
    try:
        return writers[0].execute(query).fetchone()[0]
    finally:
        stores.close()


def test_sqlite_log_writer_syncs_to_disk_in_fsync_mode_and_to_the_os_in_os_mode(tmp_path: Path) -> None:
    full, normal = 2, 1  # PRAGMA synchronous's answers
    assert load_settings(data_dir=tmp_path).durability == "fsync"
    assert _writer_says(load_settings(data_dir=tmp_path), "PRAGMA synchronous") == full
    assert _writer_says(load_settings(data_dir=tmp_path, durability="os"), "PRAGMA synchronous") == normal


def test_postgresql_log_writer_commits_asynchronously_only_in_os_mode(tmp_path: Path) -> None:
    url = fresh_database()
    fsync = load_settings(data_dir=tmp_path, database_url=url)
    os_mode = load_settings(data_dir=tmp_path, database_url=url, durability="os")
    assert _writer_says(fsync, "SHOW synchronous_commit") == "on"
    assert _writer_says(os_mode, "SHOW synchronous_commit") == "off"

    # a database whose sessions default to off: fsync mode raises the writer's to on, so the promise holds
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    with psycopg.connect(url) as session:
        assert session.execute("SHOW synchronous_commit").fetchone() == ("off",)
    assert _writer_says(fsync, "SHOW synchronous_commit") == "on"
    assert _writer_says(os_mode, "SHOW synchronous_commit") == "off"


def test_durability_from_the_serve_flag_and_the_env_and_a_bad_value_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Settings] = []
    monkeypatch.setattr("thingport.runtime.server.serve", served.append)  # the settings serve would run with
    monkeypatch.delenv("THINGPORT_DURABILITY", raising=False)
    runner = CliRunner()
    serve = ["serve", "--data-dir", str(tmp_path)]
    for args, env, expected in ((serve, {}, "fsync"), ([*serve, "--durability", "os"], {}, "os"),
                                (serve, {"THINGPORT_DURABILITY": "os"}, "os"),
                                ([*serve, "--durability", "fsync"], {"THINGPORT_DURABILITY": "os"}, "fsync")):
        result = runner.invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
        assert served.pop().durability == expected

    bad_flag = runner.invoke(main, [*serve, "--durability", "none"])
    assert bad_flag.exit_code == 2 and "'none' is not one of 'fsync', 'os'" in bad_flag.output
    bad_env = runner.invoke(main, serve, env={"THINGPORT_DURABILITY": "none"})
    assert bad_env.exit_code == 1 and "invalid settings: durability: Input should be 'fsync' or 'os'" in bad_env.output
    assert not served
