"""Alink JSON reports on the Alibaba dialect's system topics: parse, judge against the product's model,
and produce the reply document and the property values to store.

The device's HTTP reply stays the protocol's (code 0 with the messageId once stored); the Alink reply
document computed here is kept with the message, for operators and applications to see what was refused.
"""

from dataclasses import dataclass

import msgspec

from thingport.core import alink
from thingport.core.model import ValuesAt, values_by_time
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
    groups, _events, refused = alink.validate_request(runtime.model, request, received_ms)
    if refused and runtime.whole_report:
        groups = {}
    return Judgement(_encode(alink.reply_for(request, refused)), values_by_time(groups))
