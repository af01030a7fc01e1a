"""The README's device SDK examples, run verbatim against a real server.

They are read from README.md's "## Device SDK (Python)" section; every ``python`` block runs as written, with only
the endpoint's port changed to the test server's. The names they use are created here: product
``a1XdW3RQiM6`` with ``th-0001`` (and children ``th-0002``/``th-0003`` of gateway ``a1GwAyQk3Pz``/``gw-0001``),
secrets in ``DEVICE_SECRET``/``GATEWAY_SECRET``, the certificate in ``./thingport-data``.
"""

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device.conftest import stored
from tests.support import ServerProcess, cli

HEADING = "## Device SDK (Python)"
README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def sections() -> dict[str, str]:
    readme = README.read_text()
    assert HEADING in readme, f"README.md lost its {HEADING!r} section"
    start = readme.index(HEADING)
    end = readme.find("\n## ", start + len(HEADING))
    return {"README.md": readme[start:end if end != -1 else None]}


@pytest.fixture(scope="module")
def named_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("readme")
    server = ServerProcess(home / "thingport-data").start()
    try:
        data = server.data_dir
        cli(data, "product", "create", "--name", "TH collector", "--product-key", "a1XdW3RQiM6")
        cli(data, "product", "create", "--name", "TH gateway", "--product-key", "a1GwAyQk3Pz", "--node-type", "gateway")
        device = cli(data, "device", "create", "--product-key", "a1XdW3RQiM6", "--name", "th-0001")
        gateway = cli(data, "device", "create", "--product-key", "a1GwAyQk3Pz", "--name", "gw-0001")
        server.secrets = {"DEVICE_SECRET": device["deviceSecret"],  # type: ignore[attr-defined]
                          "GATEWAY_SECRET": gateway["deviceSecret"]}
        for name in ("th-0002", "th-0003"):
            cli(data, "device", "create", "--product-key", "a1XdW3RQiM6", "--name", name,
                "--gateway", "a1GwAyQk3Pz/gw-0001")
        yield server
    finally:
        server.stop()


def test_the_section_is_there_and_has_examples() -> None:
    found = sections()
    assert found, f"no '{HEADING}' section in README.md"
    for name, text in found.items():
        assert len(BLOCK.findall(text)) >= 5, name


@pytest.mark.parametrize("source", sorted(sections()))
def test_readme_examples_run(named_server: ServerProcess, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(named_server.data_dir.parent)
    for name, value in named_server.secrets.items():  # type: ignore[attr-defined]
        monkeypatch.setenv(name, value)
    before = len(stored(named_server, {"productKey": "a1XdW3RQiM6", "deviceName": "th-0001"}))
    out = io.StringIO()
    for i, block in enumerate(BLOCK.findall(sections()[source])):
        code = block.replace("https://localhost:8443", f"https://localhost:{named_server.port}")
        with contextlib.redirect_stdout(out):
            program = compile(code, f"{source} python block {i + 1}", "exec")
            exec(program, {"__name__": f"readme_{i}"})  # noqa: S102 - running the documented examples is the point
    printed = out.getvalue()
    assert "stored as" in printed and "10 reports stored" in printed
    assert "30001 publish message error" in printed  # the error example met the error it shows
    assert len(stored(named_server, {"productKey": "a1XdW3RQiM6", "deviceName": "th-0001"})) > before
    children = [stored(named_server, {"productKey": "a1XdW3RQiM6", "deviceName": n}) for n in ("th-0002", "th-0003")]
    assert all(children)
