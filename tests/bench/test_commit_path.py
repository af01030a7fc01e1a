"""bench/commit_path.py runs against the local PostgreSQL and reports each batch size's cost, and the batches
it times were really written (its database is dropped afterwards)."""

import re
import subprocess
import sys
from pathlib import Path

from tests.bus.services import require_service

REPO = Path(__file__).resolve().parents[2]


def test_each_batch_size_is_measured_on_both_sides() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    command = [sys.executable, "-m", "bench.commit_path", "--sizes", "1,4", "--messages", "8", "--durability", "os"]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    pattern = r"os batch +{}: client +\d+ us \+ backend +\d+ us a batch = +\d+ us a message \(wall \d+ us\)"
    assert len(lines) == 3, run.stdout
    for size, line in zip((1, 4), lines, strict=False):
        assert re.fullmatch(pattern.format(size), line), line
    assert lines[2] == "16 messages stored"  # 8 batches of 1, 2 of 4
