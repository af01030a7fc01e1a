"""Alarms: definitions per product, the fleet's alarms, a device's alarm history, acknowledging."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from thingport.api import schemas as s
from thingport.api.deps import Admin, Manage, Read, admin
from thingport.core.model import ApiKey

router = APIRouter(tags=["alarms"])
DEFINITIONS = "/api/products/{productKey}/alarm-definitions"
ID_MAX = 2**63 - 1
AlarmId = Annotated[int, Path(ge=1, le=ID_MAX)]


@router.get(DEFINITIONS, response_model=list[s.AlarmDefinitionOut], dependencies=[Read])
async def list_definitions(productKey: str, management: Manage) -> list[dict]:  # noqa: N803 - the API's name
    return [d.view() for d in await management.alarms.definitions(productKey)]


@router.post(DEFINITIONS, response_model=s.AlarmDefinitionOut, status_code=201, dependencies=[Admin],
             responses={404: {"model": s.ErrorResponse}, 409: {"model": s.ErrorResponse}})
async def define(productKey: str, body: s.AlarmDefinitionCreate, management: Manage) -> dict:  # noqa: N803
    """Checked against the product's thing model: an unknown property or a value of the wrong type is a 400,
    and nothing is stored. A running server judges it within a second."""
    defined = await management.alarms.define(productKey, body.name, body.severity, body.condition,
                                             body.clearCondition, body.durationSeconds)
    return defined.view()


@router.delete(DEFINITIONS + "/{name}", response_model=s.AlarmDefinitionDeleted,
               responses={404: {"model": s.ErrorResponse}})
async def delete_definition(productKey: str, name: str, management: Manage,  # noqa: N803
                            key: Annotated[ApiKey, Depends(admin)]) -> dict:
    """Its open alarms are cleared."""
    cleared = await management.alarms.delete_definition(productKey, name, f"apikey:{key.name}")
    return {"productKey": productKey, "name": name, "alarmsCleared": cleared}


@router.get("/api/alarms", response_model=list[s.AlarmOut], dependencies=[Read])
async def list_alarms(
    management: Manage,
    productKey: str | None = None,  # noqa: N803
    severity: s.Severity | None = None,
    state: Annotated[list[s.AlarmState] | None, Query(description="repeatable; default: active, acknowledged")] = None,
    before: Annotated[int | None, Query(ge=0, le=ID_MAX, description="an alarm id: the next page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict]:
    """The fleet's alarms, newest first."""
    found = await management.alarms.alarms(productKey, severity, list(state or []), before, limit)
    return [a.view() for a in found]


@router.get("/api/alarms/{alarmId}", response_model=s.AlarmOut, dependencies=[Read],
            responses={404: {"model": s.ErrorResponse}})
async def get_alarm(alarmId: AlarmId, management: Manage) -> dict:  # noqa: N803
    return (await management.alarms.get(alarmId)).view()


@router.post("/api/alarms/{alarmId}/acknowledge", response_model=s.AlarmOut,
             responses={404: {"model": s.ErrorResponse}, 409: {"model": s.ErrorResponse}})
async def acknowledge(alarmId: AlarmId, management: Manage, key: Annotated[ApiKey, Depends(admin)]) -> dict:  # noqa: N803
    """An operator has seen it: ``active`` -> ``acknowledged``, by the admin key's name. 409 when it is
    acknowledged already or cleared."""
    return (await management.alarms.acknowledge(alarmId, f"apikey:{key.name}")).view()


@router.get("/api/devices/{productKey}/{deviceName}/alarms", response_model=list[s.AlarmHistoryOut],
            dependencies=[Read], responses={404: {"model": s.ErrorResponse}})
async def device_alarms(productKey: str, deviceName: str, management: Manage,  # noqa: N803
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    """The device's alarms, newest first, each with its changes."""
    return await management.alarms.history(productKey, deviceName, limit)
