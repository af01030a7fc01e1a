"""A product's devices in bulk: import from and export to CSV or JSON lines (the CLI's device files).

An import is all or nothing, as in the CLI: a body with any refused row imports nothing and is answered
422 with the per-row report (``skipInvalid=true`` imports the valid rows instead). Its body may be larger
than other requests' (``api_import_max_body_bytes``, for admin keys only: ``ApiGuard``); a larger file is
imported in several requests, each all or nothing, or with the CLI. Secrets appear in an export only with
``withSecrets=true``, for admin keys.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from thingport.api import schemas as s
from thingport.api.deps import Admin, Manage, authenticated
from thingport.api.errors import ApiError
from thingport.api.views import import_report_json
from thingport.core.model import ApiKey
from thingport.manage import device_files

router = APIRouter(tags=["devices"])
IMPORT_PATH = "/api/products/{productKey}/devices/import"
MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
_FORMAT_OF_TYPE = {"text/csv": "csv", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl",
                   "application/x-jsonlines": "jsonl"}
_TEXT_BODY = {"schema": {"type": "string"}}


def _format(request: Request, given: str | None) -> str:
    if given is not None:
        return given
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _FORMAT_OF_TYPE:
        raise ApiError(400, "invalid", "give the format: ?format=csv|jsonl, or Content-Type text/csv or"
                       " application/x-ndjson", "format")
    return _FORMAT_OF_TYPE[media]


@router.post(
    IMPORT_PATH, response_model=s.ImportReportOut, dependencies=[Admin],
    responses={409: {"model": s.ErrorResponse}, 413: {"model": s.ErrorResponse},
               422: {"model": s.ImportRefusedOut, "description": "rows were refused: nothing was imported"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "text/csv": _TEXT_BODY, "application/x-ndjson": _TEXT_BODY}}},
)
async def import_devices(
    productKey: str, request: Request, management: Manage,
    format: Annotated[str | None, Query(pattern="^(csv|jsonl)$")] = None,
    skipInvalid: bool = False, dryRun: bool = False,
) -> Any:
    """Create devices from a CSV (header ``deviceName,deviceSecret[,deviceId]``) or JSON lines body. The
    answer lists every refused row (line, code, reason) and the imported devices with their secrets."""
    file_format = _format(request, format)
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid", f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    report = await management.import_devices(
        productKey, device_files.parse(text.split("\n"), file_format), skipInvalid, dryRun)
    doc = {**import_report_json(report, dryRun), "devices": [
        {"deviceName": d.device_name, "deviceId": d.device_id, "deviceSecret": d.secret} for d in report.devices]}
    if report.refusals and not skipInvalid:
        message = f"{len(report.refusals)} of {report.rows} rows refused: nothing was imported"
        return JSONResponse({"error": {"code": "refused", "message": message, "field": None}, "report": doc}, 422)
    return doc


@router.get(
    "/api/products/{productKey}/devices/export", response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": _TEXT_BODY, "application/x-ndjson": _TEXT_BODY},
                     "description": "the devices, one a line, in deviceName order"}},
)
async def export_devices(
    productKey: str, key: Annotated[ApiKey, Depends(authenticated)], management: Manage,
    format: Annotated[str, Query(pattern="^(csv|jsonl)$")] = "csv",
    withSecrets: bool = False,
) -> StreamingResponse:
    """The product's devices as a device file (`device import` reads it back); ``withSecrets`` adds each
    deviceSecret, for admin keys only."""
    if withSecrets and key.role != "admin":
        raise ApiError(403, "forbidden", "secrets are exported for admin keys only", "withSecrets")
    await management.product(productKey)  # a missing product is a 404, before the stream starts
    writer = device_files.LineWriter(format, device_files.export_columns(withSecrets))

    async def lines() -> AsyncIterator[str]:
        yield writer.header()
        batch: list[str] = []
        async for device in management.export_devices(productKey):
            batch.append(writer.line(device_files.export_record(device, withSecrets)))
            if len(batch) >= 1000:
                yield "".join(batch)
                batch = []
        yield "".join(batch)

    filename = f"{productKey}-devices.{format}"
    return StreamingResponse(lines(), media_type=MEDIA_TYPES[format],
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
