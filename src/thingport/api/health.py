"""Health checks (no key) and Prometheus metrics (any key)."""

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from thingport.api import schemas as s
from thingport.api.deps import Read

Readiness = Callable[[], Awaitable[dict[str, str]]]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=s.Health, responses={401: {}, 403: {}, 404: {}, 400: {}})
async def healthz() -> dict:
    """The process is up."""
    return {"status": "ok", "checks": {}}


@router.get("/readyz", response_model=s.Health,
            responses={503: {"model": s.Health}, 401: {}, 403: {}, 404: {}, 400: {}})
async def readyz(request: Request) -> Response:
    """Ready to serve: storage answers and takes writes. A "degraded" check (Redis down) is shown but still
    ready. Checks and states only: the reasons are in the server's log."""
    readiness: Readiness = request.app.state.readiness
    checks = await readiness()
    ready = all(v == "ok" or v.startswith("degraded") for v in checks.values())  # degraded still serves
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)


@router.get("/metrics", dependencies=[Read],
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics: requests by dialect, endpoint and code, auth results, messages stored, latency."""
    metrics: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)
