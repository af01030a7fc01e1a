"""The CLI's commands and JSON outputs (an interface outside checks rely on)."""

import re
from pathlib import Path

from click.testing import CliRunner

from tests.support import cli
from thingport.cli import main


def invoke(data_dir: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])


def test_product_create_generates_an_11_character_key_or_takes_one(data_dir: Path) -> None:
    p = cli(data_dir, "product", "create", "--name", "Lamp")
    assert re.fullmatch(r"[A-Za-z0-9]{11}", p["productKey"]) and p["name"] == "Lamp"
    given = cli(data_dir, "product", "create", "--name", "Given", "--product-key", "a1GivenKey9")
    assert given["productKey"] == "a1GivenKey9"
    assert cli(data_dir, "product", "show", "--product-key", "a1GivenKey9")["name"] == "Given"
    assert {x["productKey"] for x in cli(data_dir, "product", "list")} == {p["productKey"], "a1GivenKey9"}


def test_device_lifecycle(data_dir: Path) -> None:
    pk = cli(data_dir, "product", "create", "--name", "p")["productKey"]
    d = cli(data_dir, "device", "create", "--product-key", pk, "--name", "dev-1")
    assert {"productKey", "deviceName", "deviceSecret"} <= d.keys()
    assert d["productKey"] == pk and d["deviceName"] == "dev-1" and re.fullmatch(r"[A-Za-z0-9]{32}", d["deviceSecret"])
    given = cli(data_dir, "device", "create", "--product-key", pk, "--name", "dev-2", "--secret", "s3cret")
    assert given["deviceSecret"] == "s3cret"
    shown = cli(data_dir, "device", "show", "--product-key", pk, "--name", "dev-1")
    assert shown["status"] == "enabled" and "deviceSecret" not in shown
    with_secret = cli(data_dir, "device", "show", "--product-key", pk, "--name", "dev-1", "--with-secret")
    assert with_secret["deviceSecret"] == d["deviceSecret"]
    assert cli(data_dir, "device", "disable", "--product-key", pk, "--name", "dev-1")["status"] == "disabled"
    assert cli(data_dir, "device", "enable", "--product-key", pk, "--name", "dev-1")["status"] == "enabled"
    reset = cli(data_dir, "device", "reset-secret", "--product-key", pk, "--name", "dev-1")
    assert reset["deviceSecret"] != d["deviceSecret"] and len(reset["deviceSecret"]) == 32
    assert [x["deviceName"] for x in cli(data_dir, "device", "list", "--product-key", pk)] == ["dev-1", "dev-2"]
    assert cli(data_dir, "device", "delete", "--product-key", pk, "--name", "dev-2")["deleted"] is True
    assert [x["deviceName"] for x in cli(data_dir, "device", "list")] == ["dev-1"]


def test_errors_exit_non_zero_with_a_clear_message_and_change_nothing(data_dir: Path) -> None:
    pk = cli(data_dir, "product", "create", "--name", "p")["productKey"]
    cli(data_dir, "device", "create", "--product-key", pk, "--name", "dev-1")
    for args, says in [
        (("device", "create", "--product-key", pk, "--name", "dev-1"), "already exists"),
        (("device", "create", "--product-key", "nope", "--name", "dev-9"), "does not exist"),
        (("device", "create", "--product-key", pk, "--name", "x"), "deviceName must be"),
        (("device", "create", "--product-key", pk, "--name", "dev-3", "--secret", "has space"), "deviceSecret must be"),
        (("device", "show", "--product-key", pk, "--name", "dev-9"), "does not exist"),
        (("product", "create", "--name", "q", "--product-key", pk), "already exists"),
        (("product", "create", "--name", "q", "--product-key", "bad key!"), "productKey must be"),
    ]:
        result = invoke(data_dir, *args)
        assert result.exit_code == 1 and says in result.output, (args, result.output)
    assert len(cli(data_dir, "device", "list")) == 1
    assert len(cli(data_dir, "product", "list")) == 1


def test_messages_tail_is_empty_then_lists_newest(data_dir: Path) -> None:
    cli(data_dir, "product", "create", "--name", "p")
    result = invoke(data_dir, "messages", "tail")
    assert result.exit_code == 0 and result.output == ""
    result = invoke(data_dir, "messages", "tail", "--limit", "0")
    assert result.exit_code == 2  # usage error


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "product", "device", "messages"):
        assert command in result.output


def test_db_upgrade_migrates_a_postgresql_database_once_and_commands_find_it_by_env(data_dir: Path) -> None:
    import json

    from tests.postgres import fresh_database
    from thingport.store.pg_schema import head

    url = fresh_database(migrate=False)
    runner = CliRunner()
    newest = head()
    assert json.loads(runner.invoke(main, ["db", "current", "--database", url, "--json"]).output) == {
        "current": None, "head": newest}
    first = runner.invoke(main, ["db", "upgrade", "--database", url, "--json"])
    assert json.loads(first.stdout) == {"from": None, "to": newest, "changed": True}  # the steps: on stderr
    again = runner.invoke(main, ["db", "upgrade", "--json"], env={"THINGPORT_DATABASE_URL": url})
    assert json.loads(again.stdout) == {"from": newest, "to": newest, "changed": False}
    assert again.stderr == ""  # nothing applied, nothing said
    # every management command reads the database from the environment
    created = runner.invoke(main, ["product", "create", "--name", "pg", "--json", "--data-dir", str(data_dir)],
                            env={"THINGPORT_DATABASE_URL": url})
    assert created.exit_code == 0, created.output
    assert not (data_dir / "thingport.db").exists()
    listed = runner.invoke(main, ["product", "list", "--json", "--data-dir", str(data_dir)],
                           env={"THINGPORT_DATABASE_URL": url})
    assert [p["name"] for p in json.loads(listed.output)] == ["pg"]


def test_db_commands_need_a_postgresql_database(data_dir: Path) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"THINGPORT_DATABASE_URL": ""})
    assert result.exit_code == 2 and "no PostgreSQL database" in result.output


def test_product_device_report_rate_is_set_checked_and_reset(data_dir: Path) -> None:
    pk = cli(data_dir, "product", "create", "--name", "p")["productKey"]
    shown = cli(
        data_dir, "product", "set", "--product-key", pk, "--device-report-rate", "2", "--device-report-burst", "5"
    )
    assert (shown["deviceReportRate"], shown["deviceReportBurst"]) == (2.0, 5.0)
    for bad in (["--device-report-rate", "-1"], ["--device-report-burst", "0.5"]):
        result = invoke(data_dir, "product", "set", "--product-key", pk, *bad)
        assert result.exit_code == 1 and "device report" in result.output
    assert cli(data_dir, "product", "show", "--product-key", pk)["deviceReportRate"] == 2.0  # nothing changed
    reset = cli(
        data_dir, "product", "set", "--product-key", pk, "--device-report-rate", "0", "--device-report-burst", "0"
    )
    assert (reset["deviceReportRate"], reset["deviceReportBurst"]) == (None, None)


def test_product_create_takes_a_model_in_either_format(data_dir: Path, tmp_path: Path) -> None:
    import json

    iotda = {"services": [{"service_id": "Environment", "properties": [
        {"property_name": "temperature", "data_type": "int", "min": "-10", "max": "50"}]}]}
    tsl = {
        "properties": [{"identifier": "temperature", "dataType": {"type": "int", "specs": {"min": "-10", "max": "50"}}}]
    }
    for name, doc, expected in (("hw", iotda, "huawei"), ("ali", tsl, "tsl")):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        pk = cli(data_dir, "product", "create", "--name", name, "--model", str(path))["productKey"]
        exported = json.loads(invoke(data_dir, "product", "model", "export", "--product-key", pk).output)
        assert exported["format"] == expected
    both = invoke(data_dir, "product", "create", "--name", "x", "--tsl", str(path), "--model", str(path))
    assert both.exit_code == 2 and "not both" in both.output
    assert [p["name"] for p in cli(data_dir, "product", "list")] == ["hw", "ali"]  # the refused one created nothing


def test_a_tsl_without_any_section_is_refused(data_dir: Path, tmp_path: Path) -> None:
    sectionless = tmp_path / "foo.json"
    sectionless.write_text('{"foo": 1}')
    for option in ("--tsl", "--model"):
        result = invoke(data_dir, "product", "create", "--name", "x", option, str(sectionless))
        assert result.exit_code == 1 and "needs a properties or events or services list" in result.output, result.output
    empty = tmp_path / "empty.json"
    empty.write_text('{"properties": [], "events": []}')
    assert cli(data_dir, "product", "create", "--name", "empty", "--tsl", str(empty))["modelVersion"]
    assert [p["name"] for p in cli(data_dir, "product", "list")] == ["empty"]
