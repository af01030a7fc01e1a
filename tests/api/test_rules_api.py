"""Rules through the management API and the CLI: created (or refused with the reason, nothing created),
listed and shown with their progress, paused, resumed and deleted; credentials never shown."""

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main as cli_main

WEBHOOK = {"kind": "forward", "sink": "webhook",
           "options": {"url": "http://127.0.0.1:9/hook?token=t0ps3cret", "secret": "s3cret", "timeout": 2}}


def body(name: str, statement: str = 'SELECT t FROM "/pk/+/user/data" WHERE t > 38', **extra: object) -> dict:
    return {"name": name, "statement": statement, "actions": [WEBHOOK], "check": False, **extra}


def test_a_rule_is_created_listed_shown_paused_resumed_and_deleted(api: httpx.Client, read_key: str,
                                                                   server: ServerProcess) -> None:
    created = api.post("/api/rules", json=body("api-hot"))
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["actions"] == [{"kind": "forward", "sink": "webhook",
                                "options": {"url": "***", "secret": "***", "timeout": 2}}]
    assert {k: rule[k] for k in ("enabled", "state", "backlog", "matched", "failed", "lastError", "sinkError")} == {
        "enabled": True, "state": "running", "backlog": 0, "matched": 0, "failed": 0, "lastError": None,
        "sinkError": None}
    assert "t0ps3cret" not in created.text and "s3cret" not in created.text
    assert api.get("/api/rules/api-hot").json()["cursor"] == rule["cursor"]
    assert "api-hot" in [r["name"] for r in api.get("/api/rules").json()]
    paused = api.patch("/api/rules/api-hot", json={"enabled": False})
    assert paused.status_code == 200 and paused.json()["state"] == "disabled"
    assert api.patch("/api/rules/api-hot", json={"enabled": True}).json()["state"] == "running"
    reader = {"Authorization": f"Bearer {read_key}"}
    assert api.get("/api/rules/api-hot", headers=reader).status_code == 200
    assert api.post("/api/rules", json=body("by-reader"), headers=reader).status_code == 403
    assert api.delete("/api/rules/api-hot", headers=reader).status_code == 403
    assert api.delete("/api/rules/api-hot").status_code == 204
    missing = api.get("/api/rules/api-hot")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert api.delete("/api/rules/api-hot").status_code == 404
    # the CLI sees the same rules (the server's data dir)
    assert "api-hot" not in [r["name"] for r in cli(server.data_dir, "rule", "list")]


@pytest.mark.parametrize(("change", "status", "says"), [
    ({"statement": 'SELECT t FROM "/pk/+/x" WHERE t >'}, 400, "the statement ends too early at line 1, column 34"),
    ({"statement": "SELECT t\nFROM WHERE"}, 400, "unexpected WHERE at line 2, column 6"),
    ({"statement": 'SELECT nope(t) AS x FROM "#"'}, 400, "unknown function nope()"),
    ({"actions": [{"kind": "forward", "sink": "kafka"}]}, 400, "sink"),
    ({"actions": [{"kind": "teleport"}]}, 400, "kind"),
    ({"actions": [{"kind": "alarm"}]}, 400, "alarm.name"),
    ({"actions": [{"kind": "alarm", "name": "hot", "severity": "awful"}]}, 400, "severity"),
    ({"actions": []}, 400, "actions"),
    ({"actions": [{"kind": "forward", "sink": "webhook", "options": {"url": "http://x/"}}]}, 400,
     "option 'secret' is required"),
    ({"actions": [{"kind": "forward", "sink": "http"}]}, 400, "sink"),
    ({"name": "no spaces"}, 400, "name"),
])
def test_a_refused_rule_says_why_and_nothing_is_created(api: httpx.Client, change: dict, status: int,
                                                        says: str) -> None:
    refused = api.post("/api/rules", json={**body("refused"), **change})
    assert refused.status_code == status, refused.text
    assert says in refused.text
    assert "refused" not in [r["name"] for r in api.get("/api/rules").json()]


def test_an_unreachable_sink_refuses_the_rule_unless_not_checked(api: httpx.Client) -> None:
    refused = api.post("/api/rules", json={**body("unchecked"), "check": True})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "sink_unreachable"
    assert "t0ps3cret" not in refused.text
    assert api.get("/api/rules/unchecked").status_code == 404
    assert api.post("/api/rules?check=false", json={**body("unchecked"), "check": True}).status_code == 201
    assert api.post("/api/rules", json=body("unchecked")).json()["error"]["code"] == "conflict"
    api.delete("/api/rules/unchecked")


def test_rule_test_is_unchanged_beside_the_rules(api: httpx.Client) -> None:
    tried = api.post("/api/rules/test", json={"statement": 'SELECT a + 1 AS b FROM "#"', "payload": {"a": 1}})
    assert tried.status_code == 200
    assert tried.json() == [{"topic": "", "emitted": {"b": 2}, "error": None, "seq": None, "messageId": None,
                             "productKey": None, "deviceName": None}]


def invoke(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_main, [*args, "--data-dir", str(data_dir)])
    return result.exit_code, result.stdout, result.stderr


def test_the_rule_commands(data_dir: Path) -> None:
    cli(data_dir, "product", "create", "--name", "p", "--product-key", "pk1")
    statement = 'SELECT t, deviceName() AS dn FROM "/pk1/+/user/data" WHERE t > 38'
    created = cli(data_dir, "rule", "create", "--name", "hot", "--statement", statement, "--sink", "webhook",
                  "--option", "url=http://127.0.0.1:9/h", "--option", "secret=1.50", "--no-check",
                  "--action", json.dumps(WEBHOOK))
    assert [a["sink"] for a in created["actions"]] == ["webhook", "webhook"]
    assert created["actions"][0]["options"] == {"url": "***", "secret": "***"}
    shown = cli(data_dir, "rule", "show", "--name", "hot")
    assert {k: shown[k] for k in ("statement", "cursor", "backlog", "matched", "failed", "lastError")} == {
        "statement": statement, "cursor": 0, "backlog": 0, "matched": 0, "failed": 0, "lastError": None}
    assert cli(data_dir, "rule", "disable", "--name", "hot")["state"] == "disabled"
    assert cli(data_dir, "rule", "enable", "--name", "hot")["enabled"] is True
    code, out, _ = invoke(data_dir, "rule", "list")
    assert code == 0 and out.split("\n")[0].split() == ["name", "enabled", "state", "cursor", "backlog", "matched",
                                                        "failed", "lastError"]
    code, out, _ = invoke(data_dir, "rule", "show", "--name", "hot")
    assert code == 0 and "matched" in out and "***" in out and "1.50" not in out
    # refusals: exit 1, one error line naming what is wrong, nothing created
    for args, says in (
        (("--statement", 'SELECT t FROM "#" WHERE', "--sink", "webhook", "--no-check"), "ends too early at line 1"),
        (("--statement", 'SELECT t FROM "#"', "--action", '{"kind": "forward", "sink": "kafka"}'),
         "action 1: sink must be one of"),
        (("--statement", 'SELECT t FROM "#"', "--action", "{not json"), "is not JSON"),
        (("--statement", 'SELECT t FROM "#"', "--sink", "webhook", "--option", "url=http://127.0.0.1:9/",
          "--option", "secret=x", "--option", "timeout=1"), "the webhook sink could not be used"),
    ):
        code, _, err = invoke(data_dir, "rule", "create", "--name", "bad", *args)
        assert code in (1, 2) and says in err, (args, err)
    code, _, err = invoke(data_dir, "rule", "create", "--name", "bad", "--statement", 'SELECT t FROM "#"')
    assert code == 2 and "give --sink" in err
    assert [r["name"] for r in cli(data_dir, "rule", "list")] == ["hot"]
    code, _, err = invoke(data_dir, "rule", "show", "--name", "nope")
    assert code == 1 and err.strip() == "error: rule nope does not exist"
    deleted = cli(data_dir, "rule", "delete", "--name", "hot")
    assert deleted["name"] == "hot" and deleted["deleted"] is True
    assert cli(data_dir, "rule", "list") == []
