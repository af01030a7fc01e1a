"""``serve --workers N`` whose supervisor is killed outright: its workers stop themselves instead of serving on
the shared port, unsupervised, forever."""

import os
import signal
from pathlib import Path

from tests.support import ServerProcess, wait_until


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped


def test_workers_stop_when_their_supervisor_is_sigkilled(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", args=("--workers", "2")).start()
    assert server.proc is not None
    supervisor = server.proc.pid
    workers: set[int] = set()
    try:
        workers = wait_until(lambda: {p for p in children_of(supervisor) if alive(p)}, "two workers", 30, 0.2,
                             accept=lambda found: len(found) >= 2)
        server.kill()
        # each notices within PARENT_CHECK_S and stops gracefully (up to its grace for open connections)
        wait_until(lambda: [p for p in workers if alive(p)], "the workers stopped", 40, 0.2,
                   accept=lambda left: not left)
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
