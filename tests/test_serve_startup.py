"""What ``thingport serve`` prints as it starts, from the real command in a subprocess: a busy port is one
clear error line (exit 1) before anything claims to serve; uvicorn's "Started server process" comes once."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ServerProcess, free_port, wait_until


def serve(data_dir: Path, port: int, api_port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "thingport", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--api-port", str(api_port), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("busy", ["device", "api"])
def test_a_busy_port_is_one_error_line_before_anything_serves(tmp_path: Path, busy: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        port, api_port = (taken, free_port()) if busy == "device" else (free_port(), taken)
        result = serve(tmp_path / "data", port, api_port)
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and f"127.0.0.1:{taken} is in use" in lines[0]
    assert ("--port" if busy == "device" else "--api-port") in lines[0]
    assert not (tmp_path / "data").exists()  # nothing made for a server that never ran


@pytest.mark.parametrize("workers", [1, 2])
def test_started_server_process_is_printed_once(tmp_path: Path, workers: int) -> None:
    server = ServerProcess(tmp_path / "data", env={"THINGPORT_LOG_LEVEL": "info"}, args=("--workers", str(workers)))
    server.start()
    try:
        wait_until(lambda: "Uvicorn running on" in server.output(), "the management API listening", timeout=20)
    finally:
        server.stop()
    output = server.output()
    assert output.count("Started server process") == 1, output
    assert output.count("device endpoint https://") == 1, output
