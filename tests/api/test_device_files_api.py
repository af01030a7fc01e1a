"""Bulk device import and export, and product delete, through the management API of a running server."""

import csv
import json

import httpx

from tests.support import ServerProcess, wait_until


def new_product(api: httpx.Client, name: str) -> str:
    reply = api.post("/api/products", json={"name": name})
    assert reply.status_code == 201, reply.text
    return reply.json()["productKey"]


def import_csv(api: httpx.Client, pk: str, body: str, **params: str) -> httpx.Response:
    return api.post(f"/api/products/{pk}/devices/import", content=body.encode(),
                    headers={"Content-Type": "text/csv"}, params=params)


def names(api: httpx.Client, pk: str) -> list[str]:
    return [d["deviceName"] for d in api.get("/api/devices", params={"productKey": pk}).json()["items"]]


def test_import_answers_every_device_with_its_secret_and_a_given_secret_authenticates(
    server: ServerProcess, api: httpx.Client,
) -> None:
    pk = new_product(api, "imported")
    reply = import_csv(api, pk, "deviceName,deviceSecret\napi-imp-1,Api-S3cret\napi-imp-2,\n")
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert {k: report[k] for k in ("rows", "imported", "refused", "generatedSecrets", "dryRun", "refusals")} == {
        "rows": 2, "imported": 2, "refused": 0, "generatedSecrets": 1, "dryRun": False, "refusals": []}
    secrets = {d["deviceName"]: d["deviceSecret"] for d in report["devices"]}
    assert secrets["api-imp-1"] == "Api-S3cret" and len(secrets["api-imp-2"]) == 32
    client = server.client()
    try:
        for name, secret in secrets.items():
            assert client.auth(pk, name, secret).json["code"] == 0, name
    finally:
        client.close()


def test_a_refused_row_imports_nothing_unless_skip_invalid(api: httpx.Client) -> None:
    pk = new_product(api, "all-or-nothing")
    body = "\n".join([
        json.dumps({"deviceName": "ok-0001"}),
        json.dumps({"deviceName": "ok-0001"}),
        json.dumps({"deviceName": "no"}),
        json.dumps({"deviceName": "ok-0002", "productKey": "someOther"}),
        "not json",
        json.dumps({"deviceName": "ok-0003", "deviceSecret": "Given"}),
    ])
    reply = api.post(f"/api/products/{pk}/devices/import", content=body, params={"format": "jsonl"})
    assert reply.status_code == 422
    doc = reply.json()
    assert doc["error"]["code"] == "refused" and "nothing was imported" in doc["error"]["message"]
    assert [(r["line"], r["code"]) for r in doc["report"]["refusals"]] == [
        (2, "duplicate"), (3, "bad_name"), (4, "wrong_product"), (5, "malformed")]
    assert doc["report"]["imported"] == 0 and doc["report"]["devices"] == [] and names(api, pk) == []

    dry = api.post(f"/api/products/{pk}/devices/import", content=body,
                   headers={"Content-Type": "application/x-ndjson"}, params={"dryRun": "true", "skipInvalid": "true"})
    assert dry.status_code == 200 and dry.json()["dryRun"] is True and names(api, pk) == []

    skipped = api.post(f"/api/products/{pk}/devices/import", content=body,
                       headers={"Content-Type": "application/x-ndjson"}, params={"skipInvalid": "true"})
    assert skipped.status_code == 200 and skipped.json()["imported"] == 2 and skipped.json()["refused"] == 4
    assert names(api, pk) == ["ok-0001", "ok-0003"]
    again = import_csv(api, pk, "deviceName\nok-0001\n")
    assert again.status_code == 422 and again.json()["report"]["refusals"][0]["code"] == "exists"


def test_import_needs_an_admin_key_a_format_and_utf_8(api: httpx.Client, read_key: str) -> None:
    pk = new_product(api, "import-errors")
    as_reader = api.post(f"/api/products/{pk}/devices/import", content=b"deviceName\nread-0001\n",
                         headers={"Content-Type": "text/csv", "Authorization": f"Bearer {read_key}"})
    assert as_reader.status_code == 403
    for content, headers, params, status, says in [
        (b"deviceName\nx-0001\n", {"Content-Type": "text/plain"}, {}, 400, "format"),
        (b"deviceName\nx-\xff001\n", {"Content-Type": "text/csv"}, {}, 400, "not UTF-8"),
        (b"deviceNme\nx-0001\n", {"Content-Type": "text/csv"}, {}, 400, "unknown column"),
        (b"deviceName\nx-0001\n", {"Content-Type": "text/csv"}, {"format": "xml"}, 400, "format"),
    ]:
        reply = api.post(f"/api/products/{pk}/devices/import", content=content, headers=headers, params=params)
        assert reply.status_code == status and says in reply.json()["error"]["message"], reply.text
    assert import_csv(api, "pkNoSuchOne", "deviceName\nx-0001\n").status_code == 404
    assert names(api, pk) == []


def test_export_lists_the_devices_and_secrets_only_for_admin_keys(api: httpx.Client, read_key: str) -> None:
    pk = new_product(api, "exported")
    import_csv(api, pk, "deviceName,deviceSecret\nexp-0001,Secret-1\nexp-0002,Secret-2\n")
    reader = {"Authorization": f"Bearer {read_key}"}
    plain = api.get(f"/api/products/{pk}/devices/export", headers=reader)
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(plain.text.splitlines()))
    assert [r["deviceName"] for r in rows] == ["exp-0001", "exp-0002"] and "deviceSecret" not in rows[0]
    assert "Secret-1" not in plain.text
    refused = api.get(f"/api/products/{pk}/devices/export", params={"withSecrets": "true"}, headers=reader)
    assert refused.status_code == 403
    full = api.get(f"/api/products/{pk}/devices/export", params={"withSecrets": "true", "format": "jsonl"})
    assert full.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in full.text.splitlines()]
    assert [(r["deviceName"], r["deviceSecret"]) for r in records] == [
        ("exp-0001", "Secret-1"), ("exp-0002", "Secret-2")]
    assert api.get("/api/products/pkNoSuchOne/devices/export").status_code == 404
    # what the export gave imports into another product (without its productKey column)
    other = new_product(api, "copied")
    copy = "\n".join(json.dumps({k: v for k, v in r.items() if k not in ("productKey", "deviceId")}) for r in records)
    copied = api.post(f"/api/products/{other}/devices/import", content=copy, params={"format": "jsonl"})
    assert copied.status_code == 200 and copied.json()["imported"] == 2, copied.text


def test_product_delete_is_refused_while_it_has_devices_unless_forced(
    server: ServerProcess, api: httpx.Client, read_key: str,
) -> None:
    empty = new_product(api, "empty")
    assert api.delete(f"/api/products/{empty}", headers={"Authorization": f"Bearer {read_key}"}).status_code == 403
    deleted = api.delete(f"/api/products/{empty}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True and deleted.json()["devicesDeleted"] == 0
    assert api.get(f"/api/products/{empty}").status_code == 404

    pk = new_product(api, "doomed")
    secret = api.post("/api/devices", json={"productKey": pk, "deviceName": "doomed-1"}).json()["deviceSecret"]
    client = server.client()
    try:
        topic = f"/{pk}/doomed-1/user/update"
        # the server has followed the change feed past the device's creation (so it keeps the device in
        # memory from now on) once it sees a revocation made after it
        first = client.token(pk, "doomed-1", secret)
        assert api.post(f"/api/devices/{pk}/doomed-1/revoke-tokens").status_code == 200
        wait_until(lambda: client.publish(topic, b"x", first).json["code"] == 20003, "the revocation seen")
        token = client.token(pk, "doomed-1", secret)
        assert client.publish(topic, b"x", token).json["code"] == 0
        refused = api.delete(f"/api/products/{pk}")
        assert refused.status_code == 409 and "1 devices" in refused.json()["error"]["message"]
        assert names(api, pk) == ["doomed-1"]
        forced = api.delete(f"/api/products/{pk}", params={"force": "true"})
        assert forced.status_code == 200, forced.text
        assert (forced.json()["devicesDeleted"], forced.json()["subscriptionsDeleted"]) == (1, 0)
        assert api.get(f"/api/products/{pk}").status_code == 404
        assert api.get(f"/api/devices/{pk}/doomed-1").status_code == 404
        # the running server forgets the device: its token stops working
        wait_until(lambda: client.publish(topic, b"x", token).json["code"] != 0, "the deleted device's token refused")
        assert client.auth(pk, "doomed-1", secret).json["code"] != 0
        # a product made again under the same key does not bring the old device's token back to life
        assert api.post("/api/products", json={"name": "reborn", "productKey": pk}).status_code == 201
        wait_until(lambda: api.get(f"/api/products/{pk}").status_code == 200, "the product made again")
        for _ in range(3):
            assert client.publish(topic, b"x", token).json["code"] == 20003
    finally:
        client.close()
