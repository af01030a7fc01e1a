"""Subscriptions: creating them, their delivery state, and pulling, streaming and acknowledging what an
http subscription delivers."""

from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from thingport.api import schemas as s
from thingport.api.deps import CONSUMING_ROLES, Admin, Consumer, Manage, Read
from thingport.api.views import subscription_json
from thingport.bus.envelope import envelope
from thingport.core import errors
from thingport.core.model import ApiKey

router = APIRouter(tags=["subscriptions"])


@router.get("/api/subscriptions", response_model=list[s.SubscriptionOut], dependencies=[Read])
async def list_subscriptions(management: Manage) -> list[dict]:
    """Subscriptions with their backlog: log messages the sink has yet to confirm."""
    return [subscription_json(sub, backlog) for sub, backlog in await management.subscriptions()]


@router.post("/api/subscriptions", response_model=s.SubscriptionOut, status_code=201, dependencies=[Admin],
             responses={409: {"model": s.ErrorResponse}})
async def create_subscription(
    body: s.SubscriptionCreate, management: Manage,
    check: Annotated[bool, Query(description="false: skip the sink check (as the body's `check`)")] = True,
) -> dict:
    """A push sink is first connected to with its credentials (a webhook gets an empty signed batch):
    400 `sink_unreachable` when that fails, unless `check` is false (in the body or the query)."""
    created = await management.create_subscription(
        body.name, body.productKey, body.sink, list(body.kinds), body.topicFilter, dict(body.options),
        body.fromStart, check=body.check and check,
    )
    return subscription_json(created, 0)


@router.get("/api/subscriptions/{name}", response_model=s.SubscriptionOut, dependencies=[Read])
async def get_subscription(name: str, management: Manage) -> dict:
    for sub, backlog in await management.subscriptions():
        if sub.name == name:
            return subscription_json(sub, backlog)
    raise errors.NotFound(f"subscription {name} does not exist")


@router.delete("/api/subscriptions/{name}", status_code=204, response_class=Response, dependencies=[Admin])
async def delete_subscription(name: str, management: Manage) -> Response:
    await management.delete_subscription(name)
    return Response(status_code=204)


@router.post("/api/subscriptions/{name}/pull", response_model=s.PullOut)
async def pull(
    name: str,
    key: Annotated[ApiKey, Read],
    management: Manage,
    max: Annotated[int, Query(ge=1, le=1000)] = 100,
    wait: Annotated[float, Query(ge=0, le=30)] = 0,
) -> dict:
    """The next envelopes of an http subscription, waiting up to ``wait`` seconds for some. They come
    again on every pull until acknowledged (at least once). A read key's pull is a peek: only what an
    admin or consumer key pulled may be acknowledged."""
    messages, cursor = await management.pull(name, max, wait, consumer=key.role in CONSUMING_ROLES)
    return {"messages": [envelope(m) for m in messages], "cursor": str(cursor)}


@router.post("/api/subscriptions/{name}/ack", response_model=s.SubscriptionOut, dependencies=[Consumer],
             responses={409: {"model": s.ErrorResponse}})
async def ack(name: str, body: s.AckIn, management: Manage) -> dict:
    """Acknowledge everything up to a pull's cursor (or an event's id): http subscriptions only, an
    admin or consumer key, and never beyond what such a key's pulls and streams were given (409)."""
    return subscription_json(await management.ack(name, int(body.cursor)))


@router.get("/api/subscriptions/{name}/events",
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "Server-Sent Events: id = log seq, data = envelope JSON"}})
async def events(name: str, request: Request, key: Annotated[ApiKey, Read], management: Manage) -> Response:
    """Server-Sent Events of a subscription, resuming after ``Last-Event-ID`` (else from its cursor)."""
    last = request.headers.get("last-event-id")
    after = int(last) if last and last.isdigit() and len(last) < 20 else None
    await management.subscription(name)  # 404 before the stream starts
    source = management.stream(name, after, consumer=key.role in CONSUMING_ROLES)

    async def body() -> AsyncIterator[bytes]:
        yield b": thingport\n\n"
        async for message in source:
            if await request.is_disconnected():
                break
            if message is None:
                yield b": keep-alive\n\n"
            else:
                data = msgspec.json.encode(envelope(message))
                yield b"id: %d\nevent: message\ndata: %s\n\n" % (message.seq, data)

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
