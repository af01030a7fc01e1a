"""The management REST API: products, devices, running status, history, the message log, API keys.

Every rule lives in ``service.Management``, shared with the CLI; this module only maps HTTP to it.
Authentication is ``Authorization: Bearer <API key>``; read keys may only read, consumer keys may also
acknowledge pull subscriptions, admin keys may do everything. Every endpoint but the
health checks needs a key.
"""

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec
import swagger_ui_bundle
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from thingport import __version__
from thingport.api import schemas as s
from thingport.api.console import ConsoleFiles
from thingport.api.guard import SCOPE_KEY, ApiGuard
from thingport.bus.envelope import envelope
from thingport.core import errors
from thingport.core.model import ApiKey, Device, StoredMessage
from thingport.manage.service import Management

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # a thing model import is the largest body the API takes
CONSUMING_ROLES = ("admin", "consumer")  # may acknowledge what pull subscriptions deliver

_ERRORS: list[tuple[type[errors.ThingportError], int, str]] = [
    (errors.SinkUnreachable, 400, "sink_unreachable"),
    (errors.NotFound, 404, "not_found"),
    (errors.Conflict, 409, "conflict"),
    (errors.ParamError, 400, "invalid"),
]
_COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": s.ErrorResponse, "description": "invalid input (the message names the field)"},
    401: {"model": s.ErrorResponse, "description": "no API key, or an unknown one"},
    403: {"model": s.ErrorResponse, "description": "the key's role may not do this"},
    404: {"model": s.ErrorResponse, "description": "no such product, device or key"},
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status, headers=headers)


def _device(d: Device) -> dict:
    return d.to_json()


def _message(m: StoredMessage, encoding: str) -> dict:
    doc = m.summary()
    payload, used = None, "base64"
    if encoding == "text":
        try:
            payload, used = m.payload.decode("utf-8"), "text"
        except UnicodeDecodeError:
            pass
    if payload is None:
        payload = base64.b64encode(m.payload).decode()
    return {**doc, "messageIdText": str(m.message_id), "payload": payload, "payloadEncoding": used,
            "reply": doc.get("reply")}


def create_api(
    management: Management,
    metrics: CollectorRegistry,
    readiness: Callable[[], Awaitable[dict[str, str]]],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The API app. ``readiness`` returns named checks: all "ok" (or "degraded") means ready.
    Requests pass ``ApiGuard`` first: the key is checked before a body is read, and bodies are capped."""
    app = FastAPI(
        docs_url=None,  # served below from packaged assets: the default page loads Swagger UI from a CDN
        redoc_url=None,
        title="thingport management API",
        version=__version__,
        description="Products, devices, running status, history and the message log of a thingport server.",
        responses=_COMMON_RESPONSES,
    )
    app.add_middleware(ApiGuard, lookup=management.api_key_for, max_body_bytes=max_body_bytes)
    bearer = HTTPBearer(auto_error=False, description="an API key from `thingport apikey create`")

    async def authenticated(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKey:
        checked = request.scope.get(SCOPE_KEY)
        if checked is not None:  # ApiGuard looked it up already
            return checked  # type: ignore[no-any-return]
        if creds is None:
            raise ApiError(401, "unauthorized", "an API key is required: Authorization: Bearer <key>")
        key = await management.api_key_for(creds.credentials)
        if key is None:
            raise ApiError(401, "unauthorized", "unknown API key")
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

    Read = Depends(authenticated)
    Admin = Depends(admin)
    Consumer = Depends(consumer)

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(errors.ThingportError)
    async def on_domain_error(_: Request, exc: errors.ThingportError) -> JSONResponse:
        for kind, status, code in _ERRORS:
            if isinstance(exc, kind):
                return _error(status, code, str(exc))
        return _error(500, "internal", "internal error")

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return _error(400, "invalid", f"{field or 'request'}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(exc.detail))

    # --- health (no key) ---

    @app.get("/healthz", response_model=s.Health, tags=["health"], responses={401: {}, 403: {}, 404: {}, 400: {}})
    async def healthz() -> dict:
        """The process is up."""
        return {"status": "ok", "checks": {}}

    @app.get("/readyz", response_model=s.Health, tags=["health"],
             responses={503: {"model": s.Health}, 401: {}, 403: {}, 404: {}, 400: {}})
    async def readyz() -> Response:
        """Ready to serve: storage answers and takes writes. A "degraded" check (Redis down) is shown but still
        ready. Checks and states only: the reasons are in the server's log."""
        checks = await readiness()
        ready = all(v == "ok" or v.startswith("degraded") for v in checks.values())  # degraded still serves
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)

    @app.get("/metrics", tags=["health"], dependencies=[Read],
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition format"}})
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: requests by dialect, endpoint and code, auth results, messages stored, latency."""
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    # --- products ---

    @app.get("/api/products", response_model=list[s.ProductOut], tags=["products"], dependencies=[Read])
    async def list_products() -> list[dict]:
        return [p.to_json() for p in await management.products()]

    @app.post("/api/products", response_model=s.ProductOut, status_code=201, tags=["products"], dependencies=[Admin],
              responses={409: {"model": s.ErrorResponse}})
    async def create_product(body: s.ProductCreate) -> dict:
        product = await management.create_product(
            body.name, body.productKey, body.nodeType, body.thingModel, body.validation,
            topics=[(t.topic, t.operation) for t in body.topics],
        )
        if body.requireSignType1 is not None:
            product = await management.set_sign_type_1(product.product_key, body.requireSignType1)
        return product.to_json()

    @app.get("/api/products/{productKey}", response_model=s.ProductOut, tags=["products"], dependencies=[Read])
    async def get_product(productKey: str) -> dict:
        return (await management.product(productKey)).to_json()

    @app.patch("/api/products/{productKey}", response_model=s.ProductOut, tags=["products"], dependencies=[Admin])
    async def update_product(productKey: str, body: s.ProductUpdate) -> dict:
        """Change the validation mode, the presence timeout, its devices' report rate limit and/or whether their
        IoTDA auth must be sign_type 1."""
        if body.validation is not None:
            await management.set_validation(productKey, body.validation)
        if body.presenceTimeout is not None:
            await management.set_presence_timeout(productKey, body.presenceTimeout or None)
        if body.deviceReportRate is not None or body.deviceReportBurst is not None:
            await management.set_device_report_rate(productKey, body.deviceReportRate, body.deviceReportBurst)
        if body.followServerSignType1:
            await management.set_sign_type_1(productKey, None)
        elif body.requireSignType1 is not None:
            await management.set_sign_type_1(productKey, body.requireSignType1)
        return (await management.product(productKey)).to_json()

    @app.get("/api/products/{productKey}/thing-model", response_model=s.ThingModelOut, tags=["products"],
             dependencies=[Read])
    async def get_thing_model(productKey: str) -> dict:
        """The model as imported, in its own format."""
        return await management.model_document(productKey)

    @app.put("/api/products/{productKey}/thing-model", response_model=s.ProductOut, tags=["products"],
             dependencies=[Admin])
    async def put_thing_model(
        productKey: str, body: dict[str, Any],
        format: Annotated[str, Query(pattern="^(auto|tsl|huawei)$")] = "auto",
    ) -> dict:
        """Replace the model (a new version); running servers use it within a second."""
        return (await management.import_thing_model(productKey, body, format)).to_json()

    @app.get("/api/products/{productKey}/thing-model/tsl", response_model=dict[str, Any], tags=["products"],
             dependencies=[Read])
    async def get_tsl(productKey: str) -> dict:
        """The model as Alibaba TSL."""
        return await management.export_thing_model(productKey)

    @app.get("/api/products/{productKey}/topics", response_model=list[s.TopicCategory], tags=["products"],
             dependencies=[Read])
    async def get_topics(productKey: str) -> list[dict]:
        return (await management.product(productKey)).to_json()["topics"]

    @app.put("/api/products/{productKey}/topics", response_model=s.ProductOut, tags=["products"],
             dependencies=[Admin])
    async def put_topics(productKey: str, body: Annotated[list[s.TopicCategory], Body(max_length=50)]) -> dict:
        """Replace the custom topic categories: pub (devices publish), sub (devices subscribe), all."""
        return (await management.set_topic_categories(productKey, [(t.topic, t.operation) for t in body])).to_json()

    # --- devices ---

    @app.get("/api/devices", response_model=s.DevicePage, tags=["devices"], dependencies=[Read])
    async def list_devices(
        productKey: str | None = None,
        namePrefix: Annotated[str | None, Query(max_length=32)] = None,
        status: Annotated[str | None, Query(pattern="^(enabled|disabled)$")] = None,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict:
        """Devices in creation order, filtered; ``next`` continues the listing."""
        enabled = None if status is None else status == "enabled"
        page = await management.devices(productKey, namePrefix, enabled, after, limit + 1)
        items = page[:limit]
        more = len(page) > limit
        return {"items": [_device(d) for d in items], "next": str(items[-1].id) if more else None}

    @app.post("/api/devices", response_model=s.DeviceWithSecret, status_code=201, tags=["devices"],
              dependencies=[Admin], responses={409: {"model": s.ErrorResponse}})
    async def create_device(body: s.DeviceCreate) -> dict:
        gateway = (body.gateway.productKey, body.gateway.deviceName) if body.gateway else None
        if body.deviceName is None and body.deviceId is None:
            raise ApiError(400, "invalid", "deviceName or deviceId is required", "deviceName")
        device = await management.create_device(body.productKey, body.deviceName, body.deviceSecret, body.deviceId, gateway)
        return device.to_json(with_secret=True)

    device_path = "/api/devices/{productKey}/{deviceName}"

    @app.get(device_path, response_model=s.DeviceOut, tags=["devices"], dependencies=[Read])
    async def get_device(productKey: str, deviceName: str) -> dict:
        return _device(await management.device(productKey, deviceName))

    @app.delete(device_path, response_model=s.DeviceOut, tags=["devices"], dependencies=[Admin],
                responses={409: {"model": s.ErrorResponse}})
    async def delete_device(productKey: str, deviceName: str) -> dict:
        """Delete the device with its running status and history; its messages stay in the log."""
        return _device(await management.delete_device(productKey, deviceName))

    @app.post(device_path + "/enable", response_model=s.DeviceOut, tags=["devices"], dependencies=[Admin])
    async def enable_device(productKey: str, deviceName: str) -> dict:
        return _device(await management.set_enabled(productKey, deviceName, True))

    @app.post(device_path + "/disable", response_model=s.DeviceOut, tags=["devices"], dependencies=[Admin])
    async def disable_device(productKey: str, deviceName: str) -> dict:
        """Its tokens stop working within a second and it cannot authenticate."""
        return _device(await management.set_enabled(productKey, deviceName, False))

    @app.post(device_path + "/reset-secret", response_model=s.DeviceWithSecret, tags=["devices"], dependencies=[Admin])
    async def reset_secret(productKey: str, deviceName: str) -> dict:
        return (await management.reset_secret(productKey, deviceName)).to_json(with_secret=True)

    @app.post(device_path + "/revoke-tokens", response_model=s.DeviceOut, tags=["devices"], dependencies=[Admin])
    async def revoke_tokens(productKey: str, deviceName: str) -> dict:
        """Kill every token the device holds; it may authenticate again."""
        return _device(await management.revoke_tokens(productKey, deviceName))

    @app.get(device_path + "/secret", response_model=s.DeviceSecret, tags=["devices"], dependencies=[Admin])
    async def device_secret(productKey: str, deviceName: str) -> dict:
        return {"deviceSecret": (await management.device(productKey, deviceName)).secret}

    @app.get(device_path + "/children", response_model=list[s.DeviceOut], tags=["devices"], dependencies=[Read])
    async def children(productKey: str, deviceName: str) -> list[dict]:
        return [_device(d) for d in await management.children(productKey, deviceName)]

    @app.get(device_path + "/status", response_model=s.StatusOut, tags=["devices"], dependencies=[Read])
    async def status(productKey: str, deviceName: str) -> dict:
        """Running status: presence and the latest value and time of every property."""
        return (await management.device_status(productKey, deviceName)).to_json()

    @app.get(device_path + "/history", response_model=list[s.HistoryPoint], tags=["devices"], dependencies=[Read])
    async def history(
        productKey: str, deviceName: str,
        property: Annotated[str, Query(min_length=1, max_length=100)],
        from_: Annotated[int | None, Query(alias="from", ge=0, le=2**62)] = None,
        to: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict]:
        """One property's values, newest first (times in ms since the epoch)."""
        return await management.device_history(productKey, deviceName, property, from_, to, limit)

    # --- messages ---

    async def _messages(
        productKey: str | None, deviceName: str | None, topic: str | None, from_: int | None, to: int | None,
        before: int | None, limit: int, encoding: str,
    ) -> dict:
        page = await management.messages(productKey, deviceName, topic, from_, to, before, limit)
        return {"items": [_message(m, encoding) for m in page],
                "next": str(page[-1].seq) if len(page) == limit else None}

    @app.get("/api/messages", response_model=s.MessagePage, tags=["messages"], dependencies=[Read])
    async def messages(
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
        return await _messages(productKey, deviceName, topic, from_, to, before, limit, encoding)

    @app.get(device_path + "/messages", response_model=s.MessagePage, tags=["devices"], dependencies=[Read])
    async def device_messages(
        productKey: str, deviceName: str,
        before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        encoding: Annotated[str, Query(pattern="^(text|base64)$")] = "text",
    ) -> dict:
        await management.device(productKey, deviceName)
        return await _messages(productKey, deviceName, None, None, None, before, limit, encoding)

    # --- subscriptions ---

    @app.get("/api/subscriptions", response_model=list[s.SubscriptionOut], tags=["subscriptions"],
             dependencies=[Read])
    async def list_subscriptions() -> list[dict]:
        """Subscriptions with their backlog: log messages the sink has yet to confirm."""
        return [sub.to_json(backlog) for sub, backlog in await management.subscriptions()]

    @app.post("/api/subscriptions", response_model=s.SubscriptionOut, status_code=201, tags=["subscriptions"],
              dependencies=[Admin], responses={409: {"model": s.ErrorResponse}})
    async def create_subscription(
        body: s.SubscriptionCreate,
        check: Annotated[bool, Query(description="false: skip the sink check (as the body's `check`)")] = True,
    ) -> dict:
        """A push sink is first connected to with its credentials (a webhook gets an empty signed batch):
        400 `sink_unreachable` when that fails, unless `check` is false (in the body or the query)."""
        created = await management.create_subscription(
            body.name, body.productKey, body.sink, list(body.kinds), body.topicFilter, dict(body.options),
            body.fromStart, check=body.check and check,
        )
        return created.to_json(0)

    @app.get("/api/subscriptions/{name}", response_model=s.SubscriptionOut, tags=["subscriptions"],
             dependencies=[Read])
    async def get_subscription(name: str) -> dict:
        for sub, backlog in await management.subscriptions():
            if sub.name == name:
                return sub.to_json(backlog)
        raise errors.NotFound(f"subscription {name} does not exist")

    @app.delete("/api/subscriptions/{name}", status_code=204, response_class=Response, tags=["subscriptions"],
                dependencies=[Admin])
    async def delete_subscription(name: str) -> Response:
        await management.delete_subscription(name)
        return Response(status_code=204)

    @app.post("/api/subscriptions/{name}/pull", response_model=s.PullOut, tags=["subscriptions"])
    async def pull(
        name: str,
        key: Annotated[ApiKey, Read],
        max: Annotated[int, Query(ge=1, le=1000)] = 100,
        wait: Annotated[float, Query(ge=0, le=30)] = 0,
    ) -> dict:
        """The next envelopes of an http subscription, waiting up to ``wait`` seconds for some. They come
        again on every pull until acknowledged (at least once). A read key's pull is a peek: only what an
        admin or consumer key pulled may be acknowledged."""
        messages, cursor = await management.pull(name, max, wait, consumer=key.role in CONSUMING_ROLES)
        return {"messages": [envelope(m) for m in messages], "cursor": str(cursor)}

    @app.post("/api/subscriptions/{name}/ack", response_model=s.SubscriptionOut, tags=["subscriptions"],
              dependencies=[Consumer], responses={409: {"model": s.ErrorResponse}})
    async def ack(name: str, body: s.AckIn) -> dict:
        """Acknowledge everything up to a pull's cursor (or an event's id): http subscriptions only, an
        admin or consumer key, and never beyond what such a key's pulls and streams were given (409)."""
        return (await management.ack(name, int(body.cursor))).to_json()

    @app.get("/api/subscriptions/{name}/events", tags=["subscriptions"],
             responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                              "description": "Server-Sent Events: id = log seq, data = envelope JSON"}})
    async def events(name: str, request: Request, key: Annotated[ApiKey, Read]) -> Response:
        """Server-Sent Events of a subscription, resuming after ``Last-Event-ID`` (else from its cursor)."""
        last = request.headers.get("last-event-id")
        after = int(last) if last and last.isdigit() and len(last) < 20 else None
        await management.subscription(name)  # 404 before the stream starts
        source = management.stream(name, after, consumer=key.role in CONSUMING_ROLES)

        async def body():  # type: ignore[no-untyped-def]
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

    # --- API keys ---

    @app.get("/api/apikeys", response_model=list[s.ApiKeyOut], tags=["api keys"], dependencies=[Admin])
    async def list_keys() -> list[dict]:
        return [k.to_json() for k in await management.api_keys()]

    @app.post("/api/apikeys", response_model=s.ApiKeyCreated, status_code=201, tags=["api keys"],
              dependencies=[Admin])
    async def create_key(body: s.ApiKeyCreate) -> dict:
        """A new key, shown this once."""
        record, key = await management.create_api_key(body.name, body.role)
        return {**record.to_json(), "key": key}

    @app.delete("/api/apikeys/{keyId}", status_code=204, tags=["api keys"], dependencies=[Admin],
                response_class=Response)
    async def delete_key(keyId: Annotated[int, PathParam(ge=1, le=2**62)]) -> Response:
        await management.delete_api_key(keyId)
        return Response(status_code=204)

    # --- interactive docs, from local assets (works offline) ---

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="thingport management API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    # --- console ---

    if CONSOLE_DIR.is_dir():
        app.mount("/console", ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/console/")

    return app
