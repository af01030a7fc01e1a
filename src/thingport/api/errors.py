"""How the API answers a failure: ``{"error": {"code", "message", "field"}}`` with the status that fits,
whether the failure is a domain rule (core/errors.py), a request FastAPI could not validate, or a route or
method that does not exist."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from thingport.api import schemas as s
from thingport.core import errors

_ERRORS: list[tuple[type[errors.ThingportError], int, str]] = [
    (errors.SinkUnreachable, 400, "sink_unreachable"),
    (errors.NotFound, 404, "not_found"),
    (errors.Conflict, 409, "conflict"),
    (errors.ParamError, 400, "invalid"),
]
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": s.ErrorResponse, "description": "invalid input (the message names the field)"},
    401: {"model": s.ErrorResponse, "description": "no API key, or an unknown one"},
    403: {"model": s.ErrorResponse, "description": "the key's role may not do this"},
    404: {"model": s.ErrorResponse, "description": "no such product, device or key"},
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status, headers=headers)


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.field)


async def _on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    for kind, status, code in _ERRORS:
        if isinstance(exc, kind):
            return error_response(status, code, str(exc))
    return error_response(500, "internal", "internal error")


async def _on_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    return error_response(400, "invalid", f"{field or 'request'}: {first.get('msg', 'invalid')}", field)


async def _on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(errors.ThingportError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(StarletteHTTPException, _on_http)
