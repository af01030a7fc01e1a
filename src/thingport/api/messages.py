"""The message log, newest first."""

from typing import Annotated

from fastapi import APIRouter, Query

from thingport.api import schemas as s
from thingport.api.deps import Manage, Read
from thingport.api.views import message_json
from thingport.core.errors import ParamError
from thingport.manage.service import MESSAGE_KINDS, Management

router = APIRouter(tags=["messages"])


async def message_page(
    management: Management, productKey: str | None, deviceName: str | None, topic: str | None, from_: int | None,
    to: int | None, before: int | None, limit: int, encoding: str, topicFilter: str | None = None,
    kind: str | None = None,
) -> dict:
    """One page of the log (also a device's messages); ``next`` is the ``before`` of the next page."""
    if topicFilter is not None or kind is not None:
        if topic is not None or from_ is not None or to is not None:
            raise ParamError("topicFilter and kind go with productKey, deviceName, before and limit only")
        found, following = await management.find_messages(productKey, deviceName, topicFilter, kind, before, limit)
        return {"items": [message_json(m, encoding) for m in found],
                "next": str(following) if following is not None else None}
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
    topicFilter: Annotated[str | None, Query(max_length=512, description="MQTT-style: + one level, # the rest")] = None,
    kind: Annotated[str | None, Query(max_length=32, description=", ".join(MESSAGE_KINDS))] = None,
) -> dict:
    """The message log, newest first; payloads as text when they are UTF-8 (else base64) or always base64.
    With ``topicFilter`` or ``kind``, a page may hold fewer than ``limit`` items and still have a next one."""
    return await message_page(management, productKey, deviceName, topic, from_, to, before, limit, encoding,
                              topicFilter, kind)
