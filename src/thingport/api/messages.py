"""The message log, newest first."""

from typing import Annotated

from fastapi import APIRouter, Query

from thingport.api import schemas as s
from thingport.api.deps import Manage, Read
from thingport.api.views import message_json
from thingport.manage.service import Management

router = APIRouter(tags=["messages"])


async def message_page(
    management: Management, productKey: str | None, deviceName: str | None, topic: str | None, from_: int | None,
    to: int | None, before: int | None, limit: int, encoding: str,
) -> dict:
    """One page of the log (also a device's messages); ``next`` is the ``before`` of the next page."""
    page = await management.messages(productKey, deviceName, topic, from_, to, before, limit)
    return {"items": [message_json(m, encoding) for m in page],
            "next": str(page[-1].seq) if len(page) == limit else None}


@router.get("/api/messages", response_model=s.MessagePage, dependencies=[Read])
async def messages(
    management: Manage,
    productKey: str | None = None,
    deviceName: str | None = None,
    topic: Annotated[str | None, Query(max_length=512)] = None,
    from_: Annotated[int | None, Query(alias="from", ge=0, le=2**62)] = None,
    to: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    encoding: Annotated[str, Query(pattern="^(text|base64)$")] = "text",
) -> dict:
    """The message log, newest first; payloads as text when they are UTF-8 (else base64) or always base64."""
    return await message_page(management, productKey, deviceName, topic, from_, to, before, limit, encoding)
