"""Topic rules of the Alibaba dialect: which topics a device may publish to.

A device may publish only under its own identity: custom ``/{pk}/{dn}/user/...`` topics and the Alink
system topics listed in spec/aliyun-https.md. Everything else, including another device's topics,
is refused with the rule that refused it.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from thingport.core.errors import TopicDenied

MAX_TOPIC_LENGTH = 512
MAX_CATEGORIES = 50
OPERATIONS = ("pub", "sub", "all")
PUBLISHABLE = frozenset({"pub", "all"})
_LEVEL = r"[A-Za-z0-9_]+"
_USER_SUFFIX_RE = re.compile(rf"{_LEVEL}(?:/{_LEVEL})*")
_CATEGORY_RE = re.compile(rf"user/{_LEVEL}(?:/{_LEVEL})*")


def check_category(suffix: str, operation: str) -> tuple[str, str]:
    """A custom topic category: ``user/...`` after ``/${productKey}/${deviceName}/``, and pub|sub|all."""
    if not _CATEGORY_RE.fullmatch(suffix) or len(suffix) > 128:
        raise ValueError(f"topic category {suffix!r} must be user/<levels of letters, digits, _> (at most 128)")
    if operation not in OPERATIONS:
        raise ValueError(f"operation of {suffix} must be one of {', '.join(OPERATIONS)}")
    return suffix, operation
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


def classify_topic(
    topic: str, product_key: str, device_name: str, categories: Mapping[str, str] | None = None
) -> Topic:
    """The kind of ``topic`` when ``(product_key, device_name)`` may publish to it; TopicDenied if not.

    ``categories`` are the product's declared custom topics (suffix -> pub|sub|all): a declared one may
    be published to only with pub or all; an undeclared ``user/...`` topic is allowed as a custom topic.
    """
    if len(topic) > MAX_TOPIC_LENGTH:
        raise TopicDenied(f"topic is longer than {MAX_TOPIC_LENGTH} characters")
    own = f"/{product_key}/{device_name}/"
    if topic.startswith(own):
        rest = topic[len(own) :]
        if categories:
            operation = categories.get(rest)
            if operation is not None and operation not in PUBLISHABLE:
                raise TopicDenied(f"topic category {rest} is declared {operation}: devices may not publish to it")
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


def compile_topic_filter(topic_filter: str) -> "Callable[[str], bool]":
    """A matcher for an MQTT-style filter: ``+`` is one level, a trailing ``#`` any number (even none)."""
    levels = topic_filter.split("/")
    if len(topic_filter) > MAX_TOPIC_LENGTH or any(
        ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+")
        for i, level in enumerate(levels)
    ):
        raise ValueError(f"topic filter {topic_filter!r}: + must be a whole level, # a whole last level")
    parts = []
    for level in levels:
        parts.append("[^/]*" if level == "+" else ".*" if level == "#" else re.escape(level))
    pattern = "/".join(parts)
    if levels[-1] == "#":  # "a/#" also matches "a"
        pattern = pattern[: -len("/.*")] + "(?:/.*)?" if len(levels) > 1 else ".*"
    return re.compile(pattern).fullmatch  # type: ignore[return-value]
