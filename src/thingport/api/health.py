"""Health checks (no key) and Prometheus metrics (any key, a ``metrics`` one among them)."""

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from thingport.api import schemas as s
from thingport.api.deps import Manage, Scrape

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


@router.get("/metrics", dependencies=[Scrape],
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
async def prometheus_metrics(request: Request, management: Manage) -> Response:
    """Prometheus metrics of every worker: device requests by dialect, endpoint and code, refusals by kind
    and by validation code, auth results, messages stored, latency, forwarding, process metrics per worker,
    and devices online per product. A key of role ``metrics`` reads this and nothing else."""
    metrics: CollectorRegistry = request.app.state.metrics
    online = GaugeMetricFamily("thingport_devices_online", "Devices seen within their product's presence "
                               "timeout (the store's view: every instance counts them all)", labels=["product"])
    for product, count in await management.online_by_product():
        online.add_metric([product], count)
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_Families([online]))
    return Response(generate_latest(metrics) + generate_latest(extra), media_type=CONTENT_TYPE_LATEST)


class _Families:
    def __init__(self, families: list) -> None:
        self._families = families

    def collect(self) -> list:
        return self._families
