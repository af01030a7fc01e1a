"""The package's extras hold: the device SDK runs on the base install alone, the server runs on the embedded
default without any backend extra, and a missing extra is named instead of a bare ImportError.

Each check runs a real Python process in which the libraries of the extras it must not need cannot be
imported (a ``sitecustomize`` on ``PYTHONPATH`` refuses them), so an import that creeps into the wrong place
fails here rather than on a user's machine.
"""

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.support import ServerProcess, cli

ROOT = Path(__file__).resolve().parent.parent

# distribution name (as pyproject.toml lists it) -> the top-level modules it installs
MODULES = {
    "uvicorn": ["uvicorn", "uvloop", "httptools"],
    "httptools": ["httptools"],
    "msgspec": ["msgspec"],
    "lark": ["lark"],
    "click": ["click"],
    "cryptography": ["cryptography"],
    "pydantic-settings": ["pydantic_settings", "pydantic"],
    "fastapi": ["fastapi", "starlette"],
    "prometheus-client": ["prometheus_client"],
    "swagger-ui-bundle": ["swagger_ui_bundle"],
    "psycopg": ["psycopg"],
    "alembic": ["alembic", "sqlalchemy"],
    "redis": ["redis"],
    "pamqp": ["pamqp"],
    "nats-py": ["nats"],
    "paho-mqtt": ["paho"],
}
BACKENDS = ("postgres", "redis", "rabbitmq", "nats", "mqtt")

_BLOCKER = '''
import os, sys
_blocked = set(filter(None, os.environ.get("THINGPORT_TEST_BLOCK", "").split(",")))

class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, _Refuse())
'''


def _distribution(requirement: str) -> str:
    for stop in "[<>=!~ ;":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip()


def modules_of(*extras: str) -> list[str]:
    """The top-level modules the given extras install (every requirement must be in MODULES)."""
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = []
    for extra in extras:
        for requirement in optional[extra]:
            names.extend(MODULES[_distribution(requirement)])
    return names


@pytest.fixture
def blocked_env(tmp_path: Path):
    """An environment for a subprocess in which ``modules`` cannot be imported."""
    (tmp_path / "sitecustomize.py").write_text(_BLOCKER)

    def env(modules: list[str]) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        return {**os.environ, "PYTHONPATH": path, "THINGPORT_TEST_BLOCK": ",".join(modules)}

    return env


def test_every_extra_requirement_is_known_to_these_tests() -> None:
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(optional["all"]) == {f"thingport[server,{','.join(BACKENDS)}]"}
    for extra in ("server", *BACKENDS):
        assert modules_of(extra)  # raises KeyError for a requirement this file does not map
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [_distribution(r) for r in base] == ["httpx"]


def test_the_device_sdk_runs_on_the_base_install_alone(server: ServerProcess, device: dict, blocked_env) -> None:
    code = textwrap.dedent(f"""
        from thingport.device import AliyunDevice, HuaweiDevice  # noqa: F401 - both import
        with AliyunDevice("https://localhost:{server.port}", {device['productKey']!r}, {device['deviceName']!r},
                          {device['deviceSecret']!r}, ca_file={str(server.cert)!r}) as dev:
            print(dev.publish(dev.user_topic("alone"), b"sdk only"))
        import sys
        assert not any(m.partition(".")[0] in {{"uvicorn", "click", "msgspec"}} for m in sys.modules)
    """)
    blocked = modules_of("server", *BACKENDS)
    done = subprocess.run([sys.executable, "-c", code], env=blocked_env(blocked), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0  # the server's messageId: stored


def test_the_server_runs_on_the_embedded_default_without_backend_extras(tmp_path: Path, blocked_env) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, env=blocked_env(modules_of(*BACKENDS)))
    server.start()
    try:
        product = cli(data_dir, "product", "create", "--name", "noextras")
        device = cli(data_dir, "device", "create", "--product-key", product["productKey"], "--name", "dev-1")
        client = server.client()
        token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
        reply = client.publish(f"/{device['productKey']}/dev-1/user/x", b"hello", token)
        assert reply.json["code"] == 0, reply.json
        client.close()
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_the_thingport_command_names_the_server_extra_when_it_is_missing(blocked_env) -> None:
    done = subprocess.run([sys.executable, "-m", "thingport", "product", "list"], env=blocked_env(["click"]),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: click is not installed: the thingport command needs the server,"
        " pip install 'thingport[server]' (or [all])"
    ]


@pytest.mark.parametrize(("extra", "code"), [
    ("postgres", "import thingport.store.postgres_db"),
    ("postgres", "import thingport.store.pg_schema"),
    ("redis", "import thingport.state.redis_link"),
])
def test_a_missing_backend_names_its_extra(extra: str, code: str, blocked_env) -> None:
    done = subprocess.run([sys.executable, "-c", code], env=blocked_env(modules_of(extra)), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "MissingExtra: " in done.stderr and f"pip install 'thingport[{extra}]'" in done.stderr


@pytest.mark.parametrize(("sink", "extra"), [("rabbitmq", "rabbitmq"), ("nats", "nats"), ("mqtt", "mqtt")])
def test_a_sink_whose_extra_is_missing_is_refused_with_the_extra_named(sink: str, extra: str, blocked_env) -> None:
    code = textwrap.dedent(f"""
        from thingport.bus.base import SinkConfigError
        from thingport.bus.factory import create_sink
        try:
            create_sink({sink!r}, {{"url": "x://127.0.0.1"}})
        except SinkConfigError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], env=blocked_env(modules_of(extra)), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"pip install 'thingport[{extra}]'" in done.stdout
