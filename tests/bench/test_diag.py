"""bench/diag/sitecustomize.py: the diagnostic rows' servers really run with the part switched off, and a
server without the variable is untouched."""

import os
import subprocess
import sys
from pathlib import Path

DIAG = Path(__file__).resolve().parents[2] / "bench" / "diag"

PROBE = """
import asyncio, sys, tempfile
from pathlib import Path
from thingport.core.model import StoredMessage
from thingport.settings import load_settings
from thingport.runtime.stores import open_stores

async def main():
    data_dir = Path(tempfile.mkdtemp())
    stores = open_stores(load_settings(data_dir=data_dir))
    stores.log.start(asyncio.get_running_loop())
    sync = stores.log._writer.raw.execute("PRAGMA synchronous").fetchone()[0]
    await stores.log.append(StoredMessage(1, 1, "pk", "dn", "aliyun", "/pk/dn/user/a", b"x", 1, iot_id="pk_dn"))
    # append_many's tuple (an "online" status message and a report sharing a transaction) takes the same way
    await stores.log.append_many(tuple(
        StoredMessage(i, 1, "pk", "dn", "aliyun", "/pk/dn/user/b", b"yz", i, kind, iot_id="pk_dn")
        for i, kind in ((2, "status"), (3, "custom"))))
    await stores.log.save_cursor(1, 3)  # not a message: the SQL way in every mode
    stored = await stores.log.last_seq()
    stores.close()
    filelog = data_dir / "thingport.db-diag-filelog"
    print(sync, stored, filelog.stat().st_size if filelog.exists() else "-")

asyncio.run(main())
"""


def _probe(mode: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGPORT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(DIAG), env.get("PYTHONPATH", "")]))
    if mode is not None:
        env["THINGPORT_BENCH_DIAG"] = mode
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)


def test_without_the_variable_the_log_is_durable_and_stores() -> None:
    out = _probe(None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "3", "-"]  # synchronous=FULL, three messages in the log, no flat file


def test_nofsync_stores_without_waiting_for_the_disk() -> None:
    out = _probe("nofsync")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "3", "-"]


def test_nostore_acknowledges_without_writing() -> None:
    out = _probe("nostore")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "0", "-"]


def test_filelog_appends_the_message_to_a_flat_file_instead_of_the_log() -> None:
    out = _probe("filelog")
    assert out.returncode == 0, out.stderr
    # 30 bytes of header per message, then its topic and payload
    frames = 30 + len("/pk/dn/user/a") + 1 + 2 * (30 + len("/pk/dn/user/b") + 2)
    assert out.stdout.split() == ["2", "0", str(frames)]


def test_an_unknown_mode_stops_the_process() -> None:
    out = _probe("nothing")
    assert out.returncode != 0
    assert "expected nofsync, nostore or filelog" in out.stderr
