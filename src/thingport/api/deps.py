"""What the routes depend on: the management use cases, and the caller's API key with its role.

``Scrape`` is any key (GET /metrics), ``Read`` any key but a ``metrics`` one, ``Consumer`` a key that may
acknowledge pull subscriptions (admin or consumer), ``Admin`` an admin key. ``ApiGuard`` has looked the key
up before the body was read; a request that did not pass it (none in the server) is looked up here."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from thingport.api.errors import ApiError
from thingport.api.guard import SCOPE_KEY
from thingport.core.model import ApiKey
from thingport.manage.service import Management

CONSUMING_ROLES = ("admin", "consumer")  # may acknowledge what pull subscriptions deliver

_bearer = HTTPBearer(auto_error=False, description="an API key from `thingport apikey create`")


def _management(request: Request) -> Management:
    management: Management = request.app.state.management
    return management


Manage = Annotated[Management, Depends(_management)]


async def any_key(
    request: Request, management: Manage,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    checked = request.scope.get(SCOPE_KEY)
    if checked is not None:  # ApiGuard looked it up already
        return checked
    if creds is None:
        raise ApiError(401, "unauthorized", "an API key is required: Authorization: Bearer <key>")
    key = await management.api_key_for(creds.credentials)
    if key is None:
        raise ApiError(401, "unauthorized", "unknown API key")
    return key


async def authenticated(key: Annotated[ApiKey, Depends(any_key)]) -> ApiKey:
    """A key that may read: every role but ``metrics``, which a Prometheus scraper holds."""
    if key.role == "metrics":
        raise ApiError(403, "forbidden", f"API key {key.name!r} may only read /metrics")
    return key


async def admin(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
    if key.role != "admin":
        what = "read-only" if key.role == "read" else "a consumer key (read and acknowledge only)"
        raise ApiError(403, "forbidden", f"API key {key.name!r} is {what}")
    return key


async def consumer(key: Annotated[ApiKey, Depends(authenticated)]) -> ApiKey:
    if key.role not in CONSUMING_ROLES:
        raise ApiError(403, "forbidden", f"API key {key.name!r} is read-only: acknowledging needs a consumer key")
    return key


Scrape = Depends(any_key)
Read = Depends(authenticated)
Admin = Depends(admin)
Consumer = Depends(consumer)
