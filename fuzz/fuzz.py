"""atheris entry point: ``python fuzz/fuzz.py TARGET [libFuzzer options] [corpus dirs]``.

Prefer ``fuzz/run.sh TARGET SECONDS``, which sets a time budget, a corpus and where findings go.
"""

import sys

import atheris

if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
    sys.exit("usage: fuzz.py TARGET [libFuzzer options] [corpus dirs]")
name = sys.argv.pop(1)

with atheris.instrument_imports(include=["thingport", "targets"]):
    import targets  # noqa: E402  (fuzz/ is on sys.path: this file's directory)

if name not in targets.TARGETS:
    sys.exit(f"unknown target {name}; one of: {', '.join(targets.TARGETS)}")

atheris.Setup(sys.argv, targets.TARGETS[name])
atheris.Fuzz()
