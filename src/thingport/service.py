"""Management operations on products, devices and the message log: the one implementation of each
rule, shared by the CLI and (later) the REST API."""

import time

from thingport.core import identity
from thingport.core.errors import NotFound, ParamError
from thingport.core.model import Device, Product, StoredMessage
from thingport.core.ports import MessageLog, Registry

NODE_TYPES = ("device", "gateway")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _checked(check, value: str) -> str:  # type: ignore[no-untyped-def]
    try:
        return check(value)
    except ValueError as exc:
        raise ParamError(str(exc)) from None


class Management:
    def __init__(self, registry: Registry, log: MessageLog) -> None:
        self._registry = registry
        self._log = log

    async def create_product(self, name: str, product_key: str | None = None, node_type: str = "device") -> Product:
        _checked(identity.check_product_name, name)
        if node_type not in NODE_TYPES:
            raise ParamError(f"node type must be one of {', '.join(NODE_TYPES)}")
        key = _checked(identity.check_product_key, product_key) if product_key else identity.generate_product_key()
        product = Product(key, name, node_type, _now_ms())
        await self._registry.create_product(product)
        return product

    async def product(self, product_key: str) -> Product:
        product = await self._registry.get_product(product_key)
        if product is None:
            raise NotFound(f"product {product_key} does not exist")
        return product

    async def products(self) -> list[Product]:
        return await self._registry.list_products()

    async def create_device(self, product_key: str, device_name: str, secret: str | None = None) -> Device:
        _checked(identity.check_device_name, device_name)
        secret = _checked(identity.check_secret, secret) if secret is not None else identity.generate_device_secret()
        return await self._registry.create_device(product_key, device_name, secret, _now_ms())

    async def device(self, product_key: str, device_name: str) -> Device:
        device = await self._registry.device_by_name(product_key, device_name)
        if device is None:
            raise NotFound(f"device {product_key}/{device_name} does not exist")
        return device

    async def devices(self, product_key: str | None = None) -> list[Device]:
        if product_key is not None:
            await self.product(product_key)
        return await self._registry.list_devices(product_key)

    async def set_enabled(self, product_key: str, device_name: str, enabled: bool) -> Device:
        device = await self.device(product_key, device_name)
        await self._registry.set_device_enabled(device.id, enabled)
        return await self.device(product_key, device_name)

    async def reset_secret(self, product_key: str, device_name: str, secret: str | None = None) -> Device:
        device = await self.device(product_key, device_name)
        secret = _checked(identity.check_secret, secret) if secret is not None else identity.generate_device_secret()
        await self._registry.reset_device_secret(device.id, secret)
        return await self.device(product_key, device_name)

    async def delete_device(self, product_key: str, device_name: str) -> Device:
        device = await self.device(product_key, device_name)
        await self._registry.delete_device(device.id)
        return device

    async def newest_messages(self, limit: int, after_id: int | None = None) -> list[StoredMessage]:
        if limit < 1:
            raise ParamError("limit must be at least 1")
        return await self._log.newest(limit, after_id)
