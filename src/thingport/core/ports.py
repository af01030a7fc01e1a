"""The ports the core and the gateway depend on; store/ and state/ provide the adapters.

They are async so that an adapter may be a thread around a blocking driver (SQLite) or a native
asyncio driver (PostgreSQL) without the callers knowing.
"""

from typing import Protocol

from thingport.core.model import AuthSession, Device, Product, StoredMessage


class DeviceDirectory(Protocol):
    """Read side of the registry, as the gateway needs it."""

    async def device_by_id(self, device_id: int) -> Device | None: ...

    async def device_by_name(self, product_key: str, device_name: str) -> Device | None: ...

    async def changes_since(self, cursor: int) -> tuple[int, list[int]]:
        """Ids of devices changed after ``cursor``, and the new cursor."""
        ...


class Registry(DeviceDirectory, Protocol):
    """Products and devices, for the management side. Every change is also a change-feed entry."""

    async def create_product(self, product: Product) -> None: ...

    async def get_product(self, product_key: str) -> Product | None: ...

    async def list_products(self) -> list[Product]: ...

    async def create_device(self, product_key: str, device_name: str, secret: str, created_ms: int) -> Device: ...

    async def list_devices(self, product_key: str | None) -> list[Device]: ...

    async def set_device_enabled(self, device_id: int, enabled: bool) -> None: ...

    async def reset_device_secret(self, device_id: int, secret: str) -> None: ...

    async def delete_device(self, device_id: int) -> None: ...


class MessageLog(Protocol):
    """The durable log. ``append`` returns only once the message is committed."""

    async def append(self, message: StoredMessage) -> None: ...

    async def record_session(self, session: AuthSession) -> None: ...

    async def newest(self, limit: int, after_id: int | None = None) -> list[StoredMessage]: ...
