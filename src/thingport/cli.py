"""The ``thingport`` command: run the server, manage products and devices, look at messages.

Management commands work on the same data dir as a running server; the server picks their changes up
from the registry's change feed within a second.
"""

import asyncio
import datetime
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from thingport.core.errors import ThingportError
from thingport.service import NODE_TYPES, Management
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
device_options = [
    click.option("--product-key", "product_key", required=True, help="The device's productKey."),
    click.option("--name", "device_name", required=True, help="The deviceName."),
]


def with_device(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(device_options):
        fn = option(fn)
    return fn


def run(data_dir: Path | None, action: Callable[[Management], Awaitable[T]]) -> T:
    """Run ``action`` against the data dir's stores, turning domain errors into a clean exit."""
    from thingport.stores import open_stores  # deferred: `thingport --help` stays fast

    settings = load_settings(data_dir=data_dir)
    stores = open_stores(settings)
    try:
        return asyncio.run(action(Management(stores.registry, stores.log)))
    except ThingportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        stores.close()


def emit(doc: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(doc))
    elif isinstance(doc, list):
        for item in doc:
            click.echo("  ".join(f"{k}={v}" for k, v in item.items()))
    else:
        for key, value in doc.items():
            click.echo(f"{key}: {value}")


@click.group()
@click.version_option(package_name="thingport")
def main() -> None:
    """thingport: IoT device access over HTTPS."""


@main.command()
@click.option("--host", default=None, help="Listen address [default 0.0.0.0].")
@click.option("--port", type=int, default=None, help="Listen port [default 8443].")
@data_dir_option
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--tls-profile", type=click.Choice(["modern", "compat"]), default=None,
              help="modern (default): ECDHE AEAD suites; compat: adds RSA key exchange and CBC suites.")
def serve(host: str | None, port: int | None, data_dir: Path | None, tls_cert: Path | None,
          tls_key: Path | None, tls_profile: str | None) -> None:
    """Run the HTTPS device endpoint."""
    from thingport.server import serve as run_server

    run_server(load_settings(host=host, port=port, data_dir=data_dir, tls_cert=tls_cert, tls_key=tls_key,
                             tls_profile=tls_profile))


# --- products ---

@main.group()
def product() -> None:
    """Products."""


@product.command("create")
@click.option("--name", required=True)
@click.option("--product-key", default=None, help="Given key (default: generated).")
@click.option("--node-type", type=click.Choice(NODE_TYPES), default="device", show_default=True)
@data_dir_option
@json_option
def product_create(name: str, product_key: str | None, node_type: str, data_dir: Path | None, as_json: bool) -> None:
    """Create a product."""
    created = run(data_dir, lambda m: m.create_product(name, product_key, node_type))
    emit(created.to_json(), as_json)


@product.command("list")
@data_dir_option
@json_option
def product_list(data_dir: Path | None, as_json: bool) -> None:
    """List products."""
    emit([p.to_json() for p in run(data_dir, lambda m: m.products())], as_json)


@product.command("show")
@click.option("--product-key", required=True)
@data_dir_option
@json_option
def product_show(product_key: str, data_dir: Path | None, as_json: bool) -> None:
    """Show one product."""
    emit(run(data_dir, lambda m: m.product(product_key)).to_json(), as_json)


# --- devices ---

@main.group()
def device() -> None:
    """Devices."""


@device.command("create")
@with_device
@click.option("--secret", default=None, help="Given deviceSecret (default: 32 generated characters).")
@data_dir_option
@json_option
def device_create(product_key: str, device_name: str, secret: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Create a device; prints its deviceSecret."""
    created = run(data_dir, lambda m: m.create_device(product_key, device_name, secret))
    emit(created.to_json(with_secret=True), as_json)


@device.command("list")
@click.option("--product-key", default=None, help="Only this product's devices.")
@data_dir_option
@json_option
def device_list(product_key: str | None, data_dir: Path | None, as_json: bool) -> None:
    """List devices."""
    emit([d.to_json() for d in run(data_dir, lambda m: m.devices(product_key))], as_json)


@device.command("show")
@with_device
@click.option("--with-secret", is_flag=True, help="Include the deviceSecret.")
@data_dir_option
@json_option
def device_show(product_key: str, device_name: str, with_secret: bool, data_dir: Path | None, as_json: bool) -> None:
    """Show one device."""
    emit(run(data_dir, lambda m: m.device(product_key, device_name)).to_json(with_secret), as_json)


@device.command("disable")
@with_device
@data_dir_option
@json_option
def device_disable(product_key: str, device_name: str, data_dir: Path | None, as_json: bool) -> None:
    """Disable a device: its tokens stop working at once, and it cannot authenticate."""
    emit(run(data_dir, lambda m: m.set_enabled(product_key, device_name, False)).to_json(), as_json)


@device.command("enable")
@with_device
@data_dir_option
@json_option
def device_enable(product_key: str, device_name: str, data_dir: Path | None, as_json: bool) -> None:
    """Enable a device again (it must authenticate anew)."""
    emit(run(data_dir, lambda m: m.set_enabled(product_key, device_name, True)).to_json(), as_json)


@device.command("delete")
@with_device
@data_dir_option
@json_option
def device_delete(product_key: str, device_name: str, data_dir: Path | None, as_json: bool) -> None:
    """Delete a device; its tokens stop working. Its stored messages stay."""
    deleted = run(data_dir, lambda m: m.delete_device(product_key, device_name))
    emit({**deleted.to_json(), "deleted": True}, as_json)


@device.command("reset-secret")
@with_device
@click.option("--secret", default=None, help="Given new deviceSecret (default: generated).")
@data_dir_option
@json_option
def device_reset_secret(product_key: str, device_name: str, secret: str | None, data_dir: Path | None,
                        as_json: bool) -> None:
    """Give a device a new secret; its tokens stop working. Prints the new deviceSecret."""
    emit(run(data_dir, lambda m: m.reset_secret(product_key, device_name, secret)).to_json(with_secret=True), as_json)


# --- messages ---

@main.group()
def messages() -> None:
    """The durable message log."""


def _message_line(doc: dict) -> str:
    at = datetime.datetime.fromtimestamp(doc["receivedAt"] / 1000, datetime.timezone.utc)
    return (f"{doc['messageId']}  {doc['productKey']}/{doc['deviceName']}  {doc['topic']}  "
            f"{doc['size']}B  {at.isoformat(timespec='milliseconds')}")


@messages.command("tail")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--follow", is_flag=True, help="Keep printing new messages as they arrive (Ctrl-C to stop).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="Seconds between looks for new messages with --follow.")
@data_dir_option
@json_option
def messages_tail(limit: int, follow: bool, interval: float, data_dir: Path | None, as_json: bool) -> None:
    """Show the newest stored messages (messageId, device, topic, size, time)."""

    def show(batch: list) -> None:
        for message in batch:
            doc = message.summary()
            click.echo(json.dumps(doc) if as_json else _message_line(doc))

    async def tail(m: Management) -> None:
        batch = await m.newest_messages(limit)
        show(batch)
        last = batch[-1].message_id if batch else 0
        while follow:
            await asyncio.sleep(interval)
            batch = await m.newest_messages(1000, after_id=last)
            show(batch)
            if batch:
                last = batch[-1].message_id

    try:
        run(data_dir, tail)
    except KeyboardInterrupt:
        pass
