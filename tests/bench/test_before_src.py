"""bench/run.py --before-src: twins of the chosen rows served by a second source tree in the same run, each
next to its row, with resources of their own, and reported against it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `git archive` of this checkout's HEAD: a second tree, as an older commit's would be (and a shallow clone
    has no older one)."""
    where = tmp_path_factory.mktemp("before")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


def test_a_checkout_or_its_src_is_accepted_and_must_be_what_is_imported(run: ModuleType, old_tree: Path,
                                                                        tmp_path: Path) -> None:
    assert run.source_dir(old_tree) == run.source_dir(old_tree / "src") == (old_tree / "src").resolve()
    with pytest.raises(SystemExit, match="thingport package"):
        run.source_dir(tmp_path)


def test_twins_of_the_chosen_thingport_rows_only(run: ModuleType, old_tree: Path) -> None:
    src = run.source_dir(old_tree)
    rows = run.select_rows("topic,auth,topic-pg")
    twins = run.before_twins(rows, src, None)
    assert sorted(t.key for t in twins) == sorted(
        r.key.replace("/", "@before/", 1) for r in rows if r.name not in ("bare", "nginx"))
    assert all(t.goal is None and t.target.endswith("@before") and str(src) in t.what for t in twins)
    only = run.before_twins(rows, src, "topic/keep-alive")
    assert [t.key for t in only] == ["topic@before/keep-alive"]


def test_a_twin_serves_the_other_tree_with_resources_of_its_own(run: ModuleType, old_tree: Path) -> None:
    src = run.source_dir(old_tree)
    run.before_twins(run.select_rows("topic,topic-pg,topic-rabbitmq"), src, None)
    for name in ("thingport", "pg1", "forwarding"):
        target, twin = run.TARGETS[name], run.TARGETS[name + "@before"]
        assert twin.source == src and target.source is None
        assert twin.env["PYTHONPATH"].split(os.pathsep)[0] == str(src)
        assert {k: v for k, v in twin.env.items() if k != "PYTHONPATH"} == {
            k: v for k, v in target.env.items() if k != "PYTHONPATH"}
        assert twin.name != target.name
    assert run.TARGETS["pg1@before"].db_name != run.TARGETS["pg1"].db_name
    assert run.TARGETS["pg1@before"].database_url.endswith(run.TARGETS["pg1@before"].db_name)
    forwarding, twin = run.TARGETS["forwarding"], run.TARGETS["forwarding@before"]
    assert (twin.exchange, twin.queue) != (forwarding.exchange, forwarding.queue)


def test_the_cli_run_for_a_twin_runs_its_code(run: ModuleType, old_tree: Path) -> None:
    src = run.source_dir(old_tree)
    run.before_twins(run.select_rows("topic"), src, None)
    before = os.environ.get("PYTHONPATH")
    with run.code_of(run.TARGETS["thingport@before"]):
        out = subprocess.run([sys.executable, "-c", "import thingport; print(thingport.__file__)"],
                             env=run.clean_env(), capture_output=True, text=True, check=True, cwd=REPO)
        assert Path(out.stdout.strip()).is_relative_to(src)
    assert os.environ.get("PYTHONPATH") == before
    with run.code_of(run.TARGETS["thingport"]):
        assert os.environ.get("PYTHONPATH") == before


def test_each_twin_runs_next_to_its_target_first_and_second_by_turns(run: ModuleType) -> None:
    targets = ["bare", "thingport", "alink", "thingport@before"]
    assert run.round_order(targets, 1) == ["bare", "thingport", "thingport@before", "alink"]
    assert run.round_order(targets, 2) == ["bare", "thingport@before", "thingport", "alink"]


def test_a_twin_is_reported_after_its_row_and_against_it(run: ModuleType, old_tree: Path) -> None:
    src = run.source_dir(old_tree)
    rows = run.select_rows("topic")
    twins = run.before_twins(rows, src, "topic/keep-alive")
    topic = next(r for r in rows if r.key == "topic/keep-alive")
    assert run.row_order(topic) < run.row_order(twins[0]) < run.row_order(topic) + 1

    def result(row, rps: float, us: float):  # type: ignore[no-untyped-def]
        r = run.Result(row)
        r.rps, r.server_us, r.requests = rps, us, 1000
        r.rounds = [r]
        return r

    lines = run.before_summary([result(topic, 900.0, 100.0), result(twins[0], 1000.0, 90.0)])
    assert len(lines) == 1 and lines[0].startswith("- topic/keep-alive: 900 req/s now vs 1,000 before = **0.90**")
