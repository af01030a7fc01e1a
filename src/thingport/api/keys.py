"""API keys (admin keys only): listing, creating (the key is shown once) and deleting them."""

from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import Response

from thingport.api import schemas as s
from thingport.api.deps import Admin, Manage
from thingport.api.views import api_key_json

router = APIRouter(tags=["api keys"], dependencies=[Admin])


@router.get("/api/apikeys", response_model=list[s.ApiKeyOut])
async def list_keys(management: Manage) -> list[dict]:
    return [api_key_json(k) for k in await management.api_keys()]


@router.post("/api/apikeys", response_model=s.ApiKeyCreated, status_code=201)
async def create_key(body: s.ApiKeyCreate, management: Manage) -> dict:
    """A new key, shown this once."""
    record, key = await management.create_api_key(body.name, body.role)
    return {**api_key_json(record), "key": key}


@router.delete("/api/apikeys/{keyId}", status_code=204, response_class=Response)
async def delete_key(keyId: Annotated[int, PathParam(ge=1, le=2**62)], management: Manage) -> Response:
    await management.delete_api_key(keyId)
    return Response(status_code=204)
