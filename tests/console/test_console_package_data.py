"""Every file the console serves is in the package's data: the vendored uPlot too, or an installed
thingport would serve a console whose charts fail to load."""

import tomllib
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "thingport"


def test_package_data_covers_every_console_file() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = setuptools["package-data"]["thingport"]
    files = [p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "console").rglob("*") if p.is_file()]
    assert "console/vendor/uPlot.iife.min.js" in files and "console/vendor/uPlot.LICENSE" in files
    # setuptools' "*" does not cross a "/": fnmatch's does, so compare the directories too
    missing = [f for f in files if not any(fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert missing == []


def test_the_vendored_uplot_is_the_version_the_readme_names() -> None:
    head = (PACKAGE / "console" / "vendor" / "uPlot.iife.min.js").read_text()[:120]
    assert "(v1.6.32)" in head
    assert "uPlot](https://github.com/leeoniya/uPlot) 1.6.32" in (ROOT / "README.md").read_text()
    assert "MIT License" in (PACKAGE / "console" / "vendor" / "uPlot.LICENSE").read_text()
