"""The JSON shapes of the management records: what the API returns and what the CLI's ``--json`` prints,
from one place. Field names and values are an interface (scripts and the console read them): change them
only by adding."""

import base64
from typing import Any

import msgspec

from thingport.bus.factory import options_type
from thingport.bus.options import masked
from thingport.core.model import (
    ApiKey,
    Device,
    DeviceCounts,
    DeviceStatus,
    ForwardAction,
    ListedDevice,
    Product,
    Rule,
    StoredMessage,
    Subscription,
)
from thingport.core.rule_actions import action_doc
from thingport.manage.device_files import export_record
from thingport.manage.service import ImportReport


def product_json(product: Product) -> dict[str, Any]:
    return {
        "productKey": product.product_key,
        "name": product.name,
        "nodeType": product.node_type,
        "createdAt": product.created_ms,
        "modelVersion": product.model_version,
        "validation": product.validation,
        "topics": topics_json(product),
        "presenceTimeout": product.presence_timeout_s,
        "deviceReportRate": product.device_report_rate,
        "deviceReportBurst": product.device_report_burst,
        "requireSignType1": product.require_sign_type_1,
    }


def counted_product_json(product: Product, counts: DeviceCounts | None) -> dict[str, Any]:
    """A product with its devices counted (product list and show): total, online, disabled."""
    counts = counts or DeviceCounts()
    return {**product_json(product),
            "devices": {"total": counts.total, "online": counts.online, "disabled": counts.disabled}}


def topics_json(product: Product) -> list[dict[str, str]]:
    return [{"topic": topic, "operation": operation} for topic, operation in product.topics]


def device_json(device: Device, with_secret: bool = False) -> dict[str, Any]:
    """A device as the API and the CLI show it: its export record, with its gateway."""
    doc = export_record(device, False)
    doc["gateway"] = None if device.gateway is None else {
        "productKey": device.gateway[0], "deviceName": device.gateway[1]}
    if with_secret:
        doc["deviceSecret"] = device.secret
    return doc


def listed_device_json(listed: ListedDevice) -> dict[str, Any]:
    """A device in a listing: ``device_json`` with its presence, as ``status_json`` says it."""
    return {**device_json(listed.device), "online": listed.online, "lastSeenAt": listed.last_seen_ms}


def status_json(status: DeviceStatus) -> dict[str, Any]:
    return {
        "productKey": status.device.product_key,
        "deviceName": status.device.device_name,
        "enabled": status.device.enabled,
        "state": "online" if status.online else "offline",
        "online": status.online,
        "lastSeenAt": status.last_seen_ms,
        "properties": {name: {"value": value, "time": at} for name, (value, at) in sorted(status.latest.items())},
    }


def api_key_json(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "role": key.role, "prefix": key.prefix, "createdAt": key.created_ms}


def subscription_json(subscription: Subscription, backlog: int | None = None) -> dict[str, Any]:
    """A subscription with its options as its sink's options struct allows them to be shown (credentials as
    ``***``)."""
    return {
        "name": subscription.name,
        "productKey": subscription.products[0] if len(subscription.products) == 1 else None,
        "productKeys": list(subscription.products),
        "allProducts": not subscription.products,
        "kinds": list(subscription.kinds),
        "topicFilter": subscription.topic_filter,
        "sink": subscription.sink,
        "options": masked(options_type(subscription.sink), subscription.options),
        "cursor": subscription.cursor,
        "delivered": subscription.delivered,
        "enabled": subscription.enabled,
        "state": subscription.state if subscription.enabled else "disabled",
        "stateSince": subscription.state_since_ms if subscription.state_since_ms is not None
        else subscription.created_ms,
        "lastError": subscription.last_error,
        "createdAt": subscription.created_ms,
        "backlog": backlog,
    }


def rule_json(rule: Rule, backlog: int | None = None) -> dict[str, Any]:
    """A rule with its progress (cursor, backlog, counts, last error) and its actions, each with the options its
    sink's options struct allows to be shown (credentials as ``***``)."""
    actions = []
    for action in rule.actions:
        doc = action_doc(action)
        if isinstance(action, ForwardAction):
            doc["options"] = masked(options_type(action.sink), action.options)
        actions.append(doc)
    return {
        "name": rule.name,
        "statement": rule.statement,
        "actions": actions,
        "enabled": rule.enabled,
        "cursor": rule.cursor,
        "backlog": backlog,
        "matched": rule.matched,
        "failed": rule.failed,
        "lastError": rule.last_error,
        "lastErrorAt": rule.last_error_ms,
        "state": rule.state if rule.enabled else "disabled",
        "stateSince": rule.state_since_ms if rule.state_since_ms is not None else rule.created_ms,
        "sinkError": rule.sink_error,
        "createdAt": rule.created_ms,
    }


def message_summary(message: StoredMessage) -> dict[str, Any]:
    """A log message without its payload (``messages tail``)."""
    doc = {
        "messageId": message.message_id,
        "seq": message.seq,
        "productKey": message.product_key,
        "deviceName": message.device_name,
        "dialect": message.dialect,
        "topic": message.topic,
        "kind": message.kind,
        "size": len(message.payload),
        "receivedAt": message.received_ms,
    }
    if message.reply is not None:
        doc["reply"] = msgspec.json.decode(message.reply)
    return doc


def message_json(message: StoredMessage, encoding: str) -> dict[str, Any]:
    """A log message with its payload: as text when asked and it is UTF-8, else base64."""
    doc = message_summary(message)
    payload, used = None, "base64"
    if encoding == "text":
        try:
            payload, used = message.payload.decode("utf-8"), "text"
        except UnicodeDecodeError:
            pass
    if payload is None:
        payload = base64.b64encode(message.payload).decode()
    return {**doc, "messageIdText": str(message.message_id), "payload": payload, "payloadEncoding": used,
            "reply": doc.get("reply")}


def import_report_json(report: ImportReport, dry_run: bool) -> dict[str, Any]:
    """A device import's counts and refused rows (never a secret: the CLI prints this)."""
    return {
        "productKey": report.product_key, "rows": report.rows, "imported": report.imported,
        "refused": len(report.refusals), "generatedSecrets": report.generated, "dryRun": dry_run,
        "refusals": [{"line": r.line, "deviceName": r.device_name, "code": r.code, "reason": r.reason}
                     for r in report.refusals],
    }
