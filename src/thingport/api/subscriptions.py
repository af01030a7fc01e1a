"""Subscriptions: creating them, their delivery state, and pulling, streaming and acknowledging what an
http subscription delivers."""

from collections.abc import AsyncIterator
from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from thingport.api import schemas as s
from thingport.api.deps import CONSUMING_ROLES, Admin, Consumer, Manage, Read
from thingport.api.errors import ApiError
from thingport.api.views import subscription_json
from thingport.bus.envelope import envelope
from thingport.core import errors
from thingport.core.model import ApiKey, StoredMessage

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
    """Of one product (`productKey`), a list (`productKeys`) or every product (`allProducts`: those created
    later too). A push sink is first connected to with its credentials (a webhook gets an empty signed batch):
    400 `sink_unreachable` when that fails, unless `check` is false (in the body or the query)."""
    scopes = [body.productKey is not None, body.productKeys is not None, body.allProducts]
    if sum(scopes) != 1:
        raise errors.ParamError("give exactly one of productKey, productKeys and allProducts")
    products = None if body.allProducts else body.productKeys if body.productKeys is not None else body.productKey
    created = await management.create_subscription(
        body.name, products, body.sink, list(body.kinds), body.topicFilter, dict(body.options),
        body.fromStart, check=body.check and check,
    )
    return subscription_json(created, 0)


@router.get("/api/subscriptions/{name}", response_model=s.SubscriptionOut, dependencies=[Read])
async def get_subscription(name: str, management: Manage) -> dict:
    for sub, backlog in await management.subscriptions():
        if sub.name == name:
            return subscription_json(sub, backlog)
    raise errors.NotFound(f"subscription {name} does not exist")


@router.patch("/api/subscriptions/{name}", response_model=s.SubscriptionOut, dependencies=[Admin],
              responses={404: {"model": s.ErrorResponse}})
async def update_subscription(name: str, body: s.SubscriptionPatch, management: Manage) -> dict:
    """Pause (`enabled: false`) or resume forwarding: a paused subscription's messages wait for it."""
    await management.set_subscription_enabled(name, body.enabled)
    return await get_subscription(name, management)


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
async def events(
    name: str, request: Request, key: Annotated[ApiKey, Read], management: Manage,
    ack: Annotated[Literal["manual", "auto"], Query(
        description="manual: the client acknowledges an event id (POST .../ack) when it is done with it; auto "
                    "(an admin or consumer key): the stream moves the cursor past what it has written, so an "
                    "event lost in flight when the connection drops is not sent again")] = "manual",
) -> Response:
    """Server-Sent Events of a subscription, resuming after ``Last-Event-ID`` (else from its cursor)."""
    last = request.headers.get("last-event-id")
    after = int(last) if last and last.isdigit() and len(last) < 20 else None
    consumer = key.role in CONSUMING_ROLES
    if ack == "auto" and not consumer:
        raise ApiError(403, "forbidden", f"API key {key.name!r} is read-only: ack=auto needs a consumer key")
    source = management.stream(name, after, consumer=consumer, auto_ack=ack == "auto")
    try:  # 404, 400, 409 before the stream starts
        first = await anext(source)
    except BaseException:
        await source.aclose()
        raise

    async def body() -> AsyncIterator[bytes]:
        yield b": thingport\n\n"
        message: StoredMessage | None = first
        try:
            while True:
                if await request.is_disconnected():
                    break
                if message is None:
                    yield b": keep-alive\n\n"
                else:
                    data = msgspec.json.encode(envelope(message))
                    yield b"id: %d\nevent: message\ndata: %s\n\n" % (message.seq, data)
                message = await anext(source)
        finally:
            await source.aclose()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
