"""The one envelope every sink receives (schema: docs/envelope.schema.json).

Applications see reports from both dialects the same way; ``dialect`` tells them apart. The payload is
the device's JSON when it is JSON (``payloadEncoding`` "json"), else base64 of its bytes. A rule forwards
the same envelope with the document it emitted as the payload and its name in ``rule``.
"""

import base64
from typing import Any

import msgspec

from thingport.bus.base import Delivery
from thingport.core import jsondoc
from thingport.core.model import StoredMessage

# message kind in the log -> envelope kind
KINDS = {
    "custom": "raw",
    "deviceinfo_update": "raw",
    "ota_inform": "raw",
    "property_post": "properties",
    "property_batch_post": "properties",
    "event_post": "event",
    "status": "status",
    "alarm": "alarm",
}
ENVELOPE_KINDS = ("raw", "properties", "event", "status", "alarm")

_decode = msgspec.json.decode
_encode = msgspec.json.encode


def envelope_kind(message: StoredMessage) -> str:
    return KINDS.get(message.kind, "raw")


def envelope(message: StoredMessage) -> dict:
    try:
        payload, encoding = jsondoc.decode(message.payload), "json"
    except jsondoc.DECODE_ERRORS:  # not JSON we can re-encode (even too deeply nested): its bytes, as base64
        payload, encoding = base64.b64encode(message.payload).decode(), "base64"
    return _envelope(message, payload, encoding)


def rule_envelope(message: StoredMessage, rule: str, document: dict[str, Any]) -> dict:
    """What a rule forwards: the message's envelope with the document the rule emitted as its payload, and
    the rule's name."""
    doc = _envelope(message, document, "json")
    doc["rule"] = rule
    return doc


def _envelope(message: StoredMessage, payload: Any, encoding: str) -> dict:
    return {
        "messageId": message.message_id,
        "messageIdText": str(message.message_id),
        "seq": message.seq,
        "product": {"productKey": message.product_key},
        "device": {"productKey": message.product_key, "deviceName": message.device_name, "deviceId": message.iot_id},
        "topic": message.topic,
        "kind": envelope_kind(message),
        "dialect": message.dialect,
        "receivedAt": message.received_ms,
        "deviceTime": message.device_ms,
        "payload": payload,
        "payloadEncoding": encoding,
        "validation": _decode(message.reply) if message.reply is not None else None,
    }


def rule_delivery(message: StoredMessage, rule: str, document: dict[str, Any]) -> Delivery:
    return Delivery(
        message.seq, message.message_id, message.product_key, message.iot_id, envelope_kind(message),
        _encode(rule_envelope(message, rule, document)), f"{message.message_id}:{rule}",
    )


def delivery(message: StoredMessage) -> Delivery:
    return Delivery(
        message.seq, message.message_id, message.product_key, message.iot_id, envelope_kind(message),
        _encode(envelope(message)),
    )
