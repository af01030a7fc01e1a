"""The records the core reasons about: products, devices and stored messages."""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Product:
    product_key: str
    name: str
    node_type: str
    created_ms: int

    def to_json(self) -> dict:
        return {
            "productKey": self.product_key,
            "name": self.name,
            "nodeType": self.node_type,
            "createdAt": self.created_ms,
        }


@dataclass(frozen=True, slots=True)
class Device:
    """A device as the gateway sees it. ``secret`` is the plain secret, never shown in repr or logs."""

    id: int
    product_key: str
    device_name: str
    enabled: bool
    token_epoch: int
    created_ms: int
    secret: str = field(repr=False)
    last_auth_ms: int | None = None

    def to_json(self, with_secret: bool = False) -> dict:
        doc = {
            "productKey": self.product_key,
            "deviceName": self.device_name,
            "status": "enabled" if self.enabled else "disabled",
            "createdAt": self.created_ms,
            "lastAuthAt": self.last_auth_ms,
        }
        if with_secret:
            doc["deviceSecret"] = self.secret
        return doc


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One accepted device message, as it is appended to the durable log."""

    message_id: int
    device_id: int
    product_key: str
    device_name: str
    dialect: str
    topic: str
    payload: bytes
    received_ms: int

    def summary(self) -> dict:
        return {
            "messageId": self.message_id,
            "productKey": self.product_key,
            "deviceName": self.device_name,
            "dialect": self.dialect,
            "topic": self.topic,
            "size": len(self.payload),
            "receivedAt": self.received_ms,
        }


@dataclass(frozen=True, slots=True)
class AuthSession:
    """What is recorded when a device authenticates (the ``update session`` of the protocol)."""

    device_id: int
    client_id: str
    source: str
    at_ms: int
