"""The README's quick start, run as written: every command of its fenced blocks, in order, in one shell from
the checkout, against the server its first line starts. Only the ports and the data dir differ (free ports,
a temporary dir): the commands' own text is rewritten for them, and the environment tells the server and
the CLI."""

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import cli, free_port
from thingport.cli import main

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    """The shell commands of the Quick start section's fenced blocks: comment lines dropped, a line ending
    in a backslash joined with the next."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending += line + "\n"
            if not line.endswith("\\"):
                commands.append(pending)
                pending = ""
        assert not pending, f"a command ends in a backslash: {pending!r}"
    return commands


def test_the_quick_start_finds_its_commands() -> None:
    commands = quick_start_commands()
    assert commands[0].startswith("./scripts/serve &")
    assert any("device auth-request" in c for c in commands)
    assert any("apikey create" in c for c in commands)
    assert not any(re.search(r"(^|[\s(])thingport ", c) for c in commands), "thingport is not on PATH"


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    data_dir = tmp_path / "thingport-data"
    lines = ["set -u"]
    for number, command in enumerate(quick_start_commands(), 1):
        command = (command.replace(":8443", f":{port}").replace(":8080", f":{api_port}")
                   .replace("thingport-data/", f"{data_dir}/"))
        lines.append(f"echo '>>> {number}' >&2")
        if command.rstrip().split("#")[0].rstrip().endswith("&"):
            lines.append(command)  # the server, in the background
            continue
        lines.append(f"{{\n{command}}} || {{ echo 'quick start command {number} failed' >&2; exit 1; }}")
    lines.append("echo quick-start-done")
    env = {**os.environ, "THINGPORT_DATA_DIR": str(data_dir), "THINGPORT_HOST": "127.0.0.1",
           "THINGPORT_PORT": str(port), "THINGPORT_API_PORT": str(api_port), "THINGPORT_LOG_LEVEL": "warning"}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "thingport").exists())
    # files, not pipes: the backgrounded server keeps its stdout open after the shell is done
    with open(tmp_path / "out", "w") as out_file, open(tmp_path / "err", "w") as err_file:
        shell = subprocess.Popen(["bash", "-c", "\n".join(lines)], cwd=ROOT, env=env, stdout=out_file,
                                 stderr=err_file, start_new_session=True)
    try:
        shell.wait(timeout=300)
    finally:
        # the backgrounded server is in the shell's session: end that process group (ours alone)
        try:
            os.killpg(shell.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert shell.returncode == 0 and "quick-start-done" in out, f"stdout:\n{out}\nstderr:\n{err}"
    assert '"code":0' in out.replace(" ", "") and '"token"' in out
    status = cli(data_dir, "device", "status", "--product-key", "a1XdW3RQiM6", "--name", "th-0001")
    assert status["properties"]["temperature"]["value"] == 21
    assert status["properties"]["humidity"]["value"] == 60


@pytest.mark.parametrize("name", ["collector-tsl.json", "collector-iotda-model.json"])
def test_the_example_models_load(tmp_path: Path, name: str) -> None:
    product = cli(tmp_path / "d", "product", "create", "--name", "c", "--model", str(ROOT / "examples" / name))
    exported = CliRunner().invoke(main, ["product", "model", "export", "--product-key", product["productKey"],
                                         "--data-dir", str(tmp_path / "d")])
    assert exported.exit_code == 0, exported.output
    assert "temperature" in exported.output and "humidity" in exported.output
