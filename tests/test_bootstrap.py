"""scripts/bootstrap installs only when it must: once ``all,test`` is in (as scripts/test leaves it),
alternating ``./scripts/serve`` (``all``), ``./scripts/test`` (``all,test``) and ``./scripts/thingport``
runs pip not once. Checked with a ``pip`` on ``PYTHONPATH`` that records being run and fails."""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pip_shim(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose ``python -m pip`` writes its arguments to the returned marker file and fails."""
    shim = tmp_path / "shim" / "pip"
    shim.mkdir(parents=True)
    marker = tmp_path / "pip-ran"
    (shim / "__init__.py").write_text("")
    (shim / "__main__.py").write_text(f"import sys\nopen({str(marker)!r}, 'a').write(' '.join(sys.argv) + '\\n')\n"
                                      "sys.exit(1)\n")
    return {**os.environ, "PYTHONPATH": str(shim.parent)}, marker


def installed_extras() -> set[str]:
    stamps = list((ROOT / ".venv").glob(".installed-*"))
    return set(stamps[0].read_text().strip().split(",")) if len(stamps) == 1 else set()


@pytest.mark.skipif(not {"all", "test"} <= installed_extras(), reason="this .venv was not made by scripts/bootstrap")
def test_alternating_serve_and_test_installs_nothing(tmp_path: Path) -> None:
    env, marker = pip_shim(tmp_path)
    for extras in ["all", "all,test", "all", "test", "all,test"]:
        run = subprocess.run([str(ROOT / "scripts" / "bootstrap"), extras], env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
    assert not marker.exists(), marker.read_text()
    # the CLI wrapper bootstraps the same way, then is the CLI
    run = subprocess.run([str(ROOT / "scripts" / "thingport"), "--version"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "thingport" in run.stdout, run.stderr
    assert not marker.exists()


@pytest.mark.skipif(not {"all", "test"} <= installed_extras(), reason="this .venv was not made by scripts/bootstrap")
def test_an_extra_not_yet_installed_runs_pip(tmp_path: Path) -> None:
    """The shim is seen: asking for an extra the stamp lacks reaches pip (which here fails)."""
    env, marker = pip_shim(tmp_path)
    run = subprocess.run([str(ROOT / "scripts" / "bootstrap"), "all,nosuch-extra"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0 and marker.exists()
    assert {"all", "test"} <= installed_extras()  # a failed install leaves the stamp as it was
