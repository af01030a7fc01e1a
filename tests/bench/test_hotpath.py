"""bench/diag/hotpath.py: the in-process hot path really serves through the real server's path, so its
instruction counts are the server's: every request of every row is answered well and stored durably."""

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from thingport.store.sqlite_db import db_path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "diag" / "hotpath.py"


def test_each_row_answers_every_request_and_stores_each_report(tmp_path: Path) -> None:
    data_dir = tmp_path / "hot"
    subprocess.run([sys.executable, str(SCRIPT), "setup", str(data_dir)], check=True, timeout=120)
    for row in ("topic", "alink20", "iotda-report", "bare-raw"):
        # 64 requests over 32 connections; a bad reply ends the run with an error
        subprocess.run([sys.executable, str(SCRIPT), "run", str(data_dir), row, "64"], check=True, timeout=120)
    with closing(sqlite3.connect(db_path(data_dir))) as conn:
        stored = dict(conn.execute(
            "SELECT kind, count(*) FROM messages WHERE kind != 'status' GROUP BY kind").fetchall())
        history = conn.execute("SELECT count(*) FROM history").fetchone()[0]
    assert stored == {"custom": 64, "property_post": 128}  # topic; alink20 and iotda-report (bare-raw: none)
    assert history == 128  # one row per validated report: its values
