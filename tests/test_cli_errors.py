"""The CLI as an operator runs it (a subprocess): a failure is one ``error: ...`` line on stderr and exit
status 1, never a traceback; a usage error keeps click's exit status 2; a command that only reads never
creates a data dir or a master key."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.postgres import fresh_database


def thingport(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              code: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m thingport ARGS`` (or ``code`` run with ARGS as the command line)."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "thingport", *args]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("THINGPORT_")}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, env={**clean, **(env or {})})


def assert_one_error_line(result: subprocess.CompletedProcess[str], says: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert says in lines[0], lines[0]


def a_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def populated(tmp_path: Path) -> tuple[Path, str, str]:
    """A data dir whose keys come from THINGPORT_MASTER_KEY, with one product and device: (dir, key, pk)."""
    data, key = tmp_path / "data", a_key()
    product = thingport("product", "create", "--name", "p", "--json", "--data-dir", str(data),
                        env={"THINGPORT_MASTER_KEY": key})
    pk = json.loads(product.stdout)["productKey"]
    device = thingport("device", "create", "--product-key", pk, "--name", "dev-1", "--data-dir", str(data),
                       env={"THINGPORT_MASTER_KEY": key})
    assert device.returncode == 0, device.stderr
    return data, key, pk


def test_a_wrong_or_missing_master_key(populated: tuple[Path, str, str]) -> None:
    data, key, pk = populated
    show = ("device", "show", "--product-key", pk, "--name", "dev-1", "--with-secret", "--data-dir", str(data))
    assert_one_error_line(thingport(*show, env={"THINGPORT_MASTER_KEY": a_key()}), "wrong master key")
    assert_one_error_line(thingport(*show, env={"THINGPORT_MASTER_KEY": "not base64!"}),
                          "THINGPORT_MASTER_KEY must hold base64-encoded 32-byte keys")
    # no key at all: neither a read nor a write makes a new one beside the existing database
    assert_one_error_line(thingport(*show), "no master key")
    assert_one_error_line(thingport("product", "create", "--name", "q", "--data-dir", str(data)), "no master key")
    assert not (data / "master.key").exists()
    assert thingport(*show, env={"THINGPORT_MASTER_KEY": key}).returncode == 0


def test_an_unreachable_unmigrated_or_unsupported_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cases = [
        ("postgresql://postgres@127.0.0.1:1/nothing", "PostgreSQL is unreachable"),
        (fresh_database(migrate=False), "run `thingport db upgrade`"),
        ("mysql://root:hunter2@127.0.0.1/thingport", "must be a postgresql:// URL"),
    ]
    for url, says in cases:
        for args in (("product", "list"), ("product", "create", "--name", "p")):
            result = thingport(*args, "--data-dir", str(data), env={"THINGPORT_DATABASE_URL": url,
                                                                    "THINGPORT_MASTER_KEY": a_key()})
            assert_one_error_line(result, says)
            assert "hunter2" not in result.stderr
    assert_one_error_line(thingport("db", "upgrade", "--database", "postgresql://postgres@127.0.0.1:1/x"),
                          "PostgreSQL: ")
    assert_one_error_line(thingport("db", "current", "--database", "mysql://u@h/db"), "must be a postgresql:// URL")


def test_broken_json_a_missing_file_and_broken_settings(tmp_path: Path, populated: tuple[Path, str, str]) -> None:
    data, key, pk = populated
    env = {"THINGPORT_MASTER_KEY": key}
    broken = tmp_path / "broken.json"
    broken.write_text('{"properties": [')
    for args in (("product", "create", "--name", "x", "--model", str(broken)),
                 ("product", "create", "--name", "x", "--tsl", str(broken)),
                 ("product", "model", "import", "--product-key", pk, str(broken))):
        assert_one_error_line(thingport(*args, "--data-dir", str(data), env=env), "not a JSON file")
        assert_one_error_line(thingport(*args[:-1], str(tmp_path / "missing.json"), "--data-dir", str(data), env=env),
                              "No such file or directory")
    assert_one_error_line(thingport("product", "list", "--data-dir", str(data), env={**env, "THINGPORT_PORT": "abc"}),
                          "invalid settings: port")
    (data / "thingport.toml").write_text("[not toml")
    assert_one_error_line(thingport("product", "list", "--data-dir", str(data), env=env), "not valid TOML")
    (data / "thingport.toml").unlink()
    (data / "thingport.db").write_bytes(b"this is not a database" * 100)
    assert_one_error_line(thingport("product", "list", "--data-dir", str(data), env=env), "not a database")


def test_an_unexpected_failure_is_one_line_too_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    bug = ("import sys; from thingport import cli; from thingport.manage import service\n"
           "async def boom(self): raise RuntimeError('a bug')\n"
           "service.Management.products = boom\n"
           "sys.argv[0] = 'thingport'; cli.main()")
    data = tmp_path / "data"
    assert thingport("product", "create", "--name", "p", "--data-dir", str(data)).returncode == 0
    result = thingport("product", "list", "--data-dir", str(data), code=bug)
    assert_one_error_line(result, "unexpected RuntimeError: a bug")
    assert "THINGPORT_DEBUG=1" in result.stderr
    for debug in (thingport("product", "list", "--data-dir", str(data), code=bug, env={"THINGPORT_DEBUG": "1"}),
                  thingport("--debug", "product", "list", "--data-dir", str(data), code=bug)):
        assert debug.returncode == 1 and "Traceback" in debug.stderr and "RuntimeError: a bug" in debug.stderr


def test_usage_errors_keep_exit_status_2(tmp_path: Path) -> None:
    for args in (("product", "nonsense"), ("product", "show"), ("messages", "tail", "--limit", "0"),
                 ("device", "create", "--product-key", "p")):
        result = thingport(*args, "--data-dir", str(tmp_path / "data"))
        assert result.returncode == 2 and "Usage:" in result.stderr and "Traceback" not in result.stderr, args
    assert not (tmp_path / "data").exists()


READ_ONLY = [
    ("product", "list"), ("product", "show", "--product-key", "a1xxxxxxxxx"),
    ("product", "tsl", "export", "--product-key", "a1xxxxxxxxx"),
    ("product", "model", "export", "--product-key", "a1xxxxxxxxx"),
    ("device", "list"), ("device", "show", "--product-key", "a1xxxxxxxxx", "--name", "dev-1"),
    ("device", "children", "--product-key", "a1xxxxxxxxx", "--name", "dev-1"),
    ("device", "status", "--product-key", "a1xxxxxxxxx", "--name", "dev-1"),
    ("device", "history", "--product-key", "a1xxxxxxxxx", "--name", "dev-1", "--property", "t"),
    ("subscription", "list"), ("apikey", "list"), ("messages", "tail"),
    # changes that need something to change: nothing to create them in
    ("device", "create", "--product-key", "a1xxxxxxxxx", "--name", "dev-1"),
    ("device", "disable", "--product-key", "a1xxxxxxxxx", "--name", "dev-1"),
    ("subscription", "delete", "--name", "s"), ("keys", "rotate"), ("keys", "prune"),
]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda args: " ".join(args[:2]))
def test_a_command_on_a_data_dir_that_does_not_exist_says_so_and_creates_nothing(tmp_path: Path, args: tuple) -> None:
    data = tmp_path / "nowhere" / "data"
    assert_one_error_line(thingport(*args, "--data-dir", str(data)), "does not exist: no thingport data there")
    assert not (tmp_path / "nowhere").exists()
    # the default data dir (./thingport-data) alike
    assert_one_error_line(thingport(*args, cwd=tmp_path), "does not exist")
    assert not (tmp_path / "thingport-data").exists()


def test_the_first_create_makes_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for args in (("product", "create", "--name", "p"), ("apikey", "create", "--name", "k")):
        result = thingport(*args, "--data-dir", str(data))
        assert result.returncode == 0, result.stderr
    assert (data / "thingport.db").exists() and (data / "master.key").exists()
