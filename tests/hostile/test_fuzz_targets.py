"""The fuzz targets (fuzz/targets.py) run here without atheris: over their seeds and findings, and over
hypothesis-made inputs (random bytes and mutated seeds), so the harness keeps working and its invariants
keep holding between fuzzing sessions. Known bugs are tolerated here as in the fuzzer (see targets.py)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"


def _load_targets():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("thingport_fuzz_targets", FUZZ / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load_targets()
NAMES = sorted(targets.TARGETS)


def seeds(name: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((FUZZ / "seeds" / name).iterdir())]


def test_every_target_has_seeds_and_the_runner_exists() -> None:
    assert (FUZZ / "run.sh").stat().st_mode & 0o111, "fuzz/run.sh must be executable"
    for name in NAMES:
        assert seeds(name), f"no seeds for {name}"


@pytest.mark.parametrize("name", NAMES)
def test_target_accepts_its_seeds_and_findings(name: str) -> None:
    for data in seeds(name):
        targets.TARGETS[name](data)


@st.composite
def mutated(draw: st.DrawFn, corpus: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(corpus)))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        how = draw(st.sampled_from(["flip", "insert", "delete", "splice"]))
        i = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if how == "flip" and data:
            data[i] = draw(st.integers(min_value=0, max_value=255))
        elif how == "insert":
            data[i:i] = draw(st.sampled_from([b'"', b"{", b"[", b"}", b"]", b",", b":", b"0", b"-", b"e9", b"\\u0000",
                                              b"null", b"true", b"1e400", b"99999999999999999999", b"/", b"+", b"#"]))
        elif how == "delete" and data:
            del data[i:i + draw(st.integers(min_value=1, max_value=8))]
        else:
            data[i:i] = draw(st.sampled_from(corpus))[: draw(st.integers(min_value=1, max_value=64))]
    return bytes(data)


@pytest.mark.parametrize("name", NAMES)
def test_target_holds_on_generated_inputs(name: str) -> None:
    target: Callable[[bytes], None] = targets.TARGETS[name]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=512), mutated(seeds(name))))
    def run(data: bytes) -> None:
        target(data)

    run()
