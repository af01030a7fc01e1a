"""Rules at work: every enabled rule's statement runs over the log after the rule's own cursor, off the
device's path (beside the forwarder, under its lease), and what it emits goes to its actions.

One task per rule, as the forwarder keeps one per subscription (bus/supervisor.py; the loop: bus/consumer.py):
read the messages after the cursor (shared with the other rules at that cursor: bus/log_tail.py), evaluate
the statement on those its FROM filter matches, hand the documents to every action, and only once each action
confirmed save the new cursor with that stretch's counts (one write, through group commit). A failed action
leaves the cursor where it was and is offered the same documents again after a backoff (those that confirmed
are not), so what a rule forwards is at least once and in order per device, and a sink that is down makes the
rule wait. A message the statement cannot be evaluated on is counted, its reason kept, and skipped: it never
holds a rule up, and a rule never holds up another (each has its task, cursor and sinks).

The statement is compiled once, when the rule's task starts; a rule whose statement or actions change gets
a new task.
"""

import asyncio
import functools
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from thingport.bus.base import Delivery, Sink, SinkConfigError, SinkError, shown_error
from thingport.bus.consumer import CommitSignal, LogConsumer, QuietSaves
from thingport.bus.envelope import rule_delivery
from thingport.bus.factory import create_sink
from thingport.bus.forwarder import DeliveryState
from thingport.bus.log_tail import FRESH_S, Chunk, LogTail
from thingport.bus.supervisor import Supervisor
from thingport.core.errors import NotFound, ParamError
from thingport.core.model import AlarmAction, ForwardAction, Rule, RuleAction, StoredMessage
from thingport.core.ports import MessageLog, RuleStates
from thingport.core.rule_actions import action_text
from thingport.core.rule_sql import RuleStatement, RuleSyntaxError, compile_statement

log = logging.getLogger(__name__)

# A stretch of the log costs a rule a fixed amount on the server's core (a wake-up, a read shared with the
# others, a progress write) however few messages it holds: a rule that keeps up starts one at most this often
# and takes what came meanwhile (the forwarder's LINGER_S, longer: rules come by the ten). The tail hands a
# chunk to the rules at its cursor for as long, which keeps them in step.
LINGER_S = FRESH_S
SAVE_IDLE_S = 0.1  # a stretch in which nothing matched or failed is saved at most this often (and when caught up)
_EVAL_ERRORS = (ArithmeticError, ValueError, TypeError, RecursionError)  # RuleEvalError is a ValueError


@dataclass(slots=True)
class Evaluated:
    """A stretch of the log run through a rule's statement: what it emitted, in log order, and its counts."""

    rule: str
    outputs: list[tuple[StoredMessage, dict[str, Any]]]
    cursor: int  # the seq the stretch ends at
    failed: int = 0
    error: str | None = None  # the newest failure's reason (with the message it failed on)
    error_ms: int | None = None
    full: bool = False  # evaluated from a full chunk: more is waiting (no lingering)
    confirmed: set[int] = field(default_factory=set)  # the actions that took the outputs
    _deliveries: list[Delivery] | None = None

    @property
    def matched(self) -> int:
        return len(self.outputs)

    def deliveries(self) -> list[Delivery]:
        """The outputs as envelopes (made once, however many forward actions send them)."""
        if self._deliveries is None:
            self._deliveries = [rule_delivery(message, self.rule, doc) for message, doc in self.outputs]
        return self._deliveries


def evaluate(rule: str, statement: RuleStatement, chunk: Chunk) -> Evaluated:
    """The statement on every message of ``chunk`` its FROM filter matches."""
    outcome = Evaluated(rule, [], chunk.cursor, full=chunk.full)
    messages = chunk.messages
    for index in chunk.matching(statement.topic_filter, statement.matches_topic):
        message = messages[index]
        try:
            document = statement.evaluate(chunk.document(index), chunk.context(index))
        except _EVAL_ERRORS as exc:
            outcome.failed += 1
            outcome.error = (f"seq {message.seq} (messageId {message.message_id}, "
                             f"{message.product_key}/{message.device_name}): {exc}")[:500]
            outcome.error_ms = time.time_ns() // 1_000_000
            continue
        if document is not None:
            outcome.outputs.append((message, document))
    return outcome


class ActionTarget(ABC):
    """Where one action of a rule takes what the rule emitted."""

    @abstractmethod
    async def run(self, evaluated: Evaluated) -> None:
        """Take the outputs, in order; return only once they are confirmed (SinkError otherwise)."""

    async def close(self) -> None:  # noqa: B027 - a hook: a target without a connection has nothing to close
        """Let go of connections; never raises."""


class ForwardTarget(ActionTarget):
    """A forward action: its push sink, made and opened when first needed (and again after a failure)."""

    def __init__(self, action: ForwardAction) -> None:
        self._action = action
        self._sink: Sink | None = None

    async def run(self, evaluated: Evaluated) -> None:
        batch = evaluated.deliveries()
        if not batch:
            return
        if self._sink is None:
            try:
                sink = create_sink(self._action.sink, self._action.options)
            except (SinkConfigError, ImportError) as exc:  # checked when the rule was made: an upgrade changed it
                raise SinkError(str(exc)) from exc
            await sink.open()
            self._sink = sink
        await self._sink.publish(batch)

    async def close(self) -> None:
        if self._sink is not None:
            sink, self._sink = self._sink, None
            await sink.close()


class Alarms(Protocol):
    """What an alarm action needs of the alarm service (manage/alarms.py ``AlarmService``)."""

    async def raise_alarm(self, product_key: str, device_name: str, name: str, severity: str,
                          details: dict[str, Any] | None = None) -> Any: ...

    async def clear_alarm(self, product_key: str, device_name: str, name: str,
                          actor: str | None = None) -> Any: ...


class AlarmTarget(ActionTarget):
    """An alarm action: raises (or clears) its alarm on the device of every output, in log order. Both are
    idempotent (one open alarm per device and name; clearing none is nothing), so offering a stretch again
    after a failure does no harm. An output too big for an alarm's details raises it with a note instead; a
    device deleted since is skipped. The store failing is a failure to confirm: the stretch is offered again."""

    def __init__(self, action: AlarmAction, alarms: Alarms | None) -> None:
        self._action = action
        self._alarms = alarms

    async def run(self, evaluated: Evaluated) -> None:
        if not evaluated.outputs:
            return
        if self._alarms is None:
            raise SinkError("alarms are not available in this process")
        a = self._action
        for message, document in evaluated.outputs:
            try:
                if a.clear:
                    await self._alarms.clear_alarm(message.product_key, message.device_name, a.name,
                                                   f"rule:{evaluated.rule}")
                    continue
                try:
                    await self._alarms.raise_alarm(message.product_key, message.device_name, a.name, a.severity,
                                                   {**document, "rule": evaluated.rule})
                except ParamError:  # the output is over the details' size
                    await self._alarms.raise_alarm(message.product_key, message.device_name, a.name, a.severity,
                                                   {"rule": evaluated.rule, "note": "the rule's output is too big "
                                                    "for an alarm's details"})
            except NotFound:
                continue
            except Exception as exc:  # noqa: BLE001 - the store: offered again after a backoff
                raise SinkError(f"the alarm could not be stored: {exc}") from exc


def target_for(action: RuleAction, alarms: Alarms | None = None) -> ActionTarget:
    """The runner of ``action`` (one per kind of action: core/model.py ``RuleAction``)."""
    if isinstance(action, AlarmAction):
        return AlarmTarget(action, alarms)
    return ForwardTarget(action)


def _action_name(index: int, action: RuleAction) -> str:
    return f"action {index + 1} ({action_text(action)})"


class RuleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.backlog = Gauge("thingport_rule_backlog", "Log messages a rule has yet to evaluate or deliver",
                             ["rule"], registry=registry)
        self.matched = Counter("thingport_rule_matched", "Documents a rule emitted and its actions took",
                               ["rule"], registry=registry)
        self.failed = Counter("thingport_rule_failed", "Messages a rule could not be evaluated on",
                              ["rule"], registry=registry)
        self.action_failures = Counter("thingport_rule_action_failures", "Attempts an action's sink did not confirm",
                                       ["rule"], registry=registry)


class RuleRun(LogConsumer[Evaluated]):
    """One enabled rule at work: read, evaluate, hand to the actions, save, one stretch at a time. A stretch an
    action failed is kept and offered again (to the actions that have not taken it) before anything after it."""

    linger_s = LINGER_S

    def __init__(self, rule: Rule, statement: RuleStatement, tail: LogTail, log: MessageLog, metrics: RuleMetrics,
                 state: DeliveryState, alarms: Alarms | None) -> None:
        self._rule = rule
        self._statement = statement
        self._tail = tail
        self._log = log
        self._metrics = metrics
        self._state = state
        self._targets = [target_for(action, alarms) for action in rule.actions]
        self._pending: Evaluated | None = None  # evaluated, not yet taken by every action
        self._saves = QuietSaves(SAVE_IDLE_S, time.monotonic())

    async def read(self, after: int) -> Evaluated | None:
        if self._pending is None:
            chunk = await self._tail.read(after)
            if not chunk.messages:
                return None
            self._pending = evaluate(self._rule.name, self._statement, chunk)
        return self._pending

    async def deliver(self, pending: Evaluated, retry_in: float) -> bool:
        """Every action that has not taken ``pending`` yet, in turn; False at the first failure."""
        name = self._rule.name
        for index, target in enumerate(self._targets):
            if index in pending.confirmed:
                continue
            try:
                await target.run(pending)
            except SinkError as exc:
                await target.close()
                self._metrics.action_failures.labels(name).inc()
                what = _action_name(index, self._rule.actions[index])
                log.warning("rule %s: %s did not confirm (%s); retrying", name, what, shown_error(exc))
                await self._state.failed(f"{what}: {exc}")
                return False
            pending.confirmed.add(index)
        if pending.outputs:
            await self._state.confirmed()
            self._metrics.matched.labels(name).inc(pending.matched)
        if pending.failed:
            self._metrics.failed.labels(name).inc(pending.failed)
        return True

    async def done(self, evaluated: Evaluated) -> None:
        self._pending = None
        await self._saves.done(functools.partial(self._log.save_rule_progress, self._rule.id, evaluated.cursor,
                                                 evaluated.matched, evaluated.failed, evaluated.error,
                                                 evaluated.error_ms), news=bool(evaluated.matched or evaluated.failed))

    async def caught_up(self) -> None:
        await self._saves.flush()

    async def flush(self) -> None:
        await self._saves.flush()

    async def close(self) -> None:
        for target in self._targets:
            await target.close()


class RuleRunner:
    """Keeps one ``RuleRun`` per enabled rule (started and stopped with the forwarder, under its lease)."""

    def __init__(self, log: MessageLog, registry: RuleStates, metrics_registry: CollectorRegistry,
                 signal: CommitSignal, supervise_every_s: float = 1.0, alarms: Alarms | None = None) -> None:
        self._log = log
        self._alarms = alarms
        self._registry = registry
        self._signal = signal
        self._tail = LogTail(log)
        self.metrics = RuleMetrics(metrics_registry)
        self._supervisor = Supervisor(
            "rules", logging.getLogger(__name__), log, registry.list_rules, wanted=lambda r: r.enabled,
            key=lambda r: (r.id, r.statement, r.actions), run=self._run, backlog=self.metrics.backlog,
            every_s=supervise_every_s)

    async def start(self) -> None:
        self._supervisor.start()

    async def stop(self) -> None:
        await self._supervisor.stop()

    async def held(self) -> list[int]:
        """Every rule's cursor, enabled or not: what retention must keep for them."""
        return [rule.cursor for rule in await self._registry.list_rules()]

    async def _run(self, rule: Rule) -> None:
        state = DeliveryState(functools.partial(self._registry.set_rule_state, rule.id), f"rule {rule.name}",
                              rule.state, rule.sink_error, rule.state_since_ms)
        try:
            statement = compile_statement(rule.statement)
        except RuleSyntaxError as exc:  # stored by an older thingport whose dialect took it
            await state.failed(f"the statement does not compile: {exc}")
            await asyncio.Event().wait()  # until the rule changes or goes
        run = RuleRun(rule, statement, self._tail, self._log, self.metrics, state, self._alarms)
        await run.run(rule.cursor, self._signal)
