"""The packaging (README "Packaging"): the Dockerfile, deploy/compose.yaml and deploy/thingport.service.

This machine (and CI) has the docker CLI but no container engine, so the image is never built here. Instead
the Dockerfile is read and its invariants checked (multi-stage slim image, non-root user, the data dir as a
volume, a healthcheck on a path the API serves, exposed ports = the defaults), then its build stage is
replayed outside a container: its COPY steps into a temporary directory, its RUN install steps (the same
pip commands, ``/opt/thingport`` moved to a temporary venv) run as written, and the installed server started
as the image's ENTRYPOINT/CMD would, with the env the image sets, until the image's own HEALTHCHECK command
passes. The compose file is parsed and its env checked against the settings thingport reads; the systemd
unit is verified with ``systemd-analyze`` (where installed) and its ExecStart run the same way.

The one install (a fresh venv, every backend) takes 30-50 s; the tests that need it share it.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from thingport.api.health import router as health_router
from thingport.settings import Settings
from thingport.store.keys import MASTER_KEY_ENV

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
UNIT = ROOT / "deploy" / "thingport.service"
VENV = "/opt/thingport"  # where the image and the unit install thingport
START_TIMEOUT_S = 60


# --- reading a Dockerfile ---------------------------------------------------------------------------------

@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The instruction's JSON array (exec form), e.g. CMD ["serve"]."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in the stage from {self.base}, found {len(found)}"
        return found[0]

    def env(self) -> dict[str, str]:
        """Its ENV key=value pairs, in order (``$PATH`` left for the caller to expand)."""
        env: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.args):
                key, _, value = pair.partition("=")
                env[key] = value
        return env


def read_dockerfile(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """The ARG defaults before the first FROM and the stages, with line continuations joined."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            stages.append(Stage(base, words[2] if len(words) == 3 and words[1].upper() == "AS" else None))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


def run_command(instruction: Instruction) -> str:
    """A RUN's shell command, without its BuildKit flags (``--mount=…``)."""
    words = instruction.args.split(" ")
    while words and words[0].startswith("--"):
        words.pop(0)
    return " ".join(words).strip()


def settings_names() -> set[str]:
    """Every ``THINGPORT_*`` variable thingport reads."""
    return {f"THINGPORT_{name.upper()}" for name in Settings.model_fields} | {MASTER_KEY_ENV}


def default(name: str) -> object:
    return Settings.model_fields[name].default


# --- a server started as the image or the unit starts it ---------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(api_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/readyz", timeout=2) as reply:
            return reply.status == 200 and json.load(reply)["status"] == "ready"
    except OSError:
        return False


def stop(process: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM (the image's STOPSIGNAL, the unit's KillSignal), as docker stop and systemctl stop send it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's build stage replayed: COPY into a context directory, then its RUN steps, with the
    venv at a temporary path instead of /opt/thingport. Returns the venv."""
    _, stages = read_dockerfile()
    build = stages[0]
    work = tmp_path_factory.mktemp("image")
    venv = work / "opt-thingport"
    workdir = work / build.one("WORKDIR").args.lstrip("/")
    workdir.mkdir(parents=True)
    for copy in build.all("COPY"):
        *sources, target = copy.args.split()
        destination = workdir / target
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination / origin.name)
    shim = work / "bin"  # the base image's `python`: this interpreter's base (3.11+, as pyproject requires)
    shim.mkdir()
    (shim / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {**os.environ, **build.env(), "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    for instruction in build.all("RUN"):
        command = run_command(instruction).replace(VENV, str(venv))
        done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"RUN {command}\n{done.stdout}\n{done.stderr}"
    assert (venv / "bin" / "thingport").exists()
    return venv


# --- Dockerfile -------------------------------------------------------------------------------------------

def test_the_image_is_multi_stage_on_a_slim_python() -> None:
    args, stages = read_dockerfile()
    assert len(stages) >= 2, "the runtime stage must not carry the build's files"
    assert all(re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage.base) for stage in stages), [s.base for s in stages]
    runtime = stages[-1]
    copies = runtime.all("COPY")
    assert copies and all(c.args.startswith(f"--from={stages[0].name} ") for c in copies), \
        "the runtime stage takes only the build's venv"
    assert [c.args.split()[-1] for c in copies] == [VENV]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minor = int(re.fullmatch(r">=3\.(\d+)", requires).group(1))  # type: ignore[union-attr]
    assert all(int(stage.base.split(".")[1].split("-")[0]) >= minor for stage in stages)
    assert stages[0].base == args["PYTHON_IMAGE"] == runtime.base, "one Python for the venv's build and its run"


def test_the_image_runs_as_a_user_of_its_own_with_the_data_dir_as_a_volume() -> None:
    _, stages = read_dockerfile()
    runtime = stages[-1]
    user = runtime.one("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0), "numeric and not root (runAsNonRoot)"
    data_dir = runtime.env()["THINGPORT_DATA_DIR"]
    assert runtime.one("VOLUME").exec_form() == [data_dir]
    assert runtime.one("WORKDIR").args == data_dir
    setup = " ".join(run_command(r) for r in runtime.all("RUN"))
    assert f"--uid {uid}" in setup and re.search(rf"install -d -o \S+ -g \S+ -m 0700 {re.escape(data_dir)}", setup), \
        "the volume's directory must exist and belong to the user before VOLUME (a new volume copies its owner)"
    assert runtime.instructions.index(runtime.one("USER")) > max(
        runtime.instructions.index(r) for r in runtime.all("RUN")), "nothing runs as root after USER"


def test_the_image_sets_only_settings_thingport_reads_and_exposes_the_default_ports() -> None:
    _, stages = read_dockerfile()
    runtime = stages[-1]
    env = runtime.env()
    unknown = {k for k in env if k.startswith("THINGPORT_")} - settings_names()
    assert not unknown, f"not thingport settings: {unknown}"
    assert env["THINGPORT_API_HOST"] == "0.0.0.0", "the API must listen where a published port reaches it"
    assert "THINGPORT_PORT" not in env and "THINGPORT_API_PORT" not in env
    exposed = {int(p) for p in runtime.one("EXPOSE").args.split()}
    assert exposed == {default("port"), default("api_port")}
    entrypoint, cmd = runtime.one("ENTRYPOINT").exec_form(), runtime.one("CMD").exec_form()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["thingport"] and "thingport" in scripts and cmd == ["serve"]


def test_the_healthcheck_asks_readyz_which_the_api_serves() -> None:
    _, stages = read_dockerfile()
    healthcheck = stages[-1].one("HEALTHCHECK")
    options, _, command = healthcheck.args.partition("CMD ")
    assert re.search(r"--start-period=\d+s", options) and re.search(r"--timeout=\d+s", options)
    argv = json.loads(command)
    assert argv[0] == "python" and "/readyz" in argv[-1] and "THINGPORT_API_PORT" in argv[-1]
    assert "/readyz" in {route.path for route in health_router.routes}  # type: ignore[attr-defined]


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    """.dockerignore lets in exactly what COPY names (and the checkout's venv and data stay out)."""
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "*", "everything out by default: no .venv, thingport-data or .git in the context"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    _, stages = read_dockerfile()
    copied = {source for copy in stages[0].all("COPY") for source in copy.args.split()[:-1]}
    assert copied == allowed
    assert all((ROOT / source).exists() for source in copied)


def test_the_image_build_steps_install_a_server_that_becomes_ready(installed: Path, tmp_path: Path) -> None:
    """ENTRYPOINT + CMD with the image's ENV (only the ports moved to free ones: the machine is shared), until
    the image's own HEALTHCHECK command passes; it fails while nothing serves."""
    _, stages = read_dockerfile()
    runtime = stages[-1]
    data_dir = tmp_path / "var-lib-thingport"
    data_dir.mkdir(mode=0o700)
    image_env = {k: v.replace("$PATH", os.environ["PATH"]).replace(VENV, str(installed))
                 for k, v in runtime.env().items()}
    image_env["THINGPORT_DATA_DIR"] = str(data_dir)
    port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGPORT_") and k != "VIRTUAL_ENV"}
    env |= image_env | {"THINGPORT_PORT": str(port), "THINGPORT_API_PORT": str(api_port)}
    healthcheck = runtime.one("HEALTHCHECK").args.partition("CMD ")[2]
    check = json.loads(healthcheck)

    def healthy() -> bool:
        return subprocess.run(check, env=env, capture_output=True, timeout=10).returncode == 0

    assert not healthy(), "the healthcheck must fail while nothing serves"
    argv = runtime.one("ENTRYPOINT").exec_form() + runtime.one("CMD").exec_form()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(argv, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy():
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        assert shutil.which("thingport", path=env["PATH"]) == str(installed / "bin" / "thingport")
        assert (data_dir / "thingport.db").exists() and (data_dir / "tls-cert.pem").exists()
    finally:
        code = stop(server)
    assert code == 0, (tmp_path / "server.log").read_text()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


# --- compose ----------------------------------------------------------------------------------------------

def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (the last: VAR must be given)."""
    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if op == ":?":
            assert variables.get(name), f"{name} is required ({rest}) and env.example does not give it"
            return variables[name]
        if op == ":-":
            return variables.get(name) or rest
        return variables[name]
    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


def compose_env() -> tuple[dict, dict[str, str]]:
    """The compose file and the thingport service's environment, interpolated with env.example's values (its
    empty master key given one, as a user must)."""
    compose = yaml.safe_load(COMPOSE.read_text())
    variables = {}
    for line in (COMPOSE.parent / "env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            variables[name] = value
    assert set(variables) >= {"POSTGRES_PASSWORD", MASTER_KEY_ENV}
    variables[MASTER_KEY_ENV] = variables[MASTER_KEY_ENV] or "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80="
    env = {k: _interpolate(str(v), variables) for k, v in compose["services"]["thingport"]["environment"].items()}
    return compose, env


def test_compose_runs_thingport_in_production_mode_with_postgresql_redis_and_a_broker() -> None:
    compose, env = compose_env()
    services = compose["services"]
    assert {"thingport", "postgres", "redis"} <= set(services) and {"rabbitmq", "nats"} & set(services)
    thingport = services["thingport"]
    assert (COMPOSE.parent / thingport["build"]["context"] / thingport["build"]["dockerfile"]).resolve() == DOCKERFILE
    unknown = set(env) - settings_names()
    assert not unknown, f"not thingport settings: {unknown}"
    # the values are ones thingport accepts (the URL's scheme, the workers' range, ...)
    settings = Settings(**{k.removeprefix("THINGPORT_").lower(): v for k, v in env.items() if k != MASTER_KEY_ENV})
    database = re.fullmatch(r"postgresql://(\w+):([^@]+)@(\w+):5432/(\w+)", settings.database_url or "")
    assert database, settings.database_url
    postgres = services["postgres"]["environment"]
    assert database.group(3) == "postgres" and database.group(1) == postgres["POSTGRES_USER"]
    assert database.group(4) == postgres["POSTGRES_DB"]
    assert re.fullmatch(r"redis://redis:6379/\d+", settings.redis_url or "")
    assert settings.db_upgrade and env[MASTER_KEY_ENV]  # same key on every instance, not a file in the volume
    assert thingport["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in thingport["depends_on"]:
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck to wait for"


def test_compose_keeps_the_image_data_dir_and_publishes_the_api_on_this_host_only() -> None:
    compose, _ = compose_env()
    thingport = compose["services"]["thingport"]
    _, stages = read_dockerfile()
    data_dir = stages[-1].env()["THINGPORT_DATA_DIR"]
    assert any(v.split(":")[1] == data_dir and v.split(":")[0] in compose["volumes"] for v in thingport["volumes"])
    published = {p.rsplit(":", 1)[-1]: p for p in thingport["ports"]}
    assert set(published) == {str(default("port")), str(default("api_port"))}
    assert published[str(default("api_port"))].startswith("127.0.0.1:")
    assert all(service.get("restart") == "unless-stopped" for service in compose["services"].values())


# --- systemd ----------------------------------------------------------------------------------------------

def read_unit(path: Path = UNIT) -> dict[str, list[tuple[str, str]]]:
    """Sections of (key, value) pairs, keys repeated as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep, f"not a unit line: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def service_value(key: str) -> str:
    values = [v for k, v in read_unit()["Service"] if k == key]
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def unit_environment() -> dict[str, str]:
    return dict(pair.split("=", 1) for k, v in read_unit()["Service"] if k == "Environment" for pair in shlex.split(v))


def test_the_unit_runs_as_a_user_with_its_data_dir_restarted_and_hardened() -> None:
    assert service_value("User") not in ("root", "0")
    data_dir = f"/var/lib/{service_value('StateDirectory')}"
    assert unit_environment()["THINGPORT_DATA_DIR"] == data_dir == service_value("WorkingDirectory")
    assert service_value("StateDirectoryMode") == "0700"
    assert service_value("Restart") == "on-failure"
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")]:
        assert service_value(key) == value, key
    assert set(unit_environment()) <= settings_names()
    assert service_value("ExecStart").split()[0] == f"{VENV}/bin/thingport"  # where the image installs it too
    assert ("WantedBy", "multi-user.target") in read_unit()["Install"]


@pytest.fixture
def verifiable_unit(installed: Path, tmp_path: Path) -> Path:
    """The unit with its ExecStart on the test's venv (systemd-analyze checks that the binary exists)."""
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(f"{VENV}/bin/", f"{installed}/bin/"))
    return unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit_and_rates_its_exposure_low(verifiable_unit: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(verifiable_unit)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    # exposure 0-10 (systemd's own scale; x10 for --threshold): refuse anything above "OK" (< 2.0)
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager",
                           str(verifiable_unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert re.search(r"Overall exposure level for \S+: 1\.\d OK", done.stdout), done.stdout[-500:]


def test_the_units_exec_start_serves_with_the_units_environment(installed: Path, tmp_path: Path) -> None:
    """ExecStart as systemd runs it: the unit's Environment= (the data dir moved to a temporary one, the
    ports to free ones), cwd its WorkingDirectory; ready, then stopped by its KillSignal with exit 0."""
    data_dir = tmp_path / "var-lib-thingport"
    data_dir.mkdir(mode=0o700)
    port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINGPORT_") and k != "VIRTUAL_ENV"}
    env |= {k: v.replace(service_value("WorkingDirectory"), str(data_dir)) for k, v in unit_environment().items()}
    env |= {"THINGPORT_PORT": str(port), "THINGPORT_API_PORT": str(api_port)}
    argv = shlex.split(service_value("ExecStart").replace(f"{VENV}/bin/", f"{installed}/bin/"))
    assert service_value("KillSignal") == "SIGTERM"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(argv, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready(api_port):
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        assert (data_dir / "thingport.db").exists() and (data_dir / "master.key").stat().st_mode & 0o077 == 0
    finally:
        code = stop(server, timeout=float(service_value("TimeoutStopSec")))
    assert code == 0, (tmp_path / "server.log").read_text()
