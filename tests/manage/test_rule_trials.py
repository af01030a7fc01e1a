"""Trying a rule statement before it runs, end to end: on what real devices stored (CLI and API) and on a
sample payload; nothing is changed."""

import json
from pathlib import Path

import httpx
from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main


def _report(server: ServerProcess, device: dict, suffix: str, payload: bytes) -> None:
    client = server.client()
    try:
        token = client.token(device["productKey"], device["deviceName"], device["deviceSecret"])
        pk, dn = device["productKey"], device["deviceName"]
        assert client.publish(f"/{pk}/{dn}/user/{suffix}", payload, token).json["code"] == 0
    finally:
        client.close()


def test_a_statement_runs_on_the_newest_stored_messages_its_filter_matches(server: ServerProcess,
                                                                          device: dict) -> None:
    pk, dn = device["productKey"], device["deviceName"]
    for temperature in (21, 39.5, 41):
        _report(server, device, "data", json.dumps({"temperature": temperature}).encode())
    _report(server, device, "data", b"not json")
    _report(server, device, "data", b'{"humidity": 40}')
    _report(server, device, "other", b'{"temperature": 99}')  # not under the FROM filter
    statement = (f'SELECT temperature, deviceName() AS dn, round(temperature * 1.8 + 32, 1) AS f '
                 f'FROM "/{pk}/+/user/data" WHERE temperature > 38')
    trials = cli(server.data_dir, "rule", "test", "--statement", statement, "--last", "5")
    assert [(t["emitted"], t["error"]) for t in trials] == [
        (None, "the payload has no temperature"),
        (None, "the payload is not JSON"),
        ({"temperature": 41, "dn": dn, "f": 105.8}, None),
        ({"temperature": 39.5, "dn": dn, "f": 103.1}, None),
        (None, None),  # 21: WHERE is false
    ]
    assert {t["topic"] for t in trials} == {f"/{pk}/{dn}/user/data"} and trials[0]["seq"] > trials[1]["seq"]

    human = CliRunner().invoke(main, ["rule", "test", "--statement", statement, "--last", "2",
                                      "--data-dir", str(server.data_dir)])
    assert human.exit_code == 0, human.output
    assert human.output.splitlines()[1].endswith('  error: the payload is not JSON')

    reader = cli(server.data_dir, "apikey", "create", "--name", f"rules-{pk}", "--role", "read")["key"]
    with httpx.Client(base_url=f"http://127.0.0.1:{server.api_port}", timeout=10,
                      headers={"Authorization": f"Bearer {reader}"}) as api:
        over_api = api.post("/api/rules/test", json={"statement": statement, "last": 5})
        assert over_api.status_code == 200, over_api.text
        assert over_api.json() == trials
        sample = api.post("/api/rules/test", json={"statement": statement, "payload": {"temperature": 40},
                                                   "topic": f"/{pk}/{dn}/user/data"}).json()
        assert sample == [{"seq": None, "messageId": None, "productKey": None, "deviceName": None,
                           "topic": f"/{pk}/{dn}/user/data", "emitted": {"temperature": 40, "dn": "", "f": 104.0},
                           "error": None}]
        broken = api.post("/api/rules/test", json={"statement": "SELECT FROM x", "last": 1})
        assert broken.status_code == 400 and "unexpected FROM at line 1, column 8" in broken.text


def test_a_sample_payload_and_the_errors_a_user_sees(data_dir: Path) -> None:
    cli(data_dir, "product", "create", "--name", "p")
    runner = CliRunner()
    sample = runner.invoke(main, ["rule", "test", "--statement", 'SELECT a + 1 AS b FROM "#"', "--payload",
                                  '{"a": 1}', "--data-dir", str(data_dir), "--json"])
    assert sample.exit_code == 0, sample.output
    assert json.loads(sample.output)[0]["emitted"] == {"b": 2}
    bad = runner.invoke(main, ["rule", "test", "--statement", 'SELECT a + 1 FROM "#"', "--payload", "{}",
                               "--data-dir", str(data_dir)])
    assert bad.exit_code == 1
    assert bad.output == "error: an expression in SELECT needs a name: add AS <name> at line 1, column 8\n"
    neither = runner.invoke(main, ["rule", "test", "--statement", 'SELECT a FROM "#"', "--data-dir", str(data_dir)])
    assert neither.exit_code == 1 and "give either a sample payload or a number of stored messages" in neither.output
