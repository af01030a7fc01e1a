"""The data dir is 0700 and thingport's files in it 0600, whatever the umask: they hold payloads, history,
source addresses, the master key and the TLS key."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.support import ServerProcess, cli

PRIVATE = {"thingport.db", "thingport.db-wal", "thingport.db-shm", "thingport.db-writer", "master.key", "tls-key.pem"}


def modes(data_dir: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir() if p.is_file()}


def assert_private(data_dir: Path, expected: set[str]) -> None:
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    found = modes(data_dir)
    assert expected <= found.keys(), found
    assert {name: oct(mode) for name, mode in found.items() if name in PRIVATE and mode != 0o600} == {}


def test_serve_under_a_permissive_umask_makes_a_private_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "srv" / "data"
    old = os.umask(0)  # the server inherits it: every file it made would be 0666/0777 without the fix
    try:
        server = ServerProcess(data).start()
    finally:
        os.umask(old)
    try:
        cli(data, "product", "create", "--name", "p")  # the server's connections are open: -wal and -shm exist
        assert_private(data, {"thingport.db", "thingport.db-wal", "thingport.db-shm", "master.key", "tls-key.pem"})
        leases = data / "leases"
        assert stat.S_IMODE(leases.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in leases.iterdir())
    finally:
        server.stop()


def test_the_first_cli_create_under_a_permissive_umask_makes_a_private_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "thingport", "product", "create", "--name", "p", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0),
    )
    assert result.returncode == 0, result.stderr
    assert_private(data, {"thingport.db", "master.key"})


def test_an_older_thingports_world_readable_files_are_narrowed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli(data, "product", "create", "--name", "p")
    for path in data.iterdir():
        path.chmod(0o644)
    assert [p["name"] for p in cli(data, "product", "list")] == ["p"]
    found = modes(data)
    assert found["thingport.db"] == found["master.key"] == 0o600, found
