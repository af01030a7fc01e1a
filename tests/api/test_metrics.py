"""/metrics as a Prometheus scraper sees it: a ``metrics`` key, refusals by kind and code, devices online,
process metrics, every worker's counts in one sum, and the Grafana dashboard's queries all answered."""

import json
import re
import time
from pathlib import Path

import httpx

from tests.api.test_api import fill_path
from tests.dialects.test_alink_reports_https import SEED_004_TSL
from tests.support import ServerProcess, cli, wait_until
from tests.test_cluster import worker_of

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "thingport.json"


def scrape(server: ServerProcess, key: str) -> str:
    reply = httpx.get(f"http://127.0.0.1:{server.api_port}/metrics", timeout=10,
                      headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.text
    return reply.text


def value(text: str, name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels`` (0 when there is none)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(sample_labels.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_metrics_key_reads_metrics_and_nothing_else(server: ServerProcess, anonymous: httpx.Client) -> None:
    key = cli(server.data_dir, "apikey", "create", "--name", "prometheus", "--role", "metrics")
    assert key["role"] == "metrics"
    assert "# TYPE thingport_requests_total counter" in scrape(server, key["key"])
    headers = {"Authorization": f"Bearer {key['key']}"}
    checked = 0
    for path, operations in anonymous.get("/openapi.json").json()["paths"].items():
        if path in ("/healthz", "/readyz", "/metrics"):
            continue
        for method in operations:
            reply = anonymous.request(method, fill_path(path), headers=headers)
            assert reply.status_code == 403, (method, path, reply.status_code)
            assert reply.json()["error"]["message"] == "API key 'prometheus' may only read /metrics"
            checked += 1
    assert checked >= 25


def test_refusals_are_counted_by_kind_and_validation_code(server: ServerProcess, api: httpx.Client) -> None:
    product = api.post("/api/products", json={"name": "metered", "thingModel": SEED_004_TSL}).json()
    pk = product["productKey"]
    device = api.post("/api/devices", json={"productKey": pk, "deviceName": "meter-1"}).json()
    assert "deviceName" in device, (product, device)
    other = api.post("/api/devices", json={"productKey": pk, "deviceName": "meter-2"}).json()
    client = server.client()
    token = client.token(pk, device["deviceName"], device["deviceSecret"])
    before = api.get("/metrics").text
    post = f"/sys/{pk}/meter-1/thing/event/property/post"
    reply = client.publish(post, json.dumps({"id": "1", "params": {"temperature": 99}}).encode(), token).json
    assert reply["code"] == 0  # stored, with the Alink reply that refuses the value: 6306 (int out of range)
    refusal_code = "6306"
    denied = client.publish(f"/sys/{pk}/{other['deviceName']}/thing/event/property/post", b"{}", token).json
    assert denied["code"] != 0
    client.close()
    after = api.get("/metrics").text
    assert (value(after, "thingport_validation_refusals_total", dialect="aliyun", code=refusal_code)
            == value(before, "thingport_validation_refusals_total", dialect="aliyun", code=refusal_code) + 1)
    assert (value(after, "thingport_request_errors_total", dialect="aliyun", error="topic_denied")
            == value(before, "thingport_request_errors_total", dialect="aliyun", error="topic_denied") + 1)
    assert value(after, "thingport_request_errors_total", error="store_unavailable") == 0  # kept apart
    assert value(after, "thingport_devices_online", product=pk) == 1  # meter-1 reported; meter-2 never did
    assert value(after, "process_resident_memory_bytes") > 0 and value(after, "process_open_fds") > 0


def test_every_metric_the_dashboard_queries_is_in_metrics(api: httpx.Client) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    names = {n for q in queries for n in re.findall(r"\b((?:thingport|process)_[a-z_]+)\b", q)}
    assert len(names) >= 10, names
    assert {"thingport_alarms", "thingport_rule_backlog", "thingport_rule_matched_total", "thingport_rule_failed_total",
            "thingport_rule_action_failures_total"} <= names  # the alarms and rules panels
    text = api.get("/metrics").text
    families = set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))
    suffixes = ("_total", "_bucket", "_sum", "_count")
    missing = {n for n in names if n not in families and not any(
        n.endswith(s) and n.removesuffix(s) in families for s in suffixes)}
    assert not missing, missing


def test_metrics_of_two_workers_are_summed(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", args=("--workers", "2")).start()
    try:
        key = cli(server.data_dir, "apikey", "create", "--name", "prometheus", "--role", "metrics")["key"]
        product = cli(server.data_dir, "product", "create", "--name", "w")
        device = cli(server.data_dir, "device", "create", "--product-key", product["productKey"], "--name", "worker-1")
        token = server.client().token(device["productKey"], device["deviceName"], device["deviceSecret"])
        workers: set[int] = set()
        sent = 0
        deadline = time.monotonic() + 30  # the second worker may still be starting when the first answers
        while (len(workers) < 2 or sent < 20) and time.monotonic() < deadline:
            client = server.client()  # a new connection each time: the kernel spreads them over the workers
            doc = client.publish(f"/{device['productKey']}/worker-1/user/update", b"1", token).json
            client.close()
            assert doc["code"] == 0, doc
            workers.add(worker_of(doc["info"]["messageId"]))
            sent += 1
        assert len(workers) == 2

        def published() -> float:
            return value(scrape(server, key), "thingport_requests_total", dialect="aliyun", endpoint="topic", code="0")

        wait_until(published, "both workers' counts in /metrics", 10, 0.2, accept=lambda n: n == sent)
        text = scrape(server, key)
        assert value(text, "thingport_request_seconds_count", dialect="aliyun", endpoint="topic") == sent
        pids = set(re.findall(r'^process_resident_memory_bytes\{pid="(\d+)"\}', text, re.M))
        assert len(pids) == 2, text
    finally:
        server.stop()
