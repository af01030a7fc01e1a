"""Trying a rule's statement before it runs: against a sample payload, or the newest stored messages its
FROM filter matches, showing what each would emit (or why it would be skipped). Changes nothing."""

from dataclasses import dataclass
from typing import Any

from thingport.core import jsondoc
from thingport.core.errors import ParamError
from thingport.core.model import StoredMessage
from thingport.core.ports import MessageLog
from thingport.core.rule_sql import MessageContext, RuleEvalError, RuleStatement, RuleSyntaxError, compile_statement

LAST_MAX = 100  # messages a test may show
SCAN_MAX = 10_000  # stored messages a test looks through for them
_PAGE = 500


@dataclass(frozen=True)
class Trial:
    """One message run through the statement: ``emitted`` (None: WHERE was false) or ``error``."""

    topic: str
    emitted: dict[str, Any] | None
    error: str | None = None
    message: StoredMessage | None = None  # None for a sample payload

    def view(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"topic": self.topic, "emitted": self.emitted, "error": self.error}
        if self.message is not None:
            m = self.message
            doc = {"seq": m.seq, "messageId": str(m.message_id), "productKey": m.product_key,
                   "deviceName": m.device_name, **doc}
        return doc


def compiled(statement: str) -> RuleStatement:
    try:
        return compile_statement(statement)
    except RuleSyntaxError as exc:
        raise ParamError(str(exc)) from None


def run_one(rule: RuleStatement, payload: bytes, context: MessageContext,
            message: StoredMessage | None = None) -> Trial:
    try:
        document = jsondoc.decode_device(payload)
    except jsondoc.DECODE_ERRORS:
        return Trial(context.topic, None, "the payload is not JSON", message)
    try:
        return Trial(context.topic, rule.evaluate(document, context), None, message)
    except RuleEvalError as exc:
        return Trial(context.topic, None, str(exc), message)


def try_sample(statement: str, payload: bytes, topic: str = "", product_key: str = "", device_name: str = "",
               received_ms: int = 0) -> Trial:
    """The statement on one sample payload (its context: the given topic and device, else empty)."""
    rule = compiled(statement)
    return run_one(rule, payload, MessageContext(product_key, device_name, topic, received_ms, 0))


async def try_stored(log: MessageLog, statement: str, last: int) -> list[Trial]:
    """The statement on the newest ``last`` stored messages its FROM filter matches (looking through at most
    ``SCAN_MAX``), newest first."""
    if not 1 <= last <= LAST_MAX:
        raise ParamError(f"last must be 1-{LAST_MAX}")
    rule = compiled(statement)
    trials: list[Trial] = []
    before: int | None = None
    scanned = 0
    while len(trials) < last and scanned < SCAN_MAX:
        page = await log.query(before_seq=before, limit=_PAGE)
        if not page:
            break
        for message in page:
            if rule.matches_topic(message.topic):
                context = MessageContext(message.product_key, message.device_name, message.topic,
                                         message.received_ms, message.message_id, message.iot_id or None)
                trials.append(run_one(rule, message.payload, context, message))
                if len(trials) == last:
                    break
        scanned += len(page)
        before = page[-1].seq
    return trials
