"""The ports the core and the gateway depend on; store/ and state/ provide the adapters.

They are async so that an adapter may be a thread around a blocking driver (SQLite) or a native
asyncio driver (PostgreSQL) without the callers knowing.
"""

from typing import Any, Protocol

from thingport.core.model import ApiKey, AuthSession, Device, Product, StoredMessage


class RegistryReader(Protocol):
    """Read side of the registry, as the gateway needs it."""

    async def device_by_id(self, device_id: int) -> Device | None: ...

    async def device_by_name(self, product_key: str, device_name: str) -> Device | None: ...

    async def device_by_device_id(self, device_id: str) -> Device | None:
        """By IoTDA ``device_id``."""
        ...

    async def get_product(self, product_key: str) -> Product | None: ...

    async def list_products(self) -> list[Product]: ...

    async def recently_seen(self, since_ms: int) -> list[tuple[int, int]]:
        """(device id, last seen) of devices seen since ``since_ms``."""
        ...

    async def thing_model(self, product_key: str, version: str) -> dict | None:
        """A product's model document at ``version`` (``{"format", "model"}``)."""
        ...

    async def changes_since(self, cursor: int) -> tuple[int, list[int], list[str]]:
        """The new cursor, and the ids of devices and keys of products changed after ``cursor``."""
        ...


class Registry(RegistryReader, Protocol):
    """Products and devices, for the management side. Every change is also a change-feed entry."""

    async def create_product(self, product: Product) -> None: ...

    async def create_device(
        self, product_key: str, device_name: str, secret: str, created_ms: int, device_id: str,
        gateway_id: int | None = None,
    ) -> Device: ...

    async def children(self, gateway_id: int) -> list[Device]: ...

    async def list_devices(
        self, product_key: str | None, name_prefix: str | None = None, enabled: bool | None = None,
        after_id: int = 0, limit: int = 1_000_000,
    ) -> list[Device]: ...

    async def revoke_tokens(self, device_id: int) -> None: ...

    async def set_product_topics(self, product_key: str, topics: tuple[tuple[str, str], ...]) -> None: ...

    async def create_api_key(self, name: str, role: str, key_hash: bytes, prefix: str, created_ms: int) -> ApiKey: ...

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def delete_api_key(self, key_id: int) -> None: ...

    async def set_device_enabled(self, device_id: int, enabled: bool) -> None: ...

    async def reset_device_secret(self, device_id: int, secret: str) -> None: ...

    async def delete_device(self, device_id: int) -> None: ...

    async def set_thing_model(self, product_key: str, version: str, document: dict, created_ms: int) -> None: ...

    async def set_product_validation(self, product_key: str, validation: str) -> None: ...

    async def device_status(self, device_id: int) -> tuple[int | None, dict[str, tuple[Any, int]]]: ...

    async def history(
        self, device_id: int, identifier: str, from_ms: int | None, to_ms: int | None, limit: int
    ) -> list[tuple[int, Any, int]]: ...


class MessageLog(Protocol):
    """The durable log. ``append`` returns only once the message is committed."""

    async def append(self, message: StoredMessage) -> None: ...

    async def append_many(self, messages: tuple[StoredMessage, ...]) -> None:
        """Several messages in one transaction: all are committed, or none."""
        ...

    async def record_session(self, session: AuthSession) -> None: ...

    async def newest(self, limit: int, after_seq: int | None = None) -> list[StoredMessage]: ...

    async def read_after(self, seq: int, limit: int) -> list[StoredMessage]:
        """Committed messages after ``seq``, in commit order."""
        ...

    async def last_seq(self) -> int: ...

    async def save_cursor(self, subscription_id: int, seq: int) -> None: ...

    async def query(
        self, product_key: str | None = None, device_id: int | None = None, topic: str | None = None,
        from_ms: int | None = None, to_ms: int | None = None, before_seq: int | None = None, limit: int = 100,
    ) -> list[StoredMessage]: ...
