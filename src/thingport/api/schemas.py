"""Request and response bodies of the management API; they are also its OpenAPI schema."""

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from thingport.bus.factory import SINK_TYPES

EnvelopeKind = Literal["raw", "properties", "event", "status", "alarm"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Model):
    code: str = Field(description="machine-readable: unauthorized, forbidden, not_found, conflict, invalid")
    message: str
    field: str | None = Field(None, description="the request field at fault, when there is one")


class ErrorResponse(Model):
    error: ErrorDetail


class TopicCategory(Model):
    topic: str = Field(description="suffix after /${productKey}/${deviceName}/, e.g. user/update", max_length=128)
    operation: Literal["pub", "sub", "all"]


class ProductCreate(Model):
    name: str = Field(min_length=1, max_length=64)
    productKey: str | None = Field(None, description="given key; generated (11 characters) when absent")
    nodeType: Literal["device", "gateway"] = "device"
    validation: Literal["per-property", "whole-report"] = "per-property"
    thingModel: dict[str, Any] | None = Field(None, description="Alibaba TSL or IoTDA product model")
    topics: list[TopicCategory] = Field(default_factory=list, max_length=50)
    requireSignType1: bool | None = Field(
        None, description="IoTDA auth must be sign_type 1 (time-checked); null: the server's setting")


class ProductUpdate(Model):
    validation: Literal["per-property", "whole-report"] | None = None
    presenceTimeout: float | None = Field(None, ge=0, le=7 * 86400,
                                          description="seconds of silence before offline; 0: the server's default")
    deviceReportRate: float | None = Field(None, ge=0, le=1_000_000,
                                           description="reports per second per device; 0: the server's default")
    deviceReportBurst: float | None = Field(None, ge=0, le=1_000_000,
                                            description="reports a device may send at once; 0: the server's default")
    requireSignType1: bool | None = Field(
        None, description="IoTDA auth must be sign_type 1 (time-checked); null leaves it as it is")
    followServerSignType1: bool = Field(False, description="true: requireSignType1 goes back to the server's setting")


class ProductOut(Model):
    productKey: str
    name: str
    nodeType: str
    createdAt: int
    modelVersion: str | None
    validation: str
    topics: list[TopicCategory]
    presenceTimeout: float | None = Field(description="seconds of silence before offline; null: the server's")
    deviceReportRate: float | None = Field(None, description="reports per second per device; null: the server's")
    deviceReportBurst: float | None = Field(None, description="burst of the device report bucket; null: the server's")
    requireSignType1: bool | None = Field(
        None, description="IoTDA auth must be sign_type 1 (time-checked); null: the server's setting")


class DeviceCountsOut(Model):
    total: int
    online: int = Field(description="enabled and seen within the presence timeout")
    disabled: int


class CountedProductOut(ProductOut):
    devices: DeviceCountsOut


class ThingModelOut(Model):
    format: Literal["tsl", "huawei", "schemaless"]
    model: dict[str, Any]


class GatewayRef(Model):
    productKey: str
    deviceName: str


class DeviceCreate(Model):
    productKey: str
    deviceName: str | None = Field(None, description="default: the node id of deviceId")
    deviceId: str | None = Field(None, description="IoTDA device_id; default <productKey>_<deviceName>")
    deviceSecret: str | None = Field(None, description="default: 32 generated characters")
    gateway: GatewayRef | None = Field(None, description="make it a sub-device of this gateway device")


class DeviceOut(Model):
    productKey: str
    deviceName: str
    deviceId: str
    status: Literal["enabled", "disabled"]
    createdAt: int
    lastAuthAt: int | None
    gateway: GatewayRef | None


class DeviceWithSecret(DeviceOut):
    deviceSecret: str


class ListedDeviceOut(DeviceOut):
    online: bool = Field(description="enabled and seen within its product's presence timeout (as its status says)")
    lastSeenAt: int | None = Field(description="its newest report or auth, ms since the epoch; null: never")


class DevicePage(Model):
    items: list[ListedDeviceOut]
    next: str | None = Field(description="pass as `after` for the next page; null on the last. A page reads at "
                                         "most 10,000 devices, so a filtered page may be short (even empty) "
                                         "and still have a next")


class DeviceSecret(Model):
    deviceSecret: str


class LatestValue(Model):
    value: Any
    time: int


class StatusOut(Model):
    productKey: str
    deviceName: str
    enabled: bool
    state: Literal["online", "offline"]
    online: bool
    lastSeenAt: int | None
    properties: dict[str, LatestValue]


class HistoryPoint(Model):
    time: int
    value: Any
    messageId: int
    messageIdText: str


class BucketStats(Model):
    start: int = Field(description="the slice's first ms (from + n × width)")
    end: int = Field(description="its last ms (inclusive; at most the window's to)")
    count: int = Field(description="values reported in the slice")
    min: float | None = Field(description="the smallest numeric value; null when none is a number (bool, text)")
    max: float | None
    avg: float | None = Field(description="the mean of the numeric values")
    firstTime: int = Field(description="the time of the slice's oldest value")


class HistoryBucketPoint(HistoryPoint):
    """A slice of a downsampled history: time, value and messageId are its newest value's (what a step
    line draws for a bool or enum), ``bucket`` aggregates every value in it."""

    bucket: BucketStats


class MessageOut(Model):
    messageId: int
    messageIdText: str = Field(description="messageId as a string, for clients whose numbers are doubles")
    seq: int = Field(description="position in the log, in commit order")
    productKey: str
    deviceName: str
    dialect: str
    topic: str
    kind: str
    size: int
    receivedAt: int
    payload: str
    payloadEncoding: Literal["text", "base64"]
    reply: dict[str, Any] | None


class MessagePage(Model):
    items: list[MessageOut]
    next: str | None = Field(description="pass as `before` for the next (older) page; null on the last")


class RuleTest(Model):
    statement: str = Field(min_length=1, max_length=4096, description='SELECT ... FROM "<topic filter>" [WHERE ...]')
    payload: Any = Field(None, description="a sample payload (any JSON) to run the statement on")
    topic: str = Field("", max_length=512, description="the sample payload's topic")
    last: int | None = Field(None, ge=1, le=100, description="or: the newest N stored messages it matches")


class RuleTrial(Model):
    seq: int | None = None
    messageId: str | None = None
    productKey: str | None = None
    deviceName: str | None = None
    topic: str
    emitted: dict[str, Any] | None = Field(description="the document the rule would emit; null: WHERE was false")
    error: str | None = Field(description="why the message would be skipped")


PushSink = Literal[tuple(t for t in SINK_TYPES if t != "http")]  # type: ignore[valid-type]


class ForwardAction(Model):
    """Send every document the rule emits to a push sink, in the subscriptions' envelope (payload: the
    document; `rule`: the rule's name). Options as a subscription's sink takes them."""

    kind: Literal["forward"]
    sink: PushSink  # type: ignore[valid-type]
    options: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=32)


class AlarmAction(Model):
    """Raise alarm `name` on the device of every message the rule emits a document for (its details: the
    document and the rule's name), or clear it (`clear`: true). Idempotent: one open alarm per device and name."""

    kind: Literal["alarm"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    severity: Literal["critical", "major", "minor", "warning"] = "major"
    clear: bool = False


class RuleCreate(Model):
    name: str = Field(pattern="^[A-Za-z0-9_-]{1,64}$")
    statement: str = Field(min_length=1, max_length=4096, description='SELECT ... FROM "<topic filter>" [WHERE ...]')
    actions: list[Annotated[ForwardAction | AlarmAction, Field(discriminator="kind")]] = Field(
        min_length=1, max_length=10)
    enabled: bool = True
    fromStart: bool = Field(False, description="evaluate the oldest retained messages too, not only those from now")
    check: bool = Field(True, description="connect to every action's sink with its credentials before creating "
                                          "the rule (false: a sink that is not up yet)")


class ForwardActionOut(Model):
    kind: Literal["forward"]
    sink: str
    options: dict[str, Any] = Field(description="credentials (url, password, secret) shown as ***")


class AlarmActionOut(Model):
    kind: Literal["alarm"]
    name: str
    severity: str
    clear: bool


RuleActionOut = Annotated[ForwardActionOut | AlarmActionOut, Field(discriminator="kind")]


class RuleOut(Model):
    name: str
    statement: str
    actions: list[RuleActionOut]
    enabled: bool
    cursor: int = Field(description="the last log seq the rule is done with (every action confirmed)")
    backlog: int | None = Field(description="log messages after the cursor: yet to evaluate or deliver")
    matched: int = Field(description="messages the statement emitted a document for")
    failed: int = Field(description="messages it could not be evaluated on (a field missing, a type mismatch, "
                                    "not JSON): skipped, counted")
    lastError: str | None = Field(description="why the newest failed message failed, naming it")
    lastErrorAt: int | None = Field(description="ms since the epoch: when that was")
    state: Literal["running", "retrying", "failing", "disabled"] = Field(
        description="running: delivering (or waiting for messages); retrying: an action's sink failed the last "
                    "attempts; failing: 3 attempts in a row; disabled")
    stateSince: int
    sinkError: str | None = Field(description="why it is retrying or failing (credentials removed)")
    createdAt: int


class RulePatch(Model):
    enabled: bool = Field(description="false: pause the rule (messages wait for it, kept from retention); true: "
                                      "resume")


class ApiKeyCreate(Model):
    name: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "consumer", "read", "metrics"] = "admin"


class ApiKeyOut(Model):
    id: int
    name: str
    role: str
    prefix: str
    createdAt: int


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown this once; only its hash is stored")


class SubscriptionCreate(Model):
    """One of ``productKey``, ``productKeys`` or ``allProducts``: which products' messages it takes."""

    name: str = Field(pattern="^[A-Za-z0-9_-]{1,64}$")
    productKey: str | None = None
    productKeys: list[str] | None = Field(None, min_length=1, max_length=100)
    allProducts: bool = Field(False, description="every product's messages, those of products created later too")
    sink: Literal[SINK_TYPES]  # type: ignore[valid-type]  # the names bus/factory.py knows
    kinds: list[EnvelopeKind] = Field(default_factory=lambda: list(get_args(EnvelopeKind)), min_length=1, max_length=4)
    topicFilter: str | None = Field(None, max_length=512)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=32)
    fromStart: bool = False
    check: bool = Field(True, description="connect to a push sink with its credentials before creating the "
                                          "subscription (false: a sink that is not up yet)")


class SubscriptionOut(Model):
    name: str
    productKey: str | None = Field(description="the product, for a subscription of one product (else null)")
    productKeys: list[str] = Field(description="the products whose messages it takes (empty: every product)")
    allProducts: bool
    kinds: list[str]
    topicFilter: str | None
    sink: str
    options: dict[str, Any] = Field(description="credentials (url, password, secret) shown as ***")
    cursor: int
    delivered: int = Field(0, description="http subscriptions: the highest log seq an admin or consumer key's "
                                          "pull or event stream was given; acknowledgements stop there")
    enabled: bool
    state: Literal["running", "retrying", "failing", "disabled"] = Field(
        "running", description="running: delivering (or waiting for messages); retrying: the sink refused or "
                               "failed the last attempts; failing: it has failed 3 attempts in a row; disabled")
    stateSince: int = Field(0, description="ms since the epoch: when the subscription entered this state")
    lastError: str | None = Field(None, description="why it is retrying or failing (credentials removed)")
    createdAt: int
    backlog: int | None


class Envelope(Model):
    """docs/envelope.schema.json"""

    messageId: int
    messageIdText: str
    seq: int
    product: dict[str, str]
    device: dict[str, str]
    topic: str
    kind: EnvelopeKind
    dialect: str
    receivedAt: int
    deviceTime: int | None
    payload: Any
    payloadEncoding: Literal["json", "base64"]
    validation: dict[str, Any] | None


class PullOut(Model):
    messages: list[Envelope]
    cursor: str = Field(description="acknowledge with this to move past these messages")


class SubscriptionPatch(Model):
    enabled: bool = Field(description="false: pause forwarding (messages wait for it, kept from retention); "
                                      "true: resume")


class AckIn(Model):
    cursor: str = Field(pattern="^[0-9]{1,19}$")


class Health(Model):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


# --- fleet lifecycle: bulk device import and product delete ---

class ImportRefusalOut(Model):
    line: int = Field(description="the row's line in the body (1-based; a CSV header is line 1)")
    deviceName: str | None
    code: str = Field(description="malformed, wrong_product, bad_name, bad_device_id, bad_secret, duplicate, exists,"
                                  " unknown_product")
    reason: str


class ImportedDeviceOut(Model):
    deviceName: str
    deviceId: str
    deviceSecret: str


class ImportReportOut(Model):
    productKey: str
    rows: int
    imported: int
    refused: int
    generatedSecrets: int
    dryRun: bool
    refusals: list[ImportRefusalOut]
    devices: list[ImportedDeviceOut] = Field(description="the devices imported, with their secrets")


class ImportRefusedOut(Model):
    error: ErrorDetail
    report: ImportReportOut


class ProductDeleted(ProductOut):
    deleted: bool
    devicesDeleted: int
    subscriptionsDeleted: int


# --- alarms ---

Severity = Literal["critical", "major", "minor", "warning"]
AlarmState = Literal["active", "acknowledged", "cleared"]


class AlarmDefinitionCreate(Model):
    name: str = Field(max_length=64, description="letters, digits, _ . -")
    severity: Severity
    condition: str = Field(max_length=256, description="'temperature > 38', 'humidity outside [20, 80]', "
                                                       "'door == true', or 'silent'")
    clearCondition: str | None = Field(None, max_length=256,
                                       description="hysteresis, e.g. 'temperature < 36'; default: the condition "
                                                   "no longer holding")
    durationSeconds: float | None = Field(None, description="how long the condition must hold before it raises")


class AlarmDefinitionOut(Model):
    id: int
    productKey: str
    name: str
    severity: Severity
    condition: str
    clearCondition: str | None
    durationSeconds: float
    createdAt: int


class AlarmOut(Model):
    id: int
    productKey: str
    deviceName: str
    deviceId: str
    name: str
    severity: Severity
    state: AlarmState
    source: Literal["definition", "service"]
    details: dict[str, Any]
    raisedAt: int
    acknowledgedAt: int | None
    acknowledgedBy: str | None
    clearedAt: int | None


class AlarmChange(Model):
    state: AlarmState
    at: int
    by: str | None


class AlarmHistoryOut(AlarmOut):
    changes: list[AlarmChange]


class AlarmDefinitionDeleted(Model):
    productKey: str
    name: str
    alarmsCleared: int
