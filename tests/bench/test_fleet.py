"""bench/fleet.py at its small scale, on SQLite and PostgreSQL: every step of the fleet benchmark really runs
(bulk import, fill through the log's append path, auth, wrk reports, API queries, open connections,
retention under load) and its figures come out, so the full-scale run cannot rot unnoticed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")
def test_the_small_scale_runs_every_step_on_both_backends(tmp_path: Path) -> None:
    out, png = tmp_path / "fleet.json", tmp_path / "fleet.png"
    command = [sys.executable, "-m", "bench.fleet", "--scale", "small", "--json", str(out), "--png", str(png)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(out.read_text())
    scale = doc["scale"]
    assert [r["backend"] for r in doc["results"]] == ["sqlite", "postgresql"]
    for result in doc["results"]:
        assert result["devices"] == scale["devices"]
        assert result["messages"] >= scale["messages"]
        assert result["a"]["authenticated"] == scale["base"] and result["b"]["authenticated"] == scale["authenticate"]
        assert result["a"]["reports"]["rps"] > 0 and result["b"]["reports"]["rps"] > 0
        assert {k: q["items"] for k, q in result["b"]["queries"].items()} == {
            "history": 100, "device_messages": 50, "messages": 100}
        assert result["bytes_per_message"] > 0
        connections = result["connections"]
        assert connections["still_open"] == connections["connections"] == scale["connections"]
        assert connections["rss_open_kb"] > 0
        retention = result["retention"]  # retention_first_s brings the first pass within the watch
        assert retention["finished"] and retention["deleted"] == retention["old"] == int(
            scale["messages"] * scale["retention_share"])
    assert png.stat().st_size > 10_000
    assert "| reports/s A -> B" in run.stdout


def test_a_fleet_smaller_than_its_parts_is_refused() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.fleet", "--scale", "small", "--devices", "200"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and "--devices must exceed the base fleet" in run.stderr
