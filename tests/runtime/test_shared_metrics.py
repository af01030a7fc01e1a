"""Workers' metrics merged: a worker that exits keeps its counts in the sum (no counter goes backwards on a
restart), but not its gauges; process metrics stay apart per worker."""

import asyncio
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from thingport.metrics import DeviceMetrics
from thingport.runtime.shared_metrics import Snapshots, WorkersCollector, mark_process_dead, merge


def families(name: str, kind: str, samples: list) -> list[dict]:
    return [{"name": name, "type": kind, "help": "h", "samples": samples}]


def test_a_dead_workers_counters_stay_in_the_sum_and_its_gauges_go() -> None:
    merged = {m.name: m for m in merge([
        ("1", True, families("reqs", "counter", [["reqs_total", {"code": "0"}, 3.0]])
         + families("backlog", "gauge", [["backlog", {}, 7.0]])),
        ("2", False, families("reqs", "counter", [["reqs_total", {"code": "0"}, 4.0]])
         + families("backlog", "gauge", [["backlog", {}, 9.0]])),
        ("3", True, families("process_open_fds", "gauge", [["process_open_fds", {}, 12.0]])),
        ("4", True, families("process_open_fds", "gauge", [["process_open_fds", {}, 15.0]])),
    ])}
    assert [s.value for s in merged["reqs"].samples] == [7.0]
    assert [s.value for s in merged["backlog"].samples] == [7.0]
    assert {(s.labels["pid"], s.value) for s in merged["process_open_fds"].samples} == {("3", 12.0), ("4", 15.0)}


def test_a_snapshot_written_at_stop_is_read_by_the_serving_worker_after_its_writer_died(tmp_path: Path) -> None:
    other = DeviceMetrics()
    for _ in range(5):
        other.request("aliyun", "topic", "0", 0.002)
    Gauge("thingport_forward_backlog", "b", registry=other.registry).set(4)
    asyncio.run(_run_and_stop(Snapshots(other.registry, tmp_path)))
    (tmp_path / f"{os.getpid()}.json").rename(tmp_path / "4242.json")  # as if another worker had written it
    mine = DeviceMetrics()
    mine.request("aliyun", "topic", "0", 0.002)
    served = CollectorRegistry()
    served.register(WorkersCollector(mine.registry, tmp_path))
    text = generate_latest(served).decode()
    assert 'thingport_requests_total{code="0",dialect="aliyun",endpoint="topic"} 6.0' in text
    assert "thingport_forward_backlog 4.0" in text
    mark_process_dead(tmp_path, 4242)
    text = generate_latest(served).decode()
    assert 'thingport_requests_total{code="0",dialect="aliyun",endpoint="topic"} 6.0' in text
    assert 'thingport_request_seconds_count{dialect="aliyun",endpoint="topic"} 6.0' in text
    assert "thingport_forward_backlog" not in text.replace("# HELP thingport_forward_backlog", "").replace(
        "# TYPE thingport_forward_backlog", "")


async def _run_and_stop(snapshots: Snapshots) -> None:
    snapshots.start()
    await asyncio.sleep(0)
    await snapshots.stop()  # its last write: what it counted until it stopped
