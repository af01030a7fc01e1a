"""bench/diag/diagnostic.py: the diagnostic rows' servers really run with the part switched off, through
``build``'s overrides, and a process built without them is untouched."""

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import DeviceClient, cli, free_port, stores_of, wait_for_tls
from thingport.core.model import StoredMessage
from thingport.runtime.bootstrap import Overrides, build
from thingport.settings import load_settings

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "diag" / "diagnostic.py"
_spec = importlib.util.spec_from_file_location("bench_diagnostic", SCRIPT)
assert _spec is not None and _spec.loader is not None
diagnostic: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagnostic)


def _probe(data_dir: Path, mode: str | None) -> list[Any]:
    """(PRAGMA synchronous of the log's writer, messages in the log, bytes in the flat file or "-")."""
    chosen = diagnostic.overrides(mode) if mode else Overrides()
    writers = []

    def seen(writer, *rest):  # type: ignore[no-untyped-def]
        writers.append(writer)
        return chosen.message_log(writer, *rest)

    app = build(load_settings(data_dir=data_dir), Overrides(message_log=seen))
    stores = app.stores
    sync = writers[0].execute("PRAGMA synchronous").fetchone()[0]

    async def main() -> int:
        stores.log.start(asyncio.get_running_loop())
        await stores.log.append(StoredMessage(1, 1, "pk", "dn", "aliyun", "/pk/dn/user/a", b"x", 1, iot_id="pk_dn"))
        # append_many's tuple (an "online" status message and a report sharing a transaction) takes the same way
        await stores.log.append_many(tuple(
            StoredMessage(i, 1, "pk", "dn", "aliyun", "/pk/dn/user/b", b"yz", i, kind, iot_id="pk_dn")
            for i, kind in ((2, "status"), (3, "custom"))))
        await stores.log.save_cursor(1, 3)  # not a message: the SQL way in every mode
        return await stores.log.last_seq()

    try:
        stored = asyncio.run(main())
    finally:
        app.close()
    filelog = data_dir / "thingport.db-diag-filelog"
    return [sync, stored, filelog.stat().st_size if filelog.exists() else "-"]


def test_without_overrides_the_log_is_durable_and_stores(tmp_path: Path) -> None:
    assert _probe(tmp_path, None) == [2, 3, "-"]  # synchronous=FULL, three messages in the log, no flat file


def test_nofsync_stores_without_waiting_for_the_disk(tmp_path: Path) -> None:
    assert _probe(tmp_path, "nofsync") == [0, 3, "-"]


def test_nostore_acknowledges_without_writing(tmp_path: Path) -> None:
    assert _probe(tmp_path, "nostore") == [2, 0, "-"]


def test_filelog_appends_the_message_to_a_flat_file_instead_of_the_log(tmp_path: Path) -> None:
    # 30 bytes of header per message, then its topic and payload
    frames = 30 + len("/pk/dn/user/a") + 1 + 2 * (30 + len("/pk/dn/user/b") + 2)
    assert _probe(tmp_path, "filelog") == [2, 0, frames]


def test_the_diagnostic_server_serves_with_its_log(tmp_path: Path) -> None:
    """The script a diagnostic row runs: a real server whose reports are acknowledged and, in nostore mode,
    not in the log (with nofsync, the same requests leave the "online" status and the report in it)."""
    data_dir = tmp_path / "data"
    product = cli(data_dir, "product", "create", "--name", "p")
    device = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-1")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(SCRIPT), "nostore", "--host", "127.0.0.1", "--port", str(port), "--api-port",
         str(free_port()), "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_tls(port, proc=server)
        client = DeviceClient(port, data_dir / "tls-cert.pem")
        token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
        reply = client.publish(f"/{device['productKey']}/{device['deviceName']}/user/t", b"x", token)
        assert reply.json["code"] == 0, reply.json
        client.close()
    finally:
        server.terminate()
        server.wait(15)
    with stores_of(load_settings(data_dir=data_dir)) as stores:
        assert asyncio.run(stores.log.last_seq()) == 0


def test_an_unknown_mode_stops_the_process(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "nothing", "--port", "1", "--api-port", "2", "--data-dir",
                          str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "expected nofsync, nostore or filelog" in out.stderr
    assert not (tmp_path / "data").exists()
