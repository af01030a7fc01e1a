"""The CLI's fleet views: online/offline and last seen in device listings, devices counted per product,
``--json`` on every command that prints, and progress lines for ``db upgrade``."""

import io
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main
from thingport.cli_output import Progress

# the keys `device list --json` printed before presence was added: an interface, kept in this order
_DEVICE_KEYS = ["productKey", "deviceName", "deviceId", "status", "createdAt", "lastAuthAt", "gateway"]
_PRODUCT_KEYS = ["productKey", "name", "nodeType", "createdAt", "modelVersion", "validation", "topics",
                 "presenceTimeout", "deviceReportRate", "deviceReportBurst", "requireSignType1"]


def test_device_list_filters_by_presence_and_products_count_their_devices(server: ServerProcess) -> None:
    d = server.data_dir
    pk = cli(d, "product", "create", "--name", "cli-presence")["productKey"]
    secrets = {n: cli(d, "device", "create", "--product-key", pk, "--name", n)["deviceSecret"]
               for n in ("cli-on", "cli-off", "cli-never")}
    client = server.client()
    for name in ("cli-on", "cli-off"):
        token = client.token(pk, name, secrets[name])
        assert client.publish(f"/sys/{pk}/{name}/thing/event/property/post", b'{"params":{"t":1}}',
                              token).json["code"] == 0
    cli(d, "device", "disable", "--product-key", pk, "--name", "cli-off")

    listed = cli(d, "device", "list", "--product-key", pk)
    assert [list(x)[:7] for x in listed] == [_DEVICE_KEYS] * 3  # the old keys first, then the added ones
    assert [(x["deviceName"], x["online"], x["lastSeenAt"] is not None) for x in listed] == [
        ("cli-on", True, True), ("cli-off", False, True), ("cli-never", False, False)]
    assert [x["deviceName"] for x in cli(d, "device", "list", "--product-key", pk, "--online")] == ["cli-on"]
    assert [x["deviceName"] for x in cli(d, "device", "list", "--product-key", pk, "--offline")] == [
        "cli-off", "cli-never"]
    assert [x["deviceName"] for x in cli(d, "device", "list", "--product-key", pk, "--status", "disabled")] == [
        "cli-off"]
    assert [x["deviceName"] for x in cli(d, "device", "list", "--name-prefix", "cli-n")] == ["cli-never"]
    status = cli(d, "device", "status", "--product-key", pk, "--name", "cli-on")
    assert (status["online"], status["lastSeenAt"]) == (True, listed[0]["lastSeenAt"])

    product = {p["productKey"]: p for p in cli(d, "product", "list")}[pk]
    assert list(product)[:11] == _PRODUCT_KEYS
    assert product["devices"] == {"total": 3, "online": 1, "disabled": 1}
    assert cli(d, "product", "show", "--product-key", pk)["devices"] == product["devices"]

    human = CliRunner().invoke(main, ["device", "list", "--product-key", pk, "--data-dir", str(d)])
    head, *rows = human.stdout.splitlines()
    assert head.split()[:5] == ["productKey", "deviceName", "status", "online", "lastSeenAt"]
    assert rows[0].split()[3] == "yes" and rows[2].split()[3:5] == ["no", "-"]
    table = CliRunner().invoke(main, ["product", "list", "--data-dir", str(d)]).stdout.splitlines()
    assert table[0].split()[:5] == ["productKey", "name", "devices", "online", "disabled"]
    assert [line.split()[2:5] for line in table if line.startswith(pk)] == [["3", "1", "1"]]


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


def test_every_command_that_prints_takes_json() -> None:
    without = [" ".join(path) for path, command in _commands(main)
               if not any(isinstance(p, click.Option) and "--json" in p.opts for p in command.params)]
    assert without == ["serve"]  # the server logs; it prints no document


def test_exports_and_deletes_print_json(data_dir: Path, tmp_path: Path) -> None:
    tsl = {"schema": "x", "profile": {"productKey": "x"}, "properties": [
        {"identifier": "t", "name": "t", "accessMode": "r", "required": False,
         "dataType": {"type": "int", "specs": {"min": "0", "max": "9", "step": "1"}}}], "events": [], "services": []}
    (tmp_path / "tsl.json").write_text(json.dumps(tsl))
    pk = cli(data_dir, "product", "create", "--name", "exp", "--tsl", str(tmp_path / "tsl.json"))["productKey"]
    runner = CliRunner()
    for command in (["product", "tsl", "export"], ["product", "model", "export"]):
        indented = runner.invoke(main, [*command, "--product-key", pk, "--data-dir", str(data_dir)])
        one_line = runner.invoke(main, [*command, "--product-key", pk, "--data-dir", str(data_dir), "--json"])
        assert indented.exit_code == 0 and one_line.exit_code == 0
        assert "\n  " in indented.stdout and one_line.stdout.count("\n") == 1  # indented, then on one line
        assert json.loads(one_line.stdout) == json.loads(indented.stdout)

    cli(data_dir, "subscription", "create", "--name", "app", "--product-key", pk, "--sink", "http")
    deleted = cli(data_dir, "subscription", "delete", "--name", "app")
    assert deleted["name"] == "app" and deleted["deleted"] is True and deleted["productKey"] == pk
    assert cli(data_dir, "subscription", "list") == []

    key = cli(data_dir, "apikey", "create", "--name", "temp", "--role", "read")
    gone = cli(data_dir, "apikey", "delete", "--id", str(key["id"]))
    assert gone == {"id": key["id"], "name": "temp", "role": "read", "prefix": key["prefix"],
                    "createdAt": key["createdAt"], "deleted": True}
    again = runner.invoke(main, ["apikey", "delete", "--id", str(key["id"]), "--data-dir", str(data_dir), "--json"])
    assert again.exit_code == 1 and again.stdout == "" and "does not exist" in again.stderr
    missing = runner.invoke(main, ["subscription", "delete", "--name", "app", "--data-dir", str(data_dir), "--json"])
    assert missing.exit_code == 1 and missing.stdout == ""


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_plain_lines_in_a_log_and_redrawn_on_a_terminal() -> None:
    now = [0.0]
    log = _Stream(tty=False)
    shown = Progress(log, redraw_s=0.5, line_s=5.0, clock=lambda: now[0])
    for step in range(20):  # 10 s of updates every 0.5 s
        shown.update(f"step {step}")
        now[0] += 0.5
    shown.done("finished")
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == ["step 0", "step 10", "finished"]  # one line per 5 s, and the end

    now[0] = 0.0
    term = _Stream(tty=True)
    shown = Progress(term, redraw_s=0.5, line_s=5.0, clock=lambda: now[0])
    shown.update("long line 1")
    now[0] += 0.6
    shown.update("line 2")
    shown.done("done")
    assert term.getvalue() == "\rlong line 1\rline 2     \rdone  \n"  # each redraw covers the one before


@pytest.mark.parametrize("rows", [0, 1200])
def test_db_upgrade_shows_each_step_and_a_rewrite_as_plain_lines(rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """From schema 0001 with history to rewrite, in batches of 500 rows: a line per batch (the first at least,
    when not a terminal) and per step applied, on stderr; stdout holds the JSON alone."""
    import psycopg

    from tests.postgres import fresh_database
    from thingport.store import pg_schema

    url = fresh_database(migrate=False)
    pg_schema.upgrade(url, "0001")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.cursor().executemany("INSERT INTO history VALUES (%s, %s, %s, %s, %s)",
                                  [(1 + i // 100, "t", 1000 + i, str(i), i) for i in range(rows)])
    import importlib

    step = importlib.import_module("thingport.store.migrations.versions.0002_history_rows")
    monkeypatch.setattr(step, "ROWS_PER_BATCH", 500)
    result = CliRunner().invoke(main, ["db", "upgrade", "--database", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"from": "0001", "to": pg_schema.head(), "changed": True}
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr
    applied = [line.split(":")[0] for line in lines if line.startswith("applied ")]
    assert applied[0] == "applied 0002" and applied[-1] == f"applied {pg_schema.head()}"
    rewrites = [line for line in lines if line.startswith("0002: history of devices up to id")]
    assert (len(rewrites) >= 1 and f"rows from {rows})" in rewrites[0]) if rows else rewrites == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM history").fetchone()[0] == rows  # one row per (device, time)
