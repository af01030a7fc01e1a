"""Topic rules of the Alibaba dialect: which topics a device may publish to.

A device may publish only under its own identity: custom ``/{pk}/{dn}/user/...`` topics and the Alink
system topics listed in spec/aliyun-https.md. Everything else, including another device's topics,
is refused with the rule that refused it.
"""

import re
from dataclasses import dataclass
from enum import Enum

from thingport.core.errors import TopicDenied

MAX_TOPIC_LENGTH = 512
_LEVEL = r"[A-Za-z0-9_]+"
_USER_SUFFIX_RE = re.compile(rf"{_LEVEL}(?:/{_LEVEL})*")
_EVENT_ID_RE = re.compile(r"[A-Za-z0-9_]{1,50}")


class TopicKind(Enum):
    CUSTOM = "custom"
    PROPERTY_POST = "property_post"
    PROPERTY_BATCH_POST = "property_batch_post"
    EVENT_POST = "event_post"
    DEVICEINFO_UPDATE = "deviceinfo_update"
    OTA_INFORM = "ota_inform"


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    kind: TopicKind
    event: str | None = None  # the event identifier of an EVENT_POST topic


def classify_topic(topic: str, product_key: str, device_name: str) -> Topic:
    """The kind of ``topic`` when ``(product_key, device_name)`` may publish to it; TopicDenied if not."""
    if len(topic) > MAX_TOPIC_LENGTH:
        raise TopicDenied(f"topic is longer than {MAX_TOPIC_LENGTH} characters")
    own = f"/{product_key}/{device_name}/"
    if topic.startswith(own):
        rest = topic[len(own) :]
        if rest.startswith("user/") and _USER_SUFFIX_RE.fullmatch(rest, 5):
            return Topic(topic, TopicKind.CUSTOM)
        raise TopicDenied(
            "custom topics must be /{productKey}/{deviceName}/user/<levels of letters, digits, _>"
        )
    system = f"/sys/{product_key}/{device_name}/thing/"
    if topic.startswith(system):
        rest = topic[len(system) :]
        if rest == "event/property/post":
            return Topic(topic, TopicKind.PROPERTY_POST)
        if rest == "event/property/batch/post":
            return Topic(topic, TopicKind.PROPERTY_BATCH_POST)
        if rest == "deviceinfo/update":
            return Topic(topic, TopicKind.DEVICEINFO_UPDATE)
        if rest.startswith("event/") and rest.endswith("/post"):
            event = rest[6:-5]
            if _EVENT_ID_RE.fullmatch(event) and event != "property":
                return Topic(topic, TopicKind.EVENT_POST, event)
        raise TopicDenied("not a system topic a device may publish to")
    if topic == f"/ota/device/inform/{product_key}/{device_name}":
        return Topic(topic, TopicKind.OTA_INFORM)
    raise TopicDenied("a device may publish only to its own topics")
