"""The management REST API: products, devices, running status, history, the message log, API keys.

Every rule lives in ``manage.service.Management``, shared with the CLI; the routers (one per resource) only
map HTTP to it, and ``views`` shapes what they return. Authentication is ``Authorization: Bearer <API key>``;
read keys may only read, consumer keys may also acknowledge pull subscriptions, admin keys may do
everything. Every endpoint but the health checks needs a key.
"""

from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from thingport import __version__
from thingport.api import alarms, device_files, devices, health, keys, messages, products, rules, subscriptions
from thingport.api.console import ConsoleFiles
from thingport.api.errors import COMMON_RESPONSES, install_error_handlers
from thingport.api.guard import ApiGuard
from thingport.api.health import Readiness
from thingport.manage.service import Management

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # a thing model import is the largest body the API takes
DEFAULT_IMPORT_MAX_BODY_BYTES = 64 * 1024 * 1024  # a device import (admin keys): about a million rows


def create_api(
    management: Management,
    metrics: CollectorRegistry,
    readiness: Readiness,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    import_max_body_bytes: int = DEFAULT_IMPORT_MAX_BODY_BYTES,
) -> FastAPI:
    """The API app. ``readiness`` returns named checks: all "ok" (or "degraded") means ready.
    Requests pass ``ApiGuard`` first: the key is checked before a body is read, and bodies are capped."""
    app = FastAPI(
        docs_url=None,  # served below from packaged assets: the default page loads Swagger UI from a CDN
        redoc_url=None,
        title="thingport management API",
        version=__version__,
        description="Products, devices, running status, history and the message log of a thingport server.",
        responses=COMMON_RESPONSES,
    )
    app.state.management = management
    app.state.metrics = metrics
    app.state.readiness = readiness
    app.add_middleware(ApiGuard, lookup=management.api_key_for, max_body_bytes=max_body_bytes,
                       import_max_body_bytes=import_max_body_bytes)
    install_error_handlers(app)
    for resource in (health, products, devices, device_files, messages, rules, subscriptions, alarms, keys):
        app.include_router(resource.router)

    # interactive docs, from local assets (works offline)
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="thingport management API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    if CONSOLE_DIR.is_dir():
        app.mount("/console", ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/console/")

    return app
