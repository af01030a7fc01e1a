"""The console's static files, served with headers that keep other sites from framing it.

index.html carries the same policy in a ``<meta>``, but ``frame-ancestors`` works only as a header: without
it any page could frame the console and trick an operator into clicking (clickjacking). The policy lets
the console's own script, style sheet, icon and API calls through and nothing else.
"""

from collections.abc import MutableMapping
from typing import Any

from starlette.responses import Response
from starlette.staticfiles import StaticFiles

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope: MutableMapping[str, Any]) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response
