"""The ``thingport`` command: run the server, manage products and devices, look at messages.

Management commands work on the same data dir as a running server; the server picks their changes up
from the registry's change feed within a second.
"""

import asyncio
import datetime
import json
import os
import shutil
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from thingport import cli_output
from thingport.api import views
from thingport.auth_request import DIALECTS as AUTH_DIALECTS
from thingport.auth_request import auth_request
from thingport.bus.factory import SINK_TYPES, options_type
from thingport.bus.options import text_options
from thingport.cli_errors import DEBUG_ENV, CliError, GuardedGroup
from thingport.core.alarms import SEVERITIES
from thingport.core.alarms import STATES as ALARM_STATES
from thingport.core.errors import ThingportError
from thingport.core.model import VALIDATION_MODES
from thingport.core.presentation import presentations, show
from thingport.core.timestamps import datetime_ms
from thingport.core.topics import compile_topic_filter
from thingport.manage import device_files, history_files
from thingport.manage.rules import LAST_MAX
from thingport.manage.service import KEEP, MESSAGE_KINDS, NODE_TYPES, Management
from thingport.manage.thing_models import MODEL_FORMATS
from thingport.settings import load_settings

T = TypeVar("T")

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="THINGPORT_DATA_DIR",
    default=None,
    help="Data directory [env THINGPORT_DATA_DIR; default ./thingport-data].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
database_option = click.option(
    "--database", "database_url", default=None,
    help="postgresql://... (production mode) [env THINGPORT_DATABASE_URL; default SQLite in the data dir].",
)
device_options = [
    click.option("--product-key", "product_key", required=True, help="The device's productKey."),
    click.option("--name", "device_name", required=True, help="The deviceName."),
]


def with_device(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(device_options):
        fn = option(fn)
    return fn


def run(data_dir: Path | None, action: Callable[[Management], Coroutine[Any, Any, T]], creates: bool = False) -> T:
    """Run ``action`` against the data dir's stores (failures become one ``error:`` line: cli_errors).
    ``creates``: the command may make the data dir, its database and master key (a first product or API
    key); every other command needs them to exist, and a mistyped --data-dir changes nothing."""
    from thingport.runtime.bootstrap import build  # deferred: `thingport --help` stays fast

    app = build(load_settings(data_dir=data_dir), create=creates)
    try:
        return asyncio.run(action(app.management()))
    finally:
        app.close()


def emit(doc: Any, as_json: bool) -> None:
    """``doc`` as JSON (``--json``), or for people: a table for a list, aligned lines for one document."""
    if as_json:
        click.echo(json.dumps(doc))
        return
    text = cli_output.render(doc)
    if text:
        click.echo(text)


@click.group(cls=GuardedGroup)
@click.version_option(package_name="thingport")
@click.option("--debug", is_flag=True, help=f"Show a failure's Python traceback [env {DEBUG_ENV}=1].")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """thingport: IoT device access over HTTPS.

    Exit status: 0 done; 1 the command failed (one `error: ...` line on stderr); 2 a usage error (an
    unknown command, a missing or malformed option)."""
    ctx.meta[DEBUG_ENV] = debug


@main.command()
@click.option("--host", default=None, help="Listen address [default 0.0.0.0].")
@click.option("--port", type=int, default=None, help="Listen port [default 8443].")
@data_dir_option
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-ecdsa/--no-tls-ecdsa", default=None,
              help="Also serve an ECDSA P-256 certificate to clients that offer ECDSA; devices must trust it "
                   "[env THINGPORT_TLS_ECDSA; default off].")
@click.option("--tls-ecdsa-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="An ECDSA certificate (and --tls-ecdsa-key) to serve beside --tls-cert's RSA one.")
@click.option("--tls-ecdsa-key", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tls-profile", type=click.Choice(["modern", "compat"]), default=None,
              help="modern (default): ECDHE AEAD suites; compat: adds RSA key exchange and CBC suites.")
@click.option("--api-host", default=None, help="Management API listen address [default 127.0.0.1].")
@click.option("--api-port", type=int, default=None, help="Management API port [default 8080].")
@database_option
@click.option("--redis", "redis_url", default=None,
              help="redis://... shares rate limits and presence between instances [env THINGPORT_REDIS_URL].")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes on this host, sharing the ports [env THINGPORT_WORKERS; default 1].")
@click.option("--db-upgrade", is_flag=True, default=None, help="Run the PostgreSQL schema migrations first.")
@click.option("--durability", type=click.Choice(["fsync", "os"]), default=None,
              help="fsync (default): a report is acknowledged once on disk, survives power loss; os: once written "
                   "to the OS, survives a crash of thingport but not of the machine [env THINGPORT_DURABILITY].")
def serve(host: str | None, port: int | None, data_dir: Path | None, tls_cert: Path | None,
          tls_key: Path | None, tls_ecdsa: bool | None, tls_ecdsa_cert: Path | None, tls_ecdsa_key: Path | None,
          tls_profile: str | None, api_host: str | None, api_port: int | None, database_url: str | None,
          redis_url: str | None, workers: int | None, db_upgrade: bool | None, durability: str | None) -> None:
    """Run the HTTPS device endpoint and the management API (with the web console)."""
    from thingport.runtime.server import ServeOptionError
    from thingport.runtime.server import serve as run_server

    try:
        run_server(load_settings(host=host, port=port, data_dir=data_dir, tls_cert=tls_cert, tls_key=tls_key,
                                 tls_ecdsa=tls_ecdsa, tls_ecdsa_cert=tls_ecdsa_cert, tls_ecdsa_key=tls_ecdsa_key,
                                 tls_profile=tls_profile, api_host=api_host, api_port=api_port,
                                 database_url=database_url, redis_url=redis_url, workers=workers,
                                 db_upgrade=db_upgrade, durability=durability))
    except ServeOptionError as exc:
        raise click.UsageError(str(exc)) from None


# --- database ---

@main.group()
def db() -> None:
    """The PostgreSQL schema (the embedded SQLite store migrates itself)."""


def _database_url(database_url: str | None) -> str:
    url = load_settings(database_url=database_url).database_url
    if not url:
        raise click.UsageError("no PostgreSQL database: give --database or set THINGPORT_DATABASE_URL")
    return url


@db.command("upgrade")
@database_option
@json_option
def db_upgrade(database_url: str | None, as_json: bool) -> None:
    """Migrate the schema to the newest version (safe to run again, and from several hosts). Each step
    applied, and how far a step that rewrites data is, is shown on standard error as it goes."""
    from thingport.store import pg_schema

    progress = cli_output.Progress(sys.stderr)
    before, after = pg_schema.upgrade(_database_url(database_url), progress=progress)
    emit({"from": before, "to": after, "changed": before != after}, as_json)


@db.command("current")
@database_option
@json_option
def db_current(database_url: str | None, as_json: bool) -> None:
    """The schema version the database is at, and the one this thingport needs."""
    from thingport.store import pg_schema

    emit({"current": pg_schema.current(_database_url(database_url)), "head": pg_schema.head()}, as_json)


# --- products ---

@main.group()
def product() -> None:
    """Products."""


def read_json_file(path: Path) -> Any:
    """The file's JSON; a missing, unreadable or broken file is a failure (exit 1), not a usage error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"{path}: not a JSON file ({exc})") from None


validation_option = click.option(
    "--validation", type=click.Choice(VALIDATION_MODES), default=None,
    help="per-property (default): an invalid property refuses only itself; whole-report: it refuses the report.",
)

_SIGN_TYPE_1 = {"yes": True, "no": False, "server": None}
sign_type_1_option = click.option(
    "--require-sign-type-1", "sign_type_1", type=click.Choice(list(_SIGN_TYPE_1)), default=None,
    help="IoTDA auth of its devices must be sign_type 1 (time-checked; sign_type 0 is refused): yes, no, or "
         "server (THINGPORT_HUAWEI_REQUIRE_SIGN_TYPE_1 decides, the default).",
)


@product.command("create")
@click.option("--name", required=True)
@click.option("--product-key", default=None, help="Given key (default: generated).")
@click.option("--node-type", type=click.Choice(NODE_TYPES), default="device", show_default=True)
@click.option("--tsl", "tsl_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Alibaba TSL JSON file: the product's thing model.")
@click.option("--model", "model_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A thing model file in either format, told apart as `product model import` does: an IoTDA "
                   "product model (services with service_id) or a TSL.")
@validation_option
@sign_type_1_option
@data_dir_option
@json_option
def product_create(name: str, product_key: str | None, node_type: str, tsl_file: Path | None,
                   model_file: Path | None, validation: str | None, sign_type_1: str | None, data_dir: Path | None,
                   as_json: bool) -> None:
    """Create a product (with a thing model when --tsl or --model is given)."""
    if tsl_file and model_file:
        raise click.UsageError("give the thing model with --tsl or with --model, not both")
    model_file = tsl_file or model_file
    model = read_json_file(model_file) if model_file else None
    model_format = "tsl" if tsl_file else "auto"

    required = _SIGN_TYPE_1[sign_type_1] if sign_type_1 else None
    created = run(data_dir, lambda m: m.create_product(
        name, product_key, node_type, model, validation or "per-property", model_format=model_format,
        require_sign_type_1=required), creates=True)
    emit(views.product_json(created), as_json)


@product.command("set")
@click.option("--product-key", required=True)
@validation_option
@click.option("--presence-timeout", type=float, default=None,
              help="Seconds of silence after which its devices are offline (0: the server's default).")
@click.option("--device-report-rate", type=float, default=None,
              help="Reports per second each of its devices may send (0: the server's default).")
@click.option("--device-report-burst", type=float, default=None,
              help="Reports each of its devices may send at once (0: the server's default).")
@sign_type_1_option
@data_dir_option
@json_option
def product_set(product_key: str, validation: str | None, presence_timeout: float | None,
                device_report_rate: float | None, device_report_burst: float | None, sign_type_1: str | None,
                data_dir: Path | None, as_json: bool) -> None:
    """Change a product's settings."""
    required = _SIGN_TYPE_1[sign_type_1] if sign_type_1 else KEEP
    changed = run(data_dir, lambda m: m.update_product(
        product_key, validation=validation, presence_timeout_s=presence_timeout, report_rate=device_report_rate,
        report_burst=device_report_burst, require_sign_type_1=required))
    emit(views.product_json(changed), as_json)


@product.group("tsl")
def product_tsl() -> None:
    """A product's thing model (Alibaba TSL)."""


@product_tsl.command("import")
@click.option("--product-key", required=True)
@click.argument("tsl_file", type=click.Path(dir_okay=False, path_type=Path))
@data_dir_option
@json_option
def product_tsl_import(product_key: str, tsl_file: Path, data_dir: Path | None, as_json: bool) -> None:
    """Load a TSL JSON file as the product's model; a running server uses it within a second."""
    document = read_json_file(tsl_file)
    emit(views.product_json(run(data_dir, lambda m: m.import_thing_model(product_key, document, "tsl"))), as_json)


def echo_document(doc: Any, as_json: bool) -> None:
    """A document that is JSON either way: indented for people, one line with ``--json``."""
    click.echo(json.dumps(doc) if as_json else json.dumps(doc, ensure_ascii=False, indent=2))


@product_tsl.command("export")
@click.option("--product-key", required=True)
@data_dir_option
@json_option
def product_tsl_export(product_key: str, data_dir: Path | None, as_json: bool) -> None:
    """Print the product's model as TSL JSON (indented; --json: on one line)."""
    echo_document(run(data_dir, lambda m: m.export_thing_model(product_key)), as_json)


@product.command("list")
@data_dir_option
@json_option
def product_list(data_dir: Path | None, as_json: bool) -> None:
    """List products, with their devices counted: total, online, disabled."""
    async def counted(m: Management) -> list[dict]:
        products, counts = await m.products(), await m.device_counts()
        return [views.counted_product_json(p, counts.get(p.product_key)) for p in products]

    docs = run(data_dir, counted)
    emit(docs if as_json else [_flat_counts(doc) for doc in docs], as_json)


def _flat_counts(doc: dict) -> dict:
    """For people: the ``devices`` counts as three columns next to the product's name."""
    counts = doc["devices"]
    rest = {k: v for k, v in doc.items() if k not in ("productKey", "name", "devices")}
    return {"productKey": doc["productKey"], "name": doc["name"], "devices": counts["total"],
            "online": counts["online"], "disabled": counts["disabled"], **rest}


@product.command("show")
@click.option("--product-key", required=True)
@data_dir_option
@json_option
def product_show(product_key: str, data_dir: Path | None, as_json: bool) -> None:
    """Show one product, with its devices counted: total, online, disabled."""
    async def counted(m: Management) -> dict:
        product, counts = await m.product(product_key), await m.device_counts(product_key)
        return views.counted_product_json(product, counts.get(product_key))

    doc = run(data_dir, counted)
    emit(doc if as_json else _flat_counts(doc), as_json)


@product.group("model")
def product_model() -> None:
    """A product's thing model in either format (Alibaba TSL or Huawei IoTDA product model)."""


@product_model.command("import")
@click.option("--product-key", required=True)
@click.option("--format", "model_format", type=click.Choice(MODEL_FORMATS), default="auto", show_default=True,
              help="auto: a document whose services carry service_id is an IoTDA product model, else TSL.")
@click.argument("model_file", type=click.Path(dir_okay=False, path_type=Path))
@data_dir_option
@json_option
def product_model_import(product_key: str, model_format: str, model_file: Path, data_dir: Path | None,
                         as_json: bool) -> None:
    """Load a model file as the product's model; a running server uses it within a second."""
    document = read_json_file(model_file)
    imported = run(data_dir, lambda m: m.import_thing_model(product_key, document, model_format))
    emit(views.product_json(imported), as_json)


@product_model.command("export")
@click.option("--product-key", required=True)
@data_dir_option
@json_option
def product_model_export(product_key: str, data_dir: Path | None, as_json: bool) -> None:
    """Print the model as imported: {"format": "tsl"|"huawei", "model": {...}} (--json: on one line)."""
    echo_document(run(data_dir, lambda m: m.model_document(product_key)), as_json)


# --- devices ---

@main.group()
def device() -> None:
    """Devices."""


def parse_gateway(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    product_key, sep, device_name = value.partition("/")
    if not sep or not product_key or not device_name:
        raise click.BadParameter("give the gateway as PRODUCTKEY/DEVICENAME")
    return product_key, device_name


@device.command("create")
@click.option("--product-key", "product_key", required=True, help="The device's productKey.")
@click.option("--name", "device_name", default=None, help="The deviceName (default: from --device-id).")
@click.option("--device-id", default=None,
              help="IoTDA device_id (default: <productKey>_<deviceName>, with @ . : as -).")
@click.option("--secret", default=None, help="Given deviceSecret (default: 32 generated characters).")
@click.option("--gateway", default=None, metavar="GWPK/GWDN", help="Make it a sub-device of this gateway device.")
@data_dir_option
@json_option
def device_create(product_key: str, device_name: str | None, device_id: str | None, secret: str | None,
                  gateway: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Create a device; prints its deviceSecret and deviceId."""
    parent = parse_gateway(gateway)
    if device_name is None and device_id is None:
        raise click.UsageError("give --name or --device-id")
    created = run(data_dir, lambda m: m.create_device(product_key, device_name, secret, device_id, parent))
    emit(views.device_json(created, with_secret=True), as_json)


@device.command("children")
@with_device
@data_dir_option
@json_option
def device_children(product_key: str, device_name: str, data_dir: Path | None, as_json: bool) -> None:
    """List a gateway's sub-devices."""
    listed = run(data_dir, lambda m: m.children(product_key, device_name))
    emit([views.listed_device_json(d) for d in listed], as_json)


@device.command("list")
@click.option("--product-key", default=None, help="Only this product's devices.")
@click.option("--name-prefix", default=None, help="Only devices whose name starts with this.")
@click.option("--status", type=click.Choice(["enabled", "disabled"]), default=None,
              help="Only enabled or disabled ones.")
@click.option("--online/--offline", "online", default=None,
              help="Only devices online (enabled and seen within the presence timeout), or only offline ones.")
@data_dir_option
@json_option
def device_list(product_key: str | None, name_prefix: str | None, status: str | None, online: bool | None,
                data_dir: Path | None, as_json: bool) -> None:
    """List devices in creation order, with online (as `device status` says it) and last seen."""
    enabled = None if status is None else status == "enabled"

    async def listing(m: Management) -> list[dict]:
        return [views.listed_device_json(d) async for d in m.listed_devices(product_key, name_prefix, enabled, online)]

    docs = run(data_dir, listing)
    emit(docs if as_json else [_presence_first(doc) for doc in docs], as_json)


def _presence_first(doc: dict) -> dict:
    """For people: who, enabled or not, online or not and when last seen, then the rest."""
    first = ("productKey", "deviceName", "status", "online", "lastSeenAt")
    return {**{k: doc[k] for k in first}, **{k: v for k, v in doc.items() if k not in first}}


@device.command("show")
@with_device
@click.option("--with-secret", is_flag=True, help="Include the deviceSecret.")
@data_dir_option
@json_option
def device_show(product_key: str, device_name: str, with_secret: bool, data_dir: Path | None, as_json: bool) -> None:
    """Show one device."""
    emit(views.device_json(run(data_dir, lambda m: m.device(product_key, device_name)), with_secret), as_json)


@device.command("auth-request")
@click.option("--product-key", "product_key", required=True, help="The device's productKey.")
@click.option("--name", "--device-name", "device_name", required=True, help="The deviceName.")
@click.option("--dialect", type=click.Choice(AUTH_DIALECTS), default="aliyun", show_default=True,
              help="aliyun: a POST /auth body; iotda: a POST /v5/device-auth body.")
@click.option("--secret", default=None, help="The deviceSecret (default: read from the data dir).")
@click.option("--device-id", default=None, help="iotda: the device_id (default: the device's).")
@click.option("--client-id", default=None, help="aliyun: the clientId (default: <productKey>.<deviceName>).")
@click.option("--sign-method", type=click.Choice(["hmacmd5", "hmacsha1", "hmacsha256"]), default="hmacsha256",
              show_default=True, help="aliyun: the signmethod.")
@click.option("--curl", "as_curl", is_flag=True, help="Print the whole curl command.")
@click.option("--endpoint", default=None, help="For --curl: the device endpoint [default https://localhost:<port>].")
@click.option("--cacert", default=None,
              help="For --curl: the certificate to trust ('' for none) [default the server's, in the data dir].")
@data_dir_option
@json_option
def device_auth_request(product_key: str, device_name: str, dialect: str, secret: str | None, device_id: str | None,
                        client_id: str | None, sign_method: str, as_curl: bool, endpoint: str | None,
                        cacert: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Print a device's authentication body, signed now (or --curl: the command that sends it)."""
    if secret is None:  # operator side: the secret (and IoTDA id) as stored
        stored = run(data_dir, lambda m: m.device(product_key, device_name))
        secret, device_id = stored.secret, device_id or stored.device_id
    try:
        built = auth_request(dialect, product_key, device_name, secret, device_id=device_id, client_id=client_id,
                             sign_method=sign_method)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    settings = load_settings(data_dir=data_dir)
    scheme = "http" if settings.tls_offload else "https"
    endpoint = endpoint or f"{scheme}://localhost:{settings.port}"
    if cacert is None and scheme == "https":
        cacert = str(settings.tls_cert or settings.data_dir / "tls-cert.pem")
    command = built.curl(endpoint, cacert or None)
    if as_json:
        click.echo(json.dumps({"dialect": dialect, "method": built.request.method, "path": built.request.path,
                               "headers": dict(built.request.headers), "body": built.body, "curl": command}))
    else:
        click.echo(command if as_curl else built.body_text())


@device.command("disable")
@with_device
@data_dir_option
@json_option
def device_disable(product_key: str, device_name: str, data_dir: Path | None, as_json: bool) -> None:
    """Disable a device: its tokens stop working at once, and it cannot authenticate."""
    emit(views.device_json(run(data_dir, lambda m: m.set_enabled(product_key, device_name, False))), as_json)


@device.command("enable")
@with_device
@data_dir_option
@json_option
def device_enable(product_key: str, device_name: str, data_dir: Path | None, as_json: bool) -> None:
    """Enable a device again (it must authenticate anew)."""
    emit(views.device_json(run(data_dir, lambda m: m.set_enabled(product_key, device_name, True))), as_json)


@device.command("delete")
@with_device
@data_dir_option
@json_option
def device_delete(product_key: str, device_name: str, data_dir: Path | None, as_json: bool) -> None:
    """Delete a device; its tokens stop working. Its stored messages stay."""
    deleted = run(data_dir, lambda m: m.delete_device(product_key, device_name))
    emit({**views.device_json(deleted), "deleted": True}, as_json)


@device.command("reset-secret")
@with_device
@click.option("--secret", default=None, help="Given new deviceSecret (default: generated).")
@data_dir_option
@json_option
def device_reset_secret(product_key: str, device_name: str, secret: str | None, data_dir: Path | None,
                        as_json: bool) -> None:
    """Give a device a new secret; its tokens stop working. Prints the new deviceSecret."""
    reset = run(data_dir, lambda m: m.reset_secret(product_key, device_name, secret))
    emit(views.device_json(reset, with_secret=True), as_json)


def parse_time(value: str | None) -> int | None:
    """Milliseconds since the epoch, from a number of ms or an ISO 8601 time (UTC when no zone)."""
    if value is None:
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        at = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither milliseconds since the epoch nor an ISO 8601 time") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return datetime_ms(at)


@device.command("status")
@with_device
@data_dir_option
@json_option
def device_status(product_key: str, device_name: str, data_dir: Path | None, as_json: bool) -> None:
    """Online/offline, last seen, and the latest value and time of every property."""
    async def status_and_model(m: Management) -> tuple[Any, dict | None]:
        return await m.device_status(product_key, device_name), await m.export_thing_model_or_none(product_key)

    found, model = run(data_dir, status_and_model)
    status = views.status_json(found)
    if as_json:
        click.echo(json.dumps(status))
        return
    seen = _iso(status["lastSeenAt"]) if status["lastSeenAt"] else "never"
    state = status["state"] if status["enabled"] else f"{status['state']}, disabled"
    click.echo(f"{product_key}/{device_name}: {state} (last seen {seen}; times in UTC)")
    shown = presentations(model) if model else {}
    rows = [{"property": name, "value": show(latest["value"], shown.get(name)), "time": latest["time"]}
            for name, latest in status["properties"].items()]
    if rows:
        click.echo(cli_output.table(rows))


@device.command("history")
@with_device
@click.option("--property", "identifier", required=True, help="The property's identifier.")
@click.option("--from", "from_", default=None, help="Oldest time: ms since the epoch or ISO 8601.")
@click.option("--to", default=None, help="Newest time: ms since the epoch or ISO 8601.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--csv", "as_csv", is_flag=True,
              help="Every value in [--from, --to] as CSV, oldest first (time,timeMs,value,label,messageId); no limit.")
@data_dir_option
@json_option
def device_history(product_key: str, device_name: str, identifier: str, from_: str | None, to: str | None,
                   limit: int, as_csv: bool, data_dir: Path | None, as_json: bool) -> None:
    """A property's time series, newest first (--csv: all of it, oldest first)."""
    from_ms, to_ms = parse_time(from_), parse_time(to)
    if as_csv:
        if as_json:
            raise click.UsageError("--csv and --json exclude each other")
        if click.get_current_context().get_parameter_source("limit") is not click.core.ParameterSource.DEFAULT:
            raise click.UsageError("--csv writes every value in the range: narrow it with --from/--to, not --limit")

        async def export(m: Management) -> None:
            pages = await m.device_history_export(product_key, device_name, identifier, from_ms, to_ms)
            model = await m.export_thing_model_or_none(product_key)
            shown = presentations(model).get(identifier) if model else None
            sys.stdout.write(",".join(history_files.HEADER) + "\r\n")
            async for rows in pages:
                sys.stdout.write(history_files.csv_text(rows, shown))

        run(data_dir, export)
        return
    points = run(data_dir, lambda m: m.device_history(product_key, device_name, identifier, from_ms, to_ms, limit))
    if as_json:
        click.echo(json.dumps(points))
        return
    for point in points:
        click.echo(f"{_iso(point['time'])}  {json.dumps(point['value'])}")


# --- fleet lifecycle: product delete, bulk device files (import and export) ---

@product.command("delete")
@click.option("--product-key", required=True)
@click.option("--force", is_flag=True, help="Delete its devices (with their status and history) and subscriptions too.")
@data_dir_option
@json_option
def product_delete(product_key: str, force: bool, data_dir: Path | None, as_json: bool) -> None:
    """Delete a product and its thing model; refused while it has devices or subscriptions, unless --force.
    Its messages stay in the log."""
    deleted, devices, subscriptions = run(data_dir, lambda m: m.delete_product(product_key, force))
    emit({**views.product_json(deleted), "deleted": True, "devicesDeleted": devices,
          "subscriptionsDeleted": subscriptions}, as_json)


def _read_device_file(path: Path) -> list[str]:
    """The file's lines (``-``: standard input); unreadable or not UTF-8 is a failure (exit 1)."""
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
        return data.decode("utf-8").split("\n")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _open_private(path: Path) -> int:
    """A new file only its owner may read (it receives device secrets); an existing one is not overwritten."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{path} exists: give a new file for the secrets") from None
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None


@device.command("import")
@click.option("--product-key", required=True, help="The product the devices are created in.")
@click.option("--format", "file_format", type=click.Choice(device_files.FORMATS), default=None,
              help="csv or jsonl (default: from the file's extension: .csv, .jsonl/.ndjson/.json).")
@click.option("--skip-invalid", is_flag=True,
              help="Import the valid rows and skip the refused ones (default: any refused row imports nothing).")
@click.option("--dry-run", is_flag=True, help="Check every row and report; import nothing.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the imported devices with their secrets to this new file (mode 0600), in the input's "
                   "format: the only place generated secrets are shown besides `device export --with-secrets`.")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@data_dir_option
@json_option
def device_import(product_key: str, file_format: str | None, skip_invalid: bool, dry_run: bool, out: Path | None,
                  file: Path, data_dir: Path | None, as_json: bool) -> None:
    """Create many devices from a CSV (header deviceName,deviceSecret[,deviceId]) or JSON lines file.

    All or nothing: if any row is refused (bad or duplicate name, existing device, bad secret...), nothing is
    imported and every refused row is listed with its line and reason; exit status 1. --skip-invalid imports
    the valid rows instead. Secrets not given are generated; --out receives them (never the output)."""
    try:
        fmt = device_files.format_of(None if str(file) == "-" else file.name, file_format)
        rows = device_files.parse(_read_device_file(file), fmt)
    except ThingportError as exc:
        raise CliError(f"{file}: {exc}") from None
    fd = _open_private(out) if out is not None and not dry_run else None
    try:
        report = run(data_dir, lambda m: m.import_devices(product_key, rows, skip_invalid, dry_run))
        if fd is not None and report.imported:
            records = ({"productKey": product_key, "deviceName": d.device_name, "deviceId": d.device_id,
                        "deviceSecret": d.secret} for d in report.devices)
            writer = device_files.LineWriter(fmt, device_files.SECRET_COLUMNS)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                fd = None
                f.write(writer.header())
                f.writelines(writer.line(r) for r in records)
    finally:
        if fd is not None:
            os.close(fd)
            assert out is not None
            out.unlink(missing_ok=True)  # nothing imported: no file
    written = str(out) if out is not None and report.imported else None
    doc = {**views.import_report_json(report, dry_run), "out": written}
    failed = bool(report.refusals) and not skip_invalid
    if as_json:
        click.echo(json.dumps(doc))
    else:
        for r in report.refusals:
            click.echo(f"line {r.line}: {r.device_name or '-'}: {r.code}: {r.reason}")
        if not failed:
            verb = "would import" if dry_run else "imported"
            line = f"{verb} {report.imported if not dry_run else report.rows - len(report.refusals)}" \
                   f" of {report.rows} devices into {product_key}"
            if report.refusals:
                line += f", {len(report.refusals)} rows skipped"
            if report.generated:
                where = f"written to {out}" if doc["out"] else \
                    f"see `thingport device export --product-key {product_key} --with-secrets`"
                line += f"; {report.generated} secrets generated ({where})"
            click.echo(line)
    if failed:
        raise CliError(f"{len(report.refusals)} of {report.rows} rows refused: nothing was imported"
                       + ("" if dry_run else " (--skip-invalid imports the valid rows)"))


@device.command("export")
@click.option("--product-key", required=True)
@click.option("--format", "file_format", type=click.Choice(device_files.FORMATS), default=None,
              help="csv (default) or jsonl; with --out, default from its extension.")
@click.option("--with-secrets", is_flag=True,
              help="Include each deviceSecret (decrypted): only with --out (written 0600) or to a pipe.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this new file instead of standard output.")
@data_dir_option
@json_option
def device_export(product_key: str, file_format: str | None, with_secrets: bool, out: Path | None,
                  data_dir: Path | None, as_json: bool) -> None:
    """Write a product's devices as CSV or JSON lines, in deviceName order; `device import` reads it back.
    --json: JSON lines on standard output, or with --out a JSON summary."""
    if file_format is None:
        file_format = device_files.format_of(out.name, None) if out is not None and "." in out.name else (
            "jsonl" if as_json else "csv")
    if with_secrets and out is None and sys.stdout.isatty():
        raise click.UsageError("--with-secrets prints secrets: give --out FILE, or pipe the output")
    fd = _open_private(out) if out is not None else None
    count = 0

    async def export(m: Management) -> None:
        nonlocal count
        sink = os.fdopen(fd, "w", encoding="utf-8") if fd is not None else None
        write = sink.write if sink is not None else sys.stdout.write
        writer = device_files.LineWriter(file_format, device_files.export_columns(with_secrets))
        try:
            write(writer.header())
            async for d in m.export_devices(product_key):
                count += 1
                write(writer.line(device_files.export_record(d, with_secrets)))
        finally:
            if sink is not None:
                sink.close()

    try:
        run(data_dir, export)
    except BaseException:
        if out is not None:
            out.unlink(missing_ok=True)
        raise
    if out is not None:
        emit({"productKey": product_key, "exported": count, "out": str(out), "withSecrets": with_secrets}, as_json)


# --- subscriptions ---

def parse_options(sink: str, pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; numbers and booleans become those, but never in options the sink's options
    struct types as text (a secret of ``1.50`` stays ``"1.50"``)."""
    struct = options_type(sink)
    text = text_options(struct) if struct is not None else frozenset()
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: options are key=value")
        if key in text:
            options[key] = value
            continue
        try:
            parsed = json.loads(value)
            options[key] = parsed if isinstance(parsed, (int, float, bool)) else value
        except json.JSONDecodeError:
            options[key] = value
    return options


@main.group()
def subscription() -> None:
    """Forwarding a product's messages to applications (server-side subscriptions)."""


@subscription.command("create")
@click.option("--name", required=True)
@click.option("--product-key", "product_keys", multiple=True,
              help="A product whose messages it takes (repeatable: several products).")
@click.option("--all-products", is_flag=True, help="Every product's messages, those of products created later too.")
@click.option("--sink", type=click.Choice(SINK_TYPES), required=True,
              help="http: applications pull from the API (or its SSE stream); the others push.")
@click.option("--kinds", default="raw,properties,event,status,alarm", show_default=True,
              help="Comma-separated: raw, properties, event, status, alarm.")
@click.option("--topic-filter", default=None, help="MQTT-style filter on the message topic (+, #).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Sink option, e.g. url=amqp://guest:guest@127.0.0.1:5672/ or secret=... (repeatable).")
@click.option("--from-start", is_flag=True, help="Start from the oldest retained message, not from now.")
@click.option("--no-check", is_flag=True,
              help="Do not connect to the sink first (it is not up yet); by default a sink that cannot be reached "
                   "or refuses the credentials is an error.")
@data_dir_option
@json_option
def subscription_create(name: str, product_keys: tuple[str, ...], all_products: bool, sink: str, kinds: str,
                        topic_filter: str | None, options: tuple[str, ...], from_start: bool, no_check: bool,
                        data_dir: Path | None, as_json: bool) -> None:
    """Create a subscription of one product, several (--product-key repeated) or all (--all-products); a
    running server starts forwarding within a second."""
    if bool(product_keys) == all_products:
        raise click.UsageError("give --product-key (once or more) or --all-products")
    parsed = parse_options(sink, options)
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    products = None if all_products else list(product_keys)
    created = run(data_dir, lambda m: m.create_subscription(name, products, sink, kind_list, topic_filter, parsed,
                                                           from_start, check=not no_check))
    emit(views.subscription_json(created, backlog=0), as_json)


@subscription.command("list")
@data_dir_option
@json_option
def subscription_list(data_dir: Path | None, as_json: bool) -> None:
    """Subscriptions with their backlog (messages not yet confirmed by the sink) and delivery state:
    running, retrying or failing (with the last error and since when), or disabled."""
    emit([views.subscription_json(s, backlog) for s, backlog in run(data_dir, lambda m: m.subscriptions())], as_json)


@subscription.command("delete")
@click.option("--name", required=True)
@data_dir_option
@json_option
def subscription_delete(name: str, data_dir: Path | None, as_json: bool) -> None:
    """Delete a subscription (its undelivered messages are no longer kept for it); prints what was deleted."""
    async def delete(m: Management) -> dict:
        doc = views.subscription_json(await m.subscription(name))
        await m.delete_subscription(name)
        return doc

    emit({**run(data_dir, delete), "deleted": True}, as_json)


@subscription.command("enable")
@click.option("--name", required=True)
@data_dir_option
@json_option
def subscription_enable(name: str, data_dir: Path | None, as_json: bool) -> None:
    emit(views.subscription_json(run(data_dir, lambda m: m.set_subscription_enabled(name, True))), as_json)


@subscription.command("disable")
@click.option("--name", required=True)
@data_dir_option
@json_option
def subscription_disable(name: str, data_dir: Path | None, as_json: bool) -> None:
    """Pause forwarding; messages keep waiting for it (and are kept from retention)."""
    emit(views.subscription_json(run(data_dir, lambda m: m.set_subscription_enabled(name, False))), as_json)


# --- alarms ---

_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str | None) -> float | None:
    """``120``, ``90s``, ``2m``, ``1.5h``: seconds."""
    if text is None:
        return None
    number = text.rstrip("smhin")
    unit = text[len(number):]
    try:
        if unit not in _DURATION_UNITS:
            raise ValueError
        return float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 120, 90s, 2m, 1h)") from None


@main.group()
def alarm() -> None:
    """Alarm definitions per product, the fleet's alarms, and acknowledging them."""


@alarm.command("define")
@click.option("--product-key", required=True)
@click.option("--name", required=True, help="The alarm's name (letters, digits, _ . -).")
@click.option("--severity", type=click.Choice(SEVERITIES), required=True)
@click.option("--when", "condition", required=True,
              help="'temperature > 38' (> >= < <= == !=), 'humidity outside [20, 80]', 'door == true', or 'silent'.")
@click.option("--for", "duration", default=None, help="How long the condition must hold first: 120, 90s, 2m, 1h.")
@click.option("--clear-when", "clear_condition", default=None,
              help="Clears it (hysteresis, e.g. 'temperature < 36'); default: the condition no longer holding.")
@data_dir_option
@json_option
def alarm_define(product_key: str, name: str, severity: str, condition: str, duration: str | None,
                 clear_condition: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Define an alarm on a product's devices; checked against its thing model (nothing is stored when it
    does not fit). A running server judges it within a second."""
    seconds = parse_duration(duration)
    defined = run(data_dir, lambda m: m.alarms.define(product_key, name, severity, condition, clear_condition,
                                                      seconds))
    emit(defined.view(), as_json)


@alarm.command("definitions")
@click.option("--product-key", default=None, help="One product's (default: every product's).")
@data_dir_option
@json_option
def alarm_definitions(product_key: str | None, data_dir: Path | None, as_json: bool) -> None:
    emit([d.view() for d in run(data_dir, lambda m: m.alarms.definitions(product_key))], as_json)


@alarm.command("delete-definition")
@click.option("--product-key", required=True)
@click.option("--name", required=True)
@data_dir_option
@json_option
def alarm_delete_definition(product_key: str, name: str, data_dir: Path | None, as_json: bool) -> None:
    """Delete a definition; its open alarms are cleared."""
    cleared = run(data_dir, lambda m: m.alarms.delete_definition(product_key, name, _cli_user()))
    emit({"productKey": product_key, "name": name, "alarmsCleared": cleared}, as_json)


@alarm.command("list")
@click.option("--product-key", default=None)
@click.option("--severity", type=click.Choice(SEVERITIES), default=None)
@click.option("--state", "states", type=click.Choice(ALARM_STATES), multiple=True,
              help="Repeatable; default: active and acknowledged.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@data_dir_option
@json_option
def alarm_list(product_key: str | None, severity: str | None, states: tuple[str, ...], limit: int,
               data_dir: Path | None, as_json: bool) -> None:
    """The fleet's alarms, newest first."""
    found = run(data_dir, lambda m: m.alarms.alarms(product_key, severity, list(states), None, limit))
    if as_json:
        emit([a.view() for a in found], True)
        return
    emit([{"id": a.id, "severity": a.severity, "state": a.state, "name": a.name, "device": f"{a.product_key}/"
           f"{a.device_name}", "raised": _iso(a.raised_ms), "by": a.acknowledged_by or ""} for a in found], False)


@alarm.command("history")
@click.option("--product-key", required=True)
@click.option("--device-name", "device_name", required=True)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@data_dir_option
@json_option
def alarm_history(product_key: str, device_name: str, limit: int, data_dir: Path | None, as_json: bool) -> None:
    """A device's alarms, newest first, with every change (state, when, by whom)."""
    found = run(data_dir, lambda m: m.alarms.history(product_key, device_name, limit))
    if as_json:
        emit(found, True)
        return
    for a in found:
        click.echo(f"#{a['id']} {a['name']} ({a['severity']}) {a['state']}")
        for change in a["changes"]:
            click.echo(f"  {_iso(change['at'])}  {change['state']}{'  by ' + change['by'] if change['by'] else ''}")


def _cli_user() -> str:
    return f"cli:{os.environ.get('USER') or 'unknown'}"


@alarm.command("ack")
@click.argument("alarm_id", type=int)
@click.option("--by", "actor", default=None, help="Who acknowledges it (default: cli:$USER).")
@data_dir_option
@json_option
def alarm_ack(alarm_id: int, actor: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Acknowledge an active alarm: an operator has seen it (it stays open until its condition clears)."""
    emit(run(data_dir, lambda m: m.alarms.acknowledge(alarm_id, actor or _cli_user())).view(), as_json)


# --- the fleet simulator ---

@main.command()
@click.option("--endpoint", required=True, help="The device endpoint, e.g. https://127.0.0.1:8443.")
@click.option("--devices", "count", type=click.IntRange(1, 100_000), default=10, show_default=True)
@click.option("--rate", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Messages (property reports and events) per second for the whole fleet.")
@click.option("--duration", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds.")
@click.option("--dialect", type=click.Choice(["aliyun", "huawei"]), default="aliyun", show_default=True)
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CA certificate to trust (thingport's tls-cert.pem for a self-signed server).")
@click.option("--product-key", default=None,
              help="Use this product's devices and thing model (default: create a product).")
@click.option("--model", "model_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Thing model to play (TSL or IoTDA product model) instead of the product's own; default for "
                   "a new product: seed 004's temperature/humidity collector.")
@click.option("--prefix", default="sim-", show_default=True, help="Device name prefix.")
@click.option("--api", default=None, help="Register devices through this management API URL (with --api-key).")
@click.option("--api-key", envvar="THINGPORT_API_KEY", default=None)
@data_dir_option
@json_option
def simulate(endpoint: str, count: int, rate: float, duration: float, dialect: str, ca: Path | None,
             product_key: str | None, model_file: Path | None, prefix: str, api: str | None, api_key: str | None,
             data_dir: Path | None, as_json: bool) -> None:
    """Simulate a fleet: register (or reuse) devices, send what the thing model describes at --rate for
    --duration, print a summary (what was refused, and why).

    Exits 1 when any message sent was not acknowledged."""
    import httpx

    from thingport import simulator
    from thingport.manage.thing_models import compile_model

    model = None
    if model_file is not None:
        try:
            model = compile_model(read_json_file(model_file), "auto")
        except ThingportError as exc:
            raise click.UsageError(f"--model: {exc}") from None
    if api is not None and api_key is None:
        raise click.UsageError("--api needs --api-key (or THINGPORT_API_KEY)")
    registrar = simulator.Registrar(None if api else (data_dir or load_settings().data_dir), api, api_key)
    try:
        used_product, stats = asyncio.run(simulator.simulate(
            registrar, product_key, model, count, prefix, endpoint, dialect, rate, duration, ca))
    except ThingportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ValueError as exc:  # a model with nothing this dialect can send
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except httpx.HTTPStatusError as exc:
        click.echo(f"error: the management API answered {exc.response.status_code}: {exc.response.text[:200]}",
                   err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(simulator.summary_json(stats, used_product, count, dialect, rate)))
    else:
        click.echo(simulator.summary(stats, used_product, count, duration))
    if stats.acked < stats.sent:
        sys.exit(1)


# --- master keys ---

@main.group()
def keys() -> None:
    """The master keys that seal device secrets and sign tokens (kept outside the database)."""


@keys.command("rotate")
@data_dir_option
@json_option
def keys_rotate(data_dir: Path | None, as_json: bool) -> None:
    """Add a new master key and seal every stored secret with it. Old keys still verify tokens they signed
    until `keys prune`. A running server picks the new key up within a second."""
    from thingport.runtime.bootstrap import build

    app = build(load_settings(data_dir=data_dir), create=False)
    stores = app.stores
    try:
        try:
            stores.keys.rotate()
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        resealed = asyncio.run(stores.registry.reseal_all())
        emit({"keys": len(stores.keys.masters), "current": stores.keys.current_kid, "resealed": resealed}, as_json)
    finally:
        app.close()


@keys.command("prune")
@data_dir_option
@json_option
def keys_prune(data_dir: Path | None, as_json: bool) -> None:
    """Drop every master key but the newest (after sealing everything with it). Tokens signed with the
    dropped keys stop working: devices authenticate again."""
    from thingport.runtime.bootstrap import build

    app = build(load_settings(data_dir=data_dir), create=False)
    stores = app.stores
    try:
        resealed = asyncio.run(stores.registry.reseal_all())
        try:
            dropped = stores.keys.prune()
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        emit({"keys": len(stores.keys.masters), "current": stores.keys.current_kid, "dropped": dropped,
              "resealed": resealed}, as_json)
    finally:
        app.close()


# --- API keys ---

@main.group()
def apikey() -> None:
    """Keys for the management API."""


@apikey.command("create")
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["admin", "consumer", "read", "metrics"]), default="admin",
              show_default=True, help="read: only reads; consumer: reads and acknowledges pull subscriptions; "
              "admin: everything; metrics: only GET /metrics (a Prometheus scraper).")
@data_dir_option
@json_option
def apikey_create(name: str, role: str, data_dir: Path | None, as_json: bool) -> None:
    """Create a key and print it, this once (only its hash is stored)."""
    record, key = run(data_dir, lambda m: m.create_api_key(name, role), creates=True)
    emit({"key": key, **views.api_key_json(record)}, as_json)


@apikey.command("list")
@data_dir_option
@json_option
def apikey_list(data_dir: Path | None, as_json: bool) -> None:
    """List keys (never the keys themselves)."""
    emit([views.api_key_json(k) for k in run(data_dir, lambda m: m.api_keys())], as_json)


@apikey.command("delete")
@click.option("--id", "key_id", type=int, required=True)
@data_dir_option
@json_option
def apikey_delete(key_id: int, data_dir: Path | None, as_json: bool) -> None:
    """Delete a key: it stops working at once; prints what was deleted."""
    async def delete(m: Management) -> dict:
        found = [k for k in await m.api_keys() if k.id == key_id]
        await m.delete_api_key(key_id)  # raises NotFound for an unknown id
        return views.api_key_json(found[0])

    emit({**run(data_dir, delete), "deleted": True}, as_json)


# --- rules ---

@main.group()
def rule() -> None:
    """Rules: SQL statements over device messages (README "Rules")."""


@rule.command("test")
@click.option("--statement", required=True, help='e.g. SELECT t FROM "/pk/+/user/data" WHERE t > 38')
@click.option("--payload", default=None, help="A sample payload (JSON) to run the statement on.")
@click.option("--topic", default="", help="The sample payload's topic (for topic() and the FROM filter).")
@click.option("--last", type=click.IntRange(1, LAST_MAX), default=None,
              help="Run it on the newest N stored messages its FROM filter matches instead.")
@data_dir_option
@json_option
def rule_test(statement: str, payload: str | None, topic: str, last: int | None, data_dir: Path | None,
              as_json: bool) -> None:
    """Show what a statement would emit; nothing is changed or forwarded."""
    trials = run(data_dir, lambda m: m.try_rule(statement, payload.encode() if payload is not None else None,
                                                last, topic))
    views = [trial.view() for trial in trials]
    if as_json:
        click.echo(json.dumps(views))
        return
    if not views:
        click.echo("no stored message matches the FROM filter")
    for view in views:
        where = f"seq {view['seq']} {view['deviceName']} " if "seq" in view else ""
        outcome = (f"error: {view['error']}" if view["error"] else
                   "skipped (WHERE is false)" if view["emitted"] is None else json.dumps(view["emitted"]))
        click.echo(f"{where}{view['topic'] or '(sample)'}  {outcome}")


def parse_actions(sink: str | None, options: tuple[str, ...], actions: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rule's actions: ``--sink`` with its ``--option``s (one forward action) and every ``--action`` JSON."""
    parsed: list[dict[str, Any]] = []
    if sink is not None:
        parsed.append({"kind": "forward", "sink": sink, "options": parse_options(sink, options)})
    elif options:
        raise click.UsageError("--option goes with --sink")
    for text in actions:
        try:
            parsed.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{text!r} is not JSON: {exc}", param_hint="--action") from None
    if not parsed:
        raise click.UsageError('give --sink (with its --option KEY=VALUE) or --action \'{"kind": "forward", ...}\'')
    return parsed


@rule.command("create")
@click.option("--name", required=True)
@click.option("--statement", required=True,
              help='e.g. SELECT t, deviceName() AS dn FROM "/pk/+/user/data" WHERE t > 38')
@click.option("--sink", type=click.Choice([t for t in SINK_TYPES if t != "http"]), default=None,
              help="Forward what the statement emits to this push sink (one action).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="An option of --sink, as a subscription's (repeatable).")
@click.option("--action", "actions", multiple=True, metavar="JSON",
              help='An action as JSON, e.g. \'{"kind": "forward", "sink": "webhook", "options": {"url": "..."}}\' '
                   "(repeatable; with or without --sink).")
@click.option("--disabled", is_flag=True, help="Create it paused (enable it later).")
@click.option("--from-start", is_flag=True, help="Evaluate the oldest retained messages too, not only those from now.")
@click.option("--no-check", is_flag=True,
              help="Do not connect to the sinks first (they are not up yet); by default a sink that cannot be "
                   "reached or refuses the credentials is an error, and nothing is created.")
@data_dir_option
@json_option
def rule_create(name: str, statement: str, sink: str | None, options: tuple[str, ...], actions: tuple[str, ...],
                disabled: bool, from_start: bool, no_check: bool, data_dir: Path | None, as_json: bool) -> None:
    """Create a rule: a running server evaluates it within a second, from the newest message on."""
    parsed = parse_actions(sink, options, actions)
    created = run(data_dir, lambda m: m.create_rule(name, statement, parsed, not disabled, from_start,
                                                    check=not no_check))
    emit(views.rule_json(created, backlog=0), as_json)


@rule.command("list")
@data_dir_option
@json_option
def rule_list(data_dir: Path | None, as_json: bool) -> None:
    """Rules with their backlog, matched and failed counts and state."""
    listed = [views.rule_json(r, backlog) for r, backlog in run(data_dir, lambda m: m.list_rules())]
    if as_json:
        emit(listed, True)
        return
    emit([{k: doc[k] for k in ("name", "enabled", "state", "cursor", "backlog", "matched", "failed", "lastError")}
          for doc in listed], False)


@rule.command("show")
@click.option("--name", required=True)
@data_dir_option
@json_option
def rule_show(name: str, data_dir: Path | None, as_json: bool) -> None:
    """A rule: its statement, actions, cursor, backlog, matched and failed counts, last error and state."""
    emit(views.rule_json(*run(data_dir, lambda m: m.rule(name))), as_json)


@rule.command("enable")
@click.option("--name", required=True)
@data_dir_option
@json_option
def rule_enable(name: str, data_dir: Path | None, as_json: bool) -> None:
    """Resume a rule: it goes on from its cursor."""
    emit(views.rule_json(*run(data_dir, lambda m: m.set_rule_enabled(name, True))), as_json)


@rule.command("disable")
@click.option("--name", required=True)
@data_dir_option
@json_option
def rule_disable(name: str, data_dir: Path | None, as_json: bool) -> None:
    """Pause a rule; messages keep waiting for it (and are kept from retention)."""
    emit(views.rule_json(*run(data_dir, lambda m: m.set_rule_enabled(name, False))), as_json)


@rule.command("delete")
@click.option("--name", required=True)
@data_dir_option
@json_option
def rule_delete(name: str, data_dir: Path | None, as_json: bool) -> None:
    """Delete a rule (the messages it had yet to evaluate are no longer kept for it); prints what was deleted."""
    async def delete(m: Management) -> dict:
        doc = views.rule_json(*await m.rule(name))
        await m.delete_rule(name)
        return doc

    emit({**run(data_dir, delete), "deleted": True}, as_json)


# --- messages ---

@main.group()
def messages() -> None:
    """The durable message log."""


_iso = cli_output.iso


def _message_line(doc: dict, width: int) -> str:
    """One message on one line, its payload cut to the terminal's width (base64 when it is not text)."""
    line = (f"{doc['messageId']}  {_iso(doc['receivedAt'])}  {doc['productKey']}/{doc['deviceName']}  "
            f"{doc['topic']}  {doc['kind']}  {doc['size']}B")
    reply = doc.get("reply")
    if reply is not None:
        line += f"  reply {reply.get('code')}"
    payload = doc["payload"] if doc["payloadEncoding"] == "text" else f"base64:{doc['payload']}"
    payload = " ".join(payload.split())  # one line
    room = max(16, width - len(line) - 2)
    return f"{line}  {payload if len(payload) <= room else payload[:room - 1] + '…'}"


def _wanted(message: Any, product_key: str | None, device_name: str | None, topic_filter: str | None,
            kind: str | None) -> bool:
    """``messages tail --follow``'s filter on new messages (the first page is filtered by the service)."""
    if product_key is not None and message.product_key != product_key:
        return False
    if device_name is not None and message.device_name != device_name:
        return False
    if kind is not None and message.kind != kind:
        return False
    return topic_filter is None or bool(compile_topic_filter(topic_filter)(message.topic))


@messages.command("tail")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=20, show_default=True)
@click.option("--product-key", default=None, help="Only this product's messages.")
@click.option("--device", "device_name", default=None, help="Only this device's (with --product-key).")
@click.option("--topic-filter", default=None, help="Only topics matching this MQTT-style filter (+ and #).")
@click.option("--kind", type=click.Choice(MESSAGE_KINDS), default=None, help="Only messages of this kind.")
@click.option("--follow", is_flag=True, help="Keep printing new messages as they arrive (Ctrl-C to stop).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="Seconds between looks for new messages with --follow.")
@data_dir_option
@json_option
def messages_tail(limit: int, product_key: str | None, device_name: str | None, topic_filter: str | None,
                  kind: str | None, follow: bool, interval: float, data_dir: Path | None, as_json: bool) -> None:
    """Show the newest stored messages (time, device, topic, kind, payload), oldest of them first."""
    if device_name is not None and product_key is None:
        raise click.UsageError("--device needs --product-key")
    width = shutil.get_terminal_size((120, 24)).columns

    def show(batch: list) -> None:
        for message in batch:
            if as_json:
                click.echo(json.dumps(views.message_json(message, "text")))
            else:
                click.echo(_message_line(views.message_json(message, "text"), width))

    async def tail(m: Management) -> None:
        newest, _ = await m.find_messages(product_key, device_name, topic_filter, kind, limit=limit)
        show(list(reversed(newest)))
        last = newest[0].seq if newest else 0
        while follow:
            await asyncio.sleep(interval)
            batch = await m.newest_messages(1000, after_seq=last)
            if batch:
                last = batch[-1].seq
            show([message for message in batch if _wanted(message, product_key, device_name, topic_filter, kind)])

    try:
        run(data_dir, tail)
    except KeyboardInterrupt:
        pass
