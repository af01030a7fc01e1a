"""Downsampled history (``buckets``) and the CSV export, over HTTP, on SQLite and on PostgreSQL.

A device reports through the Alink batch post with times of its own (a run, a 10-minute gap, another run),
so the expected slices are computed here from the very values sent."""

import csv
import io
import json
import statistics
from collections.abc import Iterator

import httpx
import pytest

from tests.support import ServerProcess, cli

T0 = 1_780_000_000_000  # a fixed past time: device times are kept as given
TSL = {"properties": [
    {"identifier": "temperature", "name": "Temperature", "accessMode": "r",
     "dataType": {"type": "float", "specs": {"min": "-40", "max": "100", "unit": "°C"}}},
    {"identifier": "mode", "name": "Mode", "accessMode": "rw",
     "dataType": {"type": "enum", "specs": {"0": "off", "1": "eco", "2": "boost"}}},
    {"identifier": "power", "name": "Power", "accessMode": "rw",
     "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}}},
    {"identifier": "quiet", "name": "Never reported", "accessMode": "r", "dataType": {"type": "int", "specs": {}}},
]}
# (time, temperature, mode, power: Alink sends a bool as 0/1, kept so):
# 90 s of values every 3 s, nothing for 10 min, then 60 s more
SAMPLES = [(T0 + i * 3_000, round(20 + (i % 7) * 0.5 - (i % 3), 1), i % 3, int(i % 2 == 0)) for i in range(30)] + [
    (T0 + 690_000 + i * 3_000, 30.0 + i, 2, 1) for i in range(20)]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    url = None
    if request.param == "postgresql":
        from tests.postgres import fresh_database

        url = fresh_database()
    proc = ServerProcess(tmp_path_factory.mktemp("history") / "data", database_url=url).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def reported(server: ServerProcess) -> Iterator[tuple[httpx.Client, str]]:
    """A device of a product with TSL that reported SAMPLES; an admin API client; the device's path."""
    key = cli(server.data_dir, "apikey", "create", "--name", "history", "--role", "admin")["key"]
    api = httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=20,
                       headers={"Authorization": f"Bearer {key}"})
    made = api.post("/api/products", json={"name": "history", "thingModel": TSL})
    assert made.status_code == 201, made.text
    pk = made.json()["productKey"]
    made = api.post("/api/devices", json={"productKey": pk, "deviceName": "hist-1"})
    assert made.status_code == 201, made.text
    secret = made.json()["deviceSecret"]
    client = server.client()
    token = client.token(pk, "hist-1", secret)
    topic = f"/sys/{pk}/hist-1/thing/event/property/batch/post"
    for chunk in (SAMPLES[:30], SAMPLES[30:]):
        props = {"temperature": [{"value": t, "time": at} for at, t, _, _ in chunk],
                 "mode": [{"value": m, "time": at} for at, _, m, _ in chunk],
                 "power": [{"value": p, "time": at} for at, _, _, p in chunk]}
        doc = {"id": "1", "version": "1.0", "params": {"properties": props},
               "method": "thing.event.property.batch.post"}
        reply = client.publish(topic, json.dumps(doc).encode(), token).json
        assert reply["code"] == 0, reply
    client.close()
    try:
        yield api, f"/api/devices/{pk}/hist-1"
    finally:
        api.close()


def expected_slices(column: int, start: int, end: int, buckets: int) -> list[dict]:
    width = -(-(end - start + 1) // buckets)
    slices: dict[int, list[tuple]] = {}
    for sample in SAMPLES:
        if start <= sample[0] <= end:
            slices.setdefault((sample[0] - start) // width, []).append(sample)
    out = []
    for n in sorted(slices, reverse=True):
        rows = slices[n]
        numbers = [float(r[column]) for r in rows if not isinstance(r[column], bool)]
        out.append({"time": rows[-1][0], "value": rows[-1][column], "start": start + n * width,
                    "end": min(start + (n + 1) * width - 1, end), "count": len(rows),
                    "min": min(numbers) if numbers else None, "max": max(numbers) if numbers else None,
                    "avg": statistics.fmean(numbers) if numbers else None, "firstTime": rows[0][0]})
    return out


def got_slices(items: list[dict]) -> list[dict]:
    return [{"time": i["time"], "value": i["value"], **i["bucket"]} for i in items]


@pytest.mark.parametrize(("prop", "column"), [("temperature", 1), ("mode", 2), ("power", 3)])
def test_buckets_aggregate_each_slice_in_the_database_and_leave_empty_slices_out(
    reported: tuple[httpx.Client, str], prop: str, column: int,
) -> None:
    api, path = reported
    start, end = T0 - 30_000, T0 + 780_000 - 1
    got = api.get(f"{path}/history", params={"property": prop, "from": start, "to": end, "buckets": 20})
    assert got.status_code == 200, got.text
    items = got.json()
    want = expected_slices(column, start, end, 20)
    mine = got_slices(items)
    for g, w in zip(mine, want, strict=True):
        assert g.keys() == w.keys()
        for k in w:
            assert g[k] == pytest.approx(w[k]) if isinstance(w[k], float) else g[k] == w[k], (k, g, w)
    # the 10-minute gap is slices without items: the chart draws it as a gap
    starts = [i["bucket"]["start"] for i in items]
    assert max(a - b for a, b in zip(starts, starts[1:], strict=False)) >= 600_000 - 39_000
    assert all(isinstance(i["messageId"], int) and i["messageIdText"] == str(i["messageId"]) for i in items)


def test_one_bucket_holds_everything_and_to_defaults_to_now(reported: tuple[httpx.Client, str]) -> None:
    api, path = reported
    [whole] = api.get(f"{path}/history", params={"property": "temperature", "from": 0, "buckets": 1}).json()
    temps = [s[1] for s in SAMPLES]
    assert whole["bucket"]["count"] == len(SAMPLES) and whole["value"] == SAMPLES[-1][1]
    assert whole["bucket"]["min"] == min(temps) and whole["bucket"]["max"] == max(temps)
    assert whole["bucket"]["avg"] == pytest.approx(statistics.fmean(temps))
    assert api.get(f"{path}/history", params={"property": "quiet", "from": 0, "buckets": 5}).json() == []


@pytest.mark.parametrize(("params", "field", "text"), [
    ({"buckets": 10}, None, "buckets needs from"),
    ({"buckets": 10, "from": 5, "limit": 3}, "limit", "exclude each other"),
    ({"buckets": 10, "from": 9, "to": 5}, None, "from must not be after to"),
    ({"buckets": 0, "from": 0}, "buckets", ""),
    ({"buckets": 2001, "from": 0}, "buckets", ""),
    ({"buckets": 10, "from": 0, "property": "nosuch"}, None, "unknown property 'nosuch'"),
])
def test_bad_bucket_requests_are_refused_with_a_reason(
    reported: tuple[httpx.Client, str], params: dict, field: str | None, text: str,
) -> None:
    api, path = reported
    got = api.get(f"{path}/history", params={"property": "temperature", **params})
    assert got.status_code == 400, got.text
    error = got.json()["error"]
    assert error["code"] == "invalid" and text in error["message"]
    if field:
        assert error["field"] == field


def test_csv_export_has_every_value_oldest_first_with_labels_and_units(reported: tuple[httpx.Client, str]) -> None:
    api, path = reported
    got = api.get(f"{path}/history.csv", params={"property": "mode"})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"].endswith('-hist-1-mode.csv"')
    rows = list(csv.DictReader(io.StringIO(got.text)))
    labels = {0: "off", 1: "eco", 2: "boost"}
    assert [(int(r["timeMs"]), int(r["value"]), r["label"]) for r in rows] == [
        (at, m, labels[m]) for at, _, m, _ in SAMPLES]
    assert rows[0]["time"] == "2026-05-28T20:26:40.000Z" and rows[0]["messageId"].isdigit()
    temps = list(csv.DictReader(io.StringIO(api.get(f"{path}/history.csv", params={
        "property": "temperature", "from": T0 + 690_000, "to": T0 + 693_000}).text)))
    assert [(r["value"], r["label"]) for r in temps] == [("30.0", "°C"), ("31.0", "°C")]
    power = list(csv.DictReader(io.StringIO(api.get(f"{path}/history.csv", params={"property": "power"}).text)))
    assert [(r["value"], r["label"]) for r in power][:2] == [("1", "on"), ("0", "off")]
    empty = api.get(f"{path}/history.csv", params={"property": "quiet"})
    assert empty.status_code == 200 and empty.text == "time,timeMs,value,label,messageId\r\n"


def test_csv_export_refuses_before_streaming(reported: tuple[httpx.Client, str]) -> None:
    api, path = reported
    unknown = api.get(f"{path}/history.csv", params={"property": "nosuch"})
    assert unknown.status_code == 400 and "unknown property" in unknown.json()["error"]["message"]
    missing = api.get(path.replace("hist-1", "nobody") + "/history.csv", params={"property": "mode"})
    assert missing.status_code == 404
    backwards = api.get(f"{path}/history.csv", params={"property": "mode", "from": 9, "to": 5})
    assert backwards.status_code == 400
