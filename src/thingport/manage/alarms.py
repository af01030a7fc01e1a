"""Alarms, as operators and other parts of the server use them: definitions per product (checked against
the product's thing model before anything is stored), the fleet's alarms and a device's history,
acknowledging, and ``raise_alarm``/``clear_alarm`` for code that decides on alarms itself (a rule's
``alarm`` action). Every change is written with its outbox row; the evaluator puts it in the log.
"""

import time
from typing import Any, Protocol

import msgspec

from thingport.core.alarms import (
    DETAILS_MAX,
    STATES,
    Alarm,
    AlarmDefinition,
    check_name,
    check_severity,
    compile_rule,
)
from thingport.core.errors import NotFound, ParamError
from thingport.core.model import Device, Product
from thingport.core.thingmodel import ThingModel
from thingport.store.sql_alarms import Clear, Raise

LIST_MAX = 1000
ACTOR_MAX = 128
ID_MAX = 2**63 - 1


class AlarmStore(Protocol):
    """What the service needs of the alarm store (store/sql_alarms.py)."""

    async def define(self, product_key: str, name: str, severity: str, condition: str, clear_condition: str | None,
                     duration_ms: int, created_ms: int) -> AlarmDefinition: ...

    async def definitions(self, product_key: str | None = None) -> list[AlarmDefinition]: ...

    async def delete_definition(self, product_key: str, name: str, at_ms: int, actor: str | None) -> int: ...

    async def raise_alarm(self, r: Raise) -> tuple[Alarm, bool]: ...

    async def clear_alarm(self, c: Clear) -> Alarm | None: ...

    async def acknowledge(self, alarm_id: int, actor: str, at_ms: int) -> Alarm: ...

    async def get(self, alarm_id: int) -> Alarm | None: ...

    async def list_alarms(self, product_key: str | None, severity: str | None, states: list[str],
                          device_id: int | None = None, before_id: int | None = None,
                          limit: int = 100) -> list[Alarm]: ...

    async def events(self, alarm_ids: list[int]) -> dict[int, list[tuple[str, int, str | None]]]: ...


class Directory(Protocol):
    """Products, devices and thing models, as the service looks them up."""

    async def get_product(self, product_key: str) -> Product | None: ...

    async def device_by_name(self, product_key: str, device_name: str) -> Device | None: ...

    async def thing_model(self, product_key: str, version: str) -> dict[str, Any] | None: ...


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _alarm_id(alarm_id: int) -> int:
    if not 1 <= alarm_id <= ID_MAX:
        raise NotFound(f"alarm {alarm_id} does not exist")
    return alarm_id


def _actor(actor: str) -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > ACTOR_MAX:
        raise ParamError(f"who acknowledges is 1-{ACTOR_MAX} characters")
    return actor.strip()


class AlarmService:
    def __init__(self, store: AlarmStore, directory: Directory) -> None:
        self._store = store
        self._directory = directory

    async def _product(self, product_key: str) -> Product:
        product = await self._directory.get_product(product_key)
        if product is None:
            raise NotFound(f"product {product_key} does not exist")
        return product

    async def _device(self, product_key: str, device_name: str) -> Device:
        device = await self._directory.device_by_name(product_key, device_name)
        if device is None:
            raise NotFound(f"device {product_key}/{device_name} does not exist")
        return device

    # --- definitions ---

    async def define(self, product_key: str, name: str, severity: str, condition: str,
                     clear_condition: str | None = None, duration_s: float | None = None) -> AlarmDefinition:
        """A product's alarm definition; refused with the reason (and nothing stored) when the name, the
        severity or a condition is wrong, or names a property the product's thing model lacks or types otherwise."""
        check_name(name)
        check_severity(severity)
        product = await self._product(product_key)
        model = None
        if product.model_version is not None:
            document = await self._directory.thing_model(product_key, product.model_version)
            model = ThingModel.from_document(document) if document is not None else None
        rule = compile_rule(condition, clear_condition, duration_s, model)
        return await self._store.define(
            product_key, name, severity, rule.raise_when.text(),
            rule.clear_when.text() if rule.clear_when is not None else None, rule.duration_ms, _now_ms(),
        )

    async def definitions(self, product_key: str | None = None) -> list[AlarmDefinition]:
        if product_key is not None:
            await self._product(product_key)
        return await self._store.definitions(product_key)

    async def delete_definition(self, product_key: str, name: str, actor: str | None = None) -> int:
        """Delete it; its open alarms are cleared (how many)."""
        return await self._store.delete_definition(product_key, name, _now_ms(), actor)

    # --- alarms ---

    async def alarms(self, product_key: str | None = None, severity: str | None = None,
                     states: list[str] | None = None, before_id: int | None = None,
                     limit: int = 100) -> list[Alarm]:
        """The fleet's alarms, newest first; by default the open ones (active and acknowledged)."""
        if severity is not None:
            check_severity(severity)
        states = list(states) if states else ["active", "acknowledged"]
        bad = [s for s in states if s not in STATES]
        if bad:
            raise ParamError(f"state must be one of {', '.join(STATES)}, not {bad[0]!r}")
        if not 1 <= limit <= LIST_MAX:
            raise ParamError(f"limit must be 1 to {LIST_MAX}")
        if before_id is not None and not 0 <= before_id <= ID_MAX:
            raise ParamError(f"before must be an alarm id, 0 to {ID_MAX}")
        return await self._store.list_alarms(product_key, severity, states, None, before_id, limit)

    async def history(self, product_key: str, device_name: str, limit: int = 100) -> list[dict[str, Any]]:
        """A device's alarms, newest first, each with its changes (state, time, who)."""
        if not 1 <= limit <= LIST_MAX:
            raise ParamError(f"limit must be 1 to {LIST_MAX}")
        device = await self._device(product_key, device_name)
        found = await self._store.list_alarms(None, None, [], device.id, None, limit)
        events = await self._store.events([a.id for a in found])
        return [{**a.view(), "changes": [{"state": s, "at": at, "by": by} for s, at, by in events.get(a.id, [])]}
                for a in found]

    async def get(self, alarm_id: int) -> Alarm:
        alarm = await self._store.get(_alarm_id(alarm_id))
        if alarm is None:
            raise NotFound(f"alarm {alarm_id} does not exist")
        return alarm

    async def acknowledge(self, alarm_id: int, actor: str) -> Alarm:
        """``active`` -> ``acknowledged``, by ``actor`` (an API key's name, a CLI user), now."""
        return await self._store.acknowledge(_alarm_id(alarm_id), _actor(actor), _now_ms())

    async def raise_alarm(self, product_key: str, device_name: str, name: str, severity: str,
                          details: dict[str, Any] | None = None) -> tuple[Alarm, bool]:
        """Open alarm ``name`` on the device, unless one of that name is open: (the alarm, whether it is new).
        For code that decides on alarms itself (a rule's ``alarm`` action); a definition's alarms are the
        evaluator's."""
        check_name(name)
        check_severity(severity)
        details = dict(details or {})
        if len(msgspec.json.encode(details)) > DETAILS_MAX:
            raise ParamError(f"details are at most {DETAILS_MAX} bytes of JSON")
        device = await self._device(product_key, device_name)
        return await self._store.raise_alarm(Raise(device.id, device.product_key, device.device_name,
                                                   device.device_id, name, severity, "service", details, _now_ms()))

    async def clear_alarm(self, product_key: str, device_name: str, name: str,
                          actor: str | None = None) -> Alarm | None:
        """Clear the device's open alarm ``name``; None when none is open."""
        check_name(name)
        device = await self._device(product_key, device_name)
        return await self._store.clear_alarm(Clear(device.id, name, _now_ms(), actor))
