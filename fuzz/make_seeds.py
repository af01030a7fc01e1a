"""Writes the seed corpus (fuzz/seeds/TARGET/*): valid and near-valid inputs for every target.

Run once after changing it: ``.venv/bin/python fuzz/make_seeds.py``. The seeds are checked in.
"""

import json
from pathlib import Path

import targets

HERE = Path(__file__).resolve().parent
SEP = targets.SEPARATOR


def j(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


HUAWEI = {"services": [{"service_id": "Environment", "properties": [
    {"property_name": "temperature", "data_type": "int", "min": "-10", "max": "50", "method": "R"},
    {"property_name": "humidity", "data_type": "decimal", "min": "0", "max": "100", "method": "RW"},
    {"property_name": "name", "data_type": "string", "max_length": 8},
    {"property_name": "at", "data_type": "DateTime"},
    {"property_name": "obj", "data_type": "jsonObject"},
    {"property_name": "mode", "data_type": "enum", "enum_list": ["a", "b"]},
    {"property_name": "on", "data_type": "boolean"},
    {"property_name": "tags", "data_type": "string list", "max_length": 4},
    {"property_name": "big", "data_type": "long", "min": "0"},
    {"property_name": "label", "data_type": "string", "max_length": "16"},
    {"property_name": "ratio", "data_type": "decimal", "min": "-1.5", "max": "1e2"}]}]}

PARAMS = [{"t": 21, "h": 55.5, "b": 1, "e": 0, "x": "abc", "d": "1732200000000", "s": {"m": 1, "n": "ab"},
           "a": [{"m": 1.5}]},
          {"t": {"value": 51, "time": 1524448722000}, "zz": [1], "s": {"q": 1}},
          {"temperature": 20, "humidity": 50.5, "name": "x", "at": "20210813T101010Z", "obj": {}, "mode": "a",
           "on": True, "tags": ["a"], "big": 2**62}]

SEEDS = {
    "alink_property_post": [j({"id": "1", "version": "1.0", "params": p, "method": "thing.event.property.post"})
                            for p in PARAMS] + [b'{"id":1,"params":{}}', b"{}", b"[]", b'{"params":[]}'],
    "alink_batch_post": [j({"id": "2", "params": {"properties": {"t": [{"value": 1, "time": 1},
                                                                      {"value": 99, "time": "2"}],
                                                                "h": 3.5},
                                                 "events": {"alarm": [{"value": {"level": 2}, "time": 5}]}},
                            "method": "thing.event.property.batch.post"})],
    "alink_event_post": [j({"id": "3", "params": {"level": 2}}),
                         j({"id": "3", "params": {"value": {"level": 9}, "time": 7}}),
                         j({"id": "3", "params": {"value": 1}, "method": "thing.event.alarm.post"})],
    "thingmodel_tsl": [j(targets._TSL) + SEP + j(p) for p in PARAMS]
                      + [j({"functionBlockId": "fb", "properties": [{"identifier": "t", "dataType": {"type": "int"}}]})
                         + SEP + b'{"fb:t":1}'],
    "thingmodel_huawei": [j(HUAWEI) + SEP + j(p) for p in PARAMS] + [j({"service_capabilities": []}) + SEP + b"{}"],
    "aliyun_auth_params": [j({"productKey": "a1FHTWxQabc", "deviceName": "http_test", "clientId": "127.0.0.1",
                              "timestamp": "1567003778853", "signmethod": "hmacmd5", "version": "default",
                              "sign": "fc48d767d3807c835de2efec1955b888"}),
                           j({"productKey": "pk", "deviceName": "device", "clientId": "1", "timestamp": 789,
                              "sign": "ABCDEF"})],
    "huawei_auth_fields": [j({"device_id": "pk_node-1", "sign_type": 1, "timestamp": "2019120219",
                              "password": "338ce4d607e62fdca760488716216fbe0a19771874db10ce30360e5c777c3e3c"}),
                           j({"device_id": "x", "sign_type": "0", "timestamp": "2019120219", "password": "A" * 64})],
    "huawei_json_object": [j(HUAWEI), j({"devices": [{"device_id": "a", "services": []}]}), b"[]", b'"x"'],
    "classify_topic": [t.encode() for t in (
        f"/{targets._PK}/{targets._DN}/user/update", f"/{targets._PK}/{targets._DN}/user/a/b_c",
        f"/sys/{targets._PK}/{targets._DN}/thing/event/property/post",
        f"/sys/{targets._PK}/{targets._DN}/thing/event/property/batch/post",
        f"/sys/{targets._PK}/{targets._DN}/thing/event/alarm/post",
        f"/sys/{targets._PK}/{targets._DN}/thing/deviceinfo/update", f"/ota/device/inform/{targets._PK}/{targets._DN}",
        f"/{targets._PK}/other-01/user/update")]
                      + [f"/{targets._PK}/{targets._DN}/user/cmd".encode() + SEP + b"user/cmd sub\nuser/up pub"
                         + SEP + b"dev@a.b:c"],
    "topic_filter": [b"/a1/+/user/#\n/a1/d/user/x\n/a1/d\n", b"#\nx\n/\n",
                     b"/sys/+/+/thing/event/+/post\n/sys/a/b/thing/event/x/post"],
    "token_verify": [targets.SEED_TOKEN.encode(), targets.SEED_TOKEN[:-1].encode(), b"A" * 56],
    "envelope": [b'{"a":1}', b"\x00\xff", b"[[[]]]", b'"\\u00e9"'],
}

if __name__ == "__main__":
    for name, seeds in SEEDS.items():
        assert name in targets.TARGETS, name
        d = HERE / "seeds" / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*"):  # findings (finding-*) stay: they are regression inputs
            old.unlink()
        for i, seed in enumerate(seeds):
            (d / f"seed-{i:02d}").write_bytes(seed)
    missing = set(targets.TARGETS) - set(SEEDS)
    assert not missing, missing
    print(f"wrote seeds for {len(SEEDS)} targets")
