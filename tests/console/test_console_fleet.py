"""The console's bulk import and export of a product's devices, and product delete, in a real browser."""

import csv
import io
import json
from pathlib import Path

import httpx

from tests.console.test_console_browser import (  # noqa: F401 - fixtures used by name
    admin_key,
    browser,
    expect,
    expect_timeout,
    page,
    server,
    shot,
    sign_in,
)
from tests.support import ServerProcess


def admin_api(proc: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{proc.api_port}", timeout=10,
                        headers={"Authorization": f"Bearer {key}"})


def test_import_shows_the_refused_rows_then_imports_and_exports(
    page, server: ServerProcess, admin_key: str, tmp_path: Path,  # noqa: F811
) -> None:
    with admin_api(server, admin_key) as api:
        pk = api.post("/api/products", json={"name": "bulk"}).json()["productKey"]
    bad = tmp_path / "fleet.csv"
    bad.write_text("deviceName,deviceSecret\nbulk-0001,Given-S3cret\nx,\nbulk-0002,\n")
    sign_in(page, admin_key)
    expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
    page.goto(f"/console/#/devices?productKey={pk}")
    page.get_by_test_id("bulk-panel").locator("summary").click()
    page.get_by_test_id("import-file").set_input_files(str(bad))
    page.get_by_test_id("import-submit").click()
    expect(page.get_by_test_id("import-summary")).to_contain_text("nothing was imported", **expect_timeout)
    refusals = page.get_by_test_id("refusal-row")
    expect(refusals).to_have_count(1)
    expect(refusals.first).to_contain_text("bad_name")
    expect(refusals.first).to_contain_text("3")
    shot(page, "fleet-01-import-refused")

    page.get_by_test_id("import-skip").check()
    page.get_by_test_id("import-submit").click()
    expect(page.get_by_test_id("import-summary")).to_contain_text("Imported 2 of 3 devices", **expect_timeout)
    expect(page.get_by_test_id("device-row")).to_have_count(2, **expect_timeout)  # the list shows them
    with page.expect_download() as got:
        page.get_by_test_id("import-secrets").click()
    secrets = {r["deviceName"]: r["deviceSecret"] for r in csv.DictReader(io.StringIO(
        Path(got.value.path()).read_text()))}
    assert secrets["bulk-0001"] == "Given-S3cret" and len(secrets["bulk-0002"]) == 32
    assert secrets["bulk-0002"] not in page.content()  # offered as a file, never shown on the page
    shot(page, "fleet-02-imported")

    with page.expect_download() as got:
        page.get_by_test_id("export-jsonl").click()
    exported = [json.loads(line) for line in Path(got.value.path()).read_text().splitlines()]
    assert [d["deviceName"] for d in exported] == ["bulk-0001", "bulk-0002"] and "deviceSecret" not in exported[0]
    page.get_by_test_id("export-secrets").check()
    with page.expect_download() as got:
        page.get_by_test_id("export-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert {r["deviceName"]: r["deviceSecret"] for r in rows} == secrets


def test_product_delete_asks_again_before_deleting_its_devices(
    page, server: ServerProcess, admin_key: str,  # noqa: F811
) -> None:
    with admin_api(server, admin_key) as api:
        pk = api.post("/api/products", json={"name": "doomed"}).json()["productKey"]
        api.post("/api/devices", json={"productKey": pk, "deviceName": "doomed-1"})
        asked: list[str] = []

        def answer(dialog):  # type: ignore[no-untyped-def]
            asked.append(dialog.message)
            dialog.accept()

        page.on("dialog", answer)
        sign_in(page, admin_key)
        expect(page.get_by_test_id("sign-out")).to_be_visible(**expect_timeout)
        page.get_by_test_id("nav-products").click()
        page.get_by_test_id(f"delete-product-{pk}").click()
        expect(page.get_by_test_id("notice")).to_contain_text(f"Deleted product {pk} with 1 devices", **expect_timeout)
        assert len(asked) == 2 and "1 devices" in asked[1]
        expect(page.locator(f'[data-testid="product-row"][data-product-key="{pk}"]')).to_have_count(0)
        assert api.get(f"/api/products/{pk}").status_code == 404
