"""Alink JSON reports on the Alibaba dialect's system topics: parse, judge against the product's model,
and produce the reply document and the property values to store.

The device's HTTP reply stays the protocol's (code 0 with the messageId once stored); the Alink reply
document computed here is kept with the message, for operators and applications to see what was refused.
"""

from dataclasses import dataclass
from typing import Any

import msgspec

from thingport.core import alink
from thingport.core.model import ValuesAt, values_by_time
from thingport.core.timestamps import sample_time
from thingport.core.topics import Topic, TopicKind
from thingport.state.registry_cache import ProductRuntime

_encode = msgspec.json.encode
_PARSERS = {
    TopicKind.PROPERTY_POST: (alink.parse_property_post, alink.ALINK_METHOD_PROPERTY_POST),
    TopicKind.PROPERTY_BATCH_POST: (alink.parse_batch_post, alink.ALINK_METHOD_PROPERTY_BATCH_POST),
}
VALIDATED_KINDS = frozenset({TopicKind.PROPERTY_POST, TopicKind.PROPERTY_BATCH_POST, TopicKind.EVENT_POST})


@dataclass(frozen=True, slots=True)
class Judgement:
    reply: bytes
    properties: tuple[ValuesAt, ...]


def judge(runtime: ProductRuntime, topic: Topic, payload: bytes, received_ms: int) -> Judgement:
    if topic.kind is TopicKind.EVENT_POST:
        assert topic.event is not None
        method = alink.ALINK_METHOD_EVENT_POST.format(id=topic.event)
        try:
            request = alink.parse_event_post(payload, topic.event)
        except alink.AlinkError as err:
            return Judgement(_encode(alink.reply_for_error(err, method)), ())
    else:
        parse, method = _PARSERS[topic.kind]
        try:
            request = parse(payload)
        except alink.AlinkError as err:
            return Judgement(_encode(alink.reply_for_error(err, method)), ())
    accepted, _events, refused = alink.validate_request(runtime.model, request)
    if refused and runtime.whole_report:
        accepted = []
    return Judgement(_encode(alink.reply_for(request, refused)), _grouped(accepted, received_ms))


def _grouped(accepted: list[alink.PropertyValue], received_ms: int) -> tuple[ValuesAt, ...]:
    """The accepted values by the time they are for: one group unless the device gave times of its own.
    (Two values of one property for the very same time, which only a batch post can give: the later.)"""
    groups: dict[int, dict[str, Any]] = {}
    for p in accepted:
        at = received_ms if p.time_ms is None else sample_time(p.time_ms, received_ms)
        group = groups.get(at)
        if group is None:
            group = groups[at] = {}
        group[p.identifier] = p.value
    return values_by_time(groups)
