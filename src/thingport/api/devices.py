"""Devices: creating and changing them, their secret, sub-devices, running status, history and messages."""

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from thingport.api import schemas as s
from thingport.api.deps import Admin, Manage, Read
from thingport.api.errors import ApiError
from thingport.api.messages import message_page
from thingport.api.views import device_json, listed_device_json, status_json
from thingport.core.presentation import presentations
from thingport.manage import history_files
from thingport.manage.service import HISTORY_MAX_BUCKETS

router = APIRouter(tags=["devices"])
DEVICE = "/api/devices/{productKey}/{deviceName}"


@router.get("/api/devices", response_model=s.DevicePage, dependencies=[Read])
async def list_devices(
    management: Manage,
    productKey: str | None = None,
    namePrefix: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[str | None, Query(pattern="^(enabled|disabled)$")] = None,
    online: Annotated[bool | None, Query(description="true: only online devices; false: only offline")] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    """Devices in creation order, filtered, each with its presence and last seen time; ``next`` continues
    the listing (a filtered page may be short, even empty, and still have a next)."""
    enabled = None if status is None else status == "enabled"
    items, after_id = await management.device_page(productKey, namePrefix, enabled, online, after, limit)
    return {"items": [listed_device_json(d) for d in items], "next": None if after_id is None else str(after_id)}


@router.post("/api/devices", response_model=s.DeviceWithSecret, status_code=201, dependencies=[Admin],
             responses={409: {"model": s.ErrorResponse}})
async def create_device(body: s.DeviceCreate, management: Manage) -> dict:
    gateway = (body.gateway.productKey, body.gateway.deviceName) if body.gateway else None
    if body.deviceName is None and body.deviceId is None:
        raise ApiError(400, "invalid", "deviceName or deviceId is required", "deviceName")
    device = await management.create_device(body.productKey, body.deviceName, body.deviceSecret, body.deviceId, gateway)
    return device_json(device, with_secret=True)


@router.get(DEVICE, response_model=s.DeviceOut, dependencies=[Read])
async def get_device(productKey: str, deviceName: str, management: Manage) -> dict:
    return device_json(await management.device(productKey, deviceName))


@router.delete(DEVICE, response_model=s.DeviceOut, dependencies=[Admin], responses={409: {"model": s.ErrorResponse}})
async def delete_device(productKey: str, deviceName: str, management: Manage) -> dict:
    """Delete the device with its running status and history; its messages stay in the log."""
    return device_json(await management.delete_device(productKey, deviceName))


@router.post(DEVICE + "/enable", response_model=s.DeviceOut, dependencies=[Admin])
async def enable_device(productKey: str, deviceName: str, management: Manage) -> dict:
    return device_json(await management.set_enabled(productKey, deviceName, True))


@router.post(DEVICE + "/disable", response_model=s.DeviceOut, dependencies=[Admin])
async def disable_device(productKey: str, deviceName: str, management: Manage) -> dict:
    """Its tokens stop working within a second and it cannot authenticate."""
    return device_json(await management.set_enabled(productKey, deviceName, False))


@router.post(DEVICE + "/reset-secret", response_model=s.DeviceWithSecret, dependencies=[Admin])
async def reset_secret(productKey: str, deviceName: str, management: Manage) -> dict:
    return device_json(await management.reset_secret(productKey, deviceName), with_secret=True)


@router.post(DEVICE + "/revoke-tokens", response_model=s.DeviceOut, dependencies=[Admin])
async def revoke_tokens(productKey: str, deviceName: str, management: Manage) -> dict:
    """Kill every token the device holds; it may authenticate again."""
    return device_json(await management.revoke_tokens(productKey, deviceName))


@router.get(DEVICE + "/secret", response_model=s.DeviceSecret, dependencies=[Admin])
async def device_secret(productKey: str, deviceName: str, management: Manage) -> dict:
    return {"deviceSecret": (await management.device(productKey, deviceName)).secret}


@router.get(DEVICE + "/children", response_model=list[s.ListedDeviceOut], dependencies=[Read])
async def children(productKey: str, deviceName: str, management: Manage) -> list[dict]:
    """A gateway's sub-devices, each with its presence and last seen time."""
    return [listed_device_json(d) for d in await management.children(productKey, deviceName)]


@router.get(DEVICE + "/status", response_model=s.StatusOut, dependencies=[Read])
async def status(productKey: str, deviceName: str, management: Manage) -> dict:
    """Running status: presence and the latest value and time of every property."""
    return status_json(await management.device_status(productKey, deviceName))


@router.get(DEVICE + "/history", response_model=list[s.HistoryBucketPoint] | list[s.HistoryPoint],
            dependencies=[Read])
async def history(
    productKey: str, deviceName: str, management: Manage,
    property: Annotated[str, Query(min_length=1, max_length=100)],
    from_: Annotated[int | None, Query(alias="from", ge=0, le=2**62)] = None,
    to: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="values (default 100); not with buckets")] = None,
    buckets: Annotated[int | None, Query(ge=1, le=HISTORY_MAX_BUCKETS, description=(
        "downsample [from, to] (to: now) into this many equal slices, aggregated by the database: one item"
        " per slice holding values, with its newest value and the slice's count, min, max and mean"))] = None,
) -> list[dict[str, Any]]:
    """One property's values, newest first (times in ms since the epoch); with ``buckets``, one per slice."""
    if buckets is None:
        return await management.device_history(
            productKey, deviceName, property, from_, to, 100 if limit is None else limit)
    if limit is not None:
        raise ApiError(400, "invalid", "limit and buckets exclude each other: buckets gives one item a slice", "limit")
    width, slices = await management.device_history_buckets(productKey, deviceName, property, from_, to, buckets)
    last = 2**62 if to is None else to
    return [{"time": b.last_ms, "value": b.last_value, "messageId": b.last_message_id,
             "messageIdText": str(b.last_message_id),
             "bucket": {"start": b.start_ms, "end": min(b.start_ms + width - 1, last), "count": b.size,
                        "min": b.min, "max": b.max, "avg": b.avg, "firstTime": b.first_ms}}
            for b in slices]


@router.get(
    DEVICE + "/history.csv", response_class=StreamingResponse, dependencies=[Read],
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                     "description": "time,timeMs,value,label,messageId, oldest first"}},
)
async def history_csv(
    productKey: str, deviceName: str, management: Manage,
    property: Annotated[str, Query(min_length=1, max_length=100)],
    from_: Annotated[int | None, Query(alias="from", ge=0, le=2**62)] = None,
    to: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> StreamingResponse:
    """Every value of one property in [from, to] as CSV, oldest first, streamed (no row limit)."""
    pages = await management.device_history_export(productKey, deviceName, property, from_, to)
    model = await management.export_thing_model_or_none(productKey)
    shown = presentations(model).get(property) if model else None

    async def body() -> AsyncIterator[str]:
        yield ",".join(history_files.HEADER) + "\r\n"
        async for rows in pages:
            yield history_files.csv_text(rows, shown)

    filename = re.sub(r"[^A-Za-z0-9._-]", "_", f"{productKey}-{deviceName}-{property}") + ".csv"
    return StreamingResponse(body(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get(DEVICE + "/messages", response_model=s.MessagePage, dependencies=[Read])
async def device_messages(
    productKey: str, deviceName: str, management: Manage,
    before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    encoding: Annotated[str, Query(pattern="^(text|base64)$")] = "text",
) -> dict:
    await management.device(productKey, deviceName)
    return await message_page(management, productKey, deviceName, None, None, None, before, limit, encoding)
