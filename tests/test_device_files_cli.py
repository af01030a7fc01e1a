"""`device import` and `device export`: bulk device files (CSV and JSON lines), all or nothing, with a
per-row report; secrets generated or given, handed back only in a 0600 file or an explicit export."""

import csv
import json
import stat
from pathlib import Path

from click.testing import CliRunner

from tests.support import ServerProcess, cli
from thingport.cli import main


def invoke(data_dir: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, [*args, "--data-dir", str(data_dir)])


def product(data_dir: Path, key: str = "pkImport01") -> str:
    return cli(data_dir, "product", "create", "--name", "p", "--product-key", key)["productKey"]


def names(data_dir: Path, pk: str) -> list[str]:
    return [d["deviceName"] for d in cli(data_dir, "device", "list", "--product-key", pk)]


def test_import_creates_every_row_and_hands_generated_secrets_only_to_the_out_file(
    data_dir: Path, tmp_path: Path,
) -> None:
    pk = product(data_dir)
    source = tmp_path / "fleet.csv"
    source.write_text("deviceName,deviceSecret\ndev-0001,Given-s3cret\ndev-0002,\ndev-0003,\n")
    out = tmp_path / "secrets.csv"
    result = invoke(data_dir, "device", "import", "--product-key", pk, str(source), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report == {"productKey": pk, "rows": 3, "imported": 3, "refused": 0, "generatedSecrets": 2,
                      "dryRun": False, "refusals": [], "out": str(out)}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    written = {r["deviceName"]: r for r in csv.DictReader(out.open())}
    assert written["dev-0001"]["deviceSecret"] == "Given-s3cret"
    for name in ("dev-0002", "dev-0003"):
        assert len(written[name]["deviceSecret"]) == 32 and written[name]["deviceSecret"] not in result.output
        shown = cli(data_dir, "device", "show", "--product-key", pk, "--name", name, "--with-secret")
        assert shown["deviceSecret"] == written[name]["deviceSecret"] and shown["deviceId"] == f"{pk}_{name}"
    assert names(data_dir, pk) == ["dev-0001", "dev-0002", "dev-0003"]


def test_any_refused_row_imports_nothing_and_the_report_says_which_and_why(data_dir: Path, tmp_path: Path) -> None:
    pk = product(data_dir)
    cli(data_dir, "device", "create", "--product-key", pk, "--name", "stored-1")
    source = tmp_path / "fleet.csv"
    source.write_text(
        "deviceName,deviceSecret,deviceId\n"
        "good-0001,,\n"             # 2
        "x,,\n"                     # 3 bad name
        "good-0002,has space,\n"    # 4 bad secret
        "good-0001,,\n"             # 5 twice in the file
        "stored-1,,\n"              # 6 already exists
        "dot.name,,\n"              # 7 its device_id is pk_dot-name ...
        "dot-name,,\n"              # 8 ... and so is this one's
        "good-0003,,bad id!\n"      # 9
        '"broken,\n'                # 10
        "good-0004,a,b,c\n"         # 11 too many fields
        "good-0005,Fine-secret,\n"  # 12
    )
    result = invoke(data_dir, "device", "import", "--product-key", pk, str(source), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["rows"], report["imported"], report["refused"]) == (11, 0, 8)
    assert [r["line"] for r in report["refusals"]] == [3, 4, 5, 6, 8, 9, 10, 11]
    codes = {r["line"]: (r["code"], r["reason"]) for r in report["refusals"]}
    assert codes[3][0] == "bad_name" and "deviceName must be" in codes[3][1]
    assert codes[4][0] == "bad_secret"
    assert codes[5] == ("duplicate", "deviceName good-0001 is on line 2 already")
    assert codes[6] == ("exists", f"device {pk}/stored-1 already exists")
    assert codes[8] == ("duplicate", f"device_id {pk}_dot-name is on line 7 already")
    assert codes[9][0] == "bad_device_id"
    assert codes[10][0] == "malformed" and codes[11] == ("malformed", "4 fields, the header has 3")
    assert "nothing was imported" in result.stderr
    assert names(data_dir, pk) == ["stored-1"]  # nothing half-imported

    human = invoke(data_dir, "device", "import", "--product-key", pk, str(source))
    assert human.exit_code == 1
    assert f"line 6: stored-1: exists: device {pk}/stored-1 already exists" in human.stdout

    skipped = invoke(data_dir, "device", "import", "--product-key", pk, str(source), "--skip-invalid", "--json")
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.stdout)
    assert (report["imported"], report["refused"]) == (3, 8)
    assert names(data_dir, pk) == ["stored-1", "good-0001", "dot.name", "good-0005"]


def test_dry_run_reports_and_imports_nothing(data_dir: Path, tmp_path: Path) -> None:
    pk = product(data_dir)
    source = tmp_path / "fleet.csv"
    source.write_text("deviceName\ndev-0001\ndev-0002\n")
    out = tmp_path / "secrets.csv"
    result = invoke(data_dir, "device", "import", "--product-key", pk, str(source), "--dry-run", "--out", str(out))
    assert result.exit_code == 0 and "would import 2 of 2 devices" in result.output
    assert names(data_dir, pk) == [] and not out.exists()


def test_json_lines_by_extension_and_export_reimports(data_dir: Path, tmp_path: Path) -> None:
    pk = product(data_dir)
    source = tmp_path / "fleet.jsonl"
    source.write_text(json.dumps({"deviceName": "dev-0001", "deviceSecret": "s1"}) + "\n\n"
                      + json.dumps({"deviceId": f"{pk}_node-7", "productKey": pk}) + "\n")
    cli(data_dir, "device", "import", "--product-key", pk, str(source))
    assert names(data_dir, pk) == ["dev-0001", "node-7"]

    plain = invoke(data_dir, "device", "export", "--product-key", pk)
    assert plain.exit_code == 0
    rows = list(csv.DictReader(plain.stdout.splitlines()))
    assert [r["deviceName"] for r in rows] == ["dev-0001", "node-7"] and "deviceSecret" not in rows[0]
    assert rows[1]["deviceId"] == f"{pk}_node-7" and rows[0]["status"] == "enabled"

    exported = tmp_path / "export.jsonl"
    summary = cli(data_dir, "device", "export", "--product-key", pk, "--with-secrets", "--out", str(exported))
    assert summary == {"productKey": pk, "exported": 2, "out": str(exported), "withSecrets": True}
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    records = [json.loads(line) for line in exported.read_text().splitlines()]
    assert records[0]["deviceSecret"] == "s1" and len(records[1]["deviceSecret"]) == 32

    # the export is an import file: into a fresh data dir it recreates the devices with their secrets
    other = tmp_path / "other"
    product(other, pk)
    cli(other, "device", "import", "--product-key", pk, str(exported))
    again = cli(other, "device", "show", "--product-key", pk, "--name", "node-7", "--with-secret")
    assert again["deviceSecret"] == records[1]["deviceSecret"] and again["deviceId"] == f"{pk}_node-7"


def test_a_file_it_cannot_read_is_refused_whole(data_dir: Path, tmp_path: Path) -> None:
    pk = product(data_dir)
    cases = [
        ("fleet.csv", "deviceName,deviceScret\ndev-0001,x\n", "unknown column 'deviceScret'"),
        ("fleet.csv", "", "the file is empty"),
        ("fleet.csv", "secret\nx\n", "unknown column"),
        ("fleet.txt", "deviceName\ndev-0001\n", "cannot tell the format"),
        ("fleet.csv", "", None),  # not UTF-8: written below
    ]
    for name, text, says in cases:
        path = tmp_path / name
        if says is None:
            path.write_bytes(b"deviceName\ndev-\xff0001\n")
            says = "not UTF-8"
        else:
            path.write_text(text)
        result = invoke(data_dir, "device", "import", "--product-key", pk, str(path))
        assert result.exit_code == 1 and says in result.output, (name, text, result.output)
    missing = invoke(data_dir, "device", "import", "--product-key", "pkNothing", str(tmp_path / "fleet.csv"))
    assert missing.exit_code == 1
    bad_json = tmp_path / "fleet.jsonl"
    bad_json.write_text('{"deviceName": "dev-0001"}\n[1]\n{"deviceName": 7}\n{"oops"\n{"colour": "red"}\n')
    report = json.loads(invoke(data_dir, "device", "import", "--product-key", pk, str(bad_json), "--json").stdout)
    assert [(r["line"], r["code"]) for r in report["refusals"]] == [
        (2, "malformed"), (3, "malformed"), (4, "malformed"), (5, "malformed")]
    assert names(data_dir, pk) == []


def test_out_must_be_a_new_file_and_is_checked_before_importing(data_dir: Path, tmp_path: Path) -> None:
    pk = product(data_dir)
    source = tmp_path / "fleet.csv"
    source.write_text("deviceName\ndev-0001\n")
    out = tmp_path / "secrets.csv"
    out.write_text("precious\n")
    result = invoke(data_dir, "device", "import", "--product-key", pk, str(source), "--out", str(out))
    assert result.exit_code == 1 and "exists" in result.output
    assert out.read_text() == "precious\n" and names(data_dir, pk) == []


def test_an_imported_secret_authenticates_at_the_device_endpoint(server: ServerProcess, tmp_path: Path) -> None:
    pk = product(server.data_dir, "pkImportE2E")
    source = tmp_path / "fleet.csv"
    source.write_text("deviceName,deviceSecret\nimported-1,Imported-S3cret\nimported-2,\n")
    out = tmp_path / "secrets.csv"
    cli(server.data_dir, "device", "import", "--product-key", pk, str(source), "--out", str(out))
    generated = {r["deviceName"]: r["deviceSecret"] for r in csv.DictReader(out.open())}["imported-2"]
    client = server.client()
    try:
        assert client.auth(pk, "imported-1", "Imported-S3cret").json["code"] == 0
        assert client.auth(pk, "imported-2", generated).json["code"] == 0
        assert client.auth(pk, "imported-1", "wrong-secret").json["code"] != 0
    finally:
        client.close()
