"""runtime/server.py's option errors, as the CLI shows them: click's usage line and exit status 2."""

import os
import subprocess
import sys
from pathlib import Path

from tests.support import free_port


def thingport(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("THINGPORT_")}
    return subprocess.run([sys.executable, "-m", "thingport", *args], capture_output=True, text=True, timeout=60,
                          env={**clean, **(env or {})})


def test_a_certificate_without_its_key_is_a_usage_error(tmp_path: Path) -> None:
    result = thingport("serve", "--tls-cert", str(tmp_path / "cert.pem"), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2, result.stderr
    assert "thingport serve [OPTIONS]" in result.stderr
    assert "Error: --tls-cert and --tls-key go together" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_log_level_is_a_usage_error(tmp_path: Path) -> None:
    result = thingport("serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port()), "--api-port",
                       str(free_port()), env={"THINGPORT_LOG_LEVEL": "loud"})
    assert result.returncode == 2, result.stderr
    assert "thingport serve [OPTIONS]" in result.stderr
    assert "Error: log level must be one of critical, error, warning, info, debug, trace, not 'loud'" in result.stderr
