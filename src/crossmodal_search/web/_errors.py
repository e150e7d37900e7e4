"""Every error the application answers, as one JSON shape (``ErrorResponse``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossmodal_search.errors import (
    CrossmodalSearchError,
    InvalidInputError,
    ServiceError,
    StoreLockedError,
)
from crossmodal_search.web._limits import HTTPProblem
from crossmodal_search.web._models import ErrorResponse
from crossmodal_search.web._requests import describe_errors

logger = logging.getLogger(__name__)

_HTTP_TYPES = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


def error_response(
    status: int, type_: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every refusal uses."""
    body = ErrorResponse.model_validate({"error": {"type": type_, "message": message}})
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception the handlers raise to its JSON answer."""
    app.add_exception_handler(HTTPProblem, _problem)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(CrossmodalSearchError, _ours)  # type: ignore[arg-type]


async def _problem(request: Request, exc: HTTPProblem) -> Response:
    return error_response(exc.status_code, exc.type, exc.message)


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    type_ = _HTTP_TYPES.get(exc.status_code, f"HTTP{exc.status_code}")
    return error_response(exc.status_code, type_, str(exc.detail), exc.headers)


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    return error_response(422, "InvalidInputError", describe_errors(exc.errors()))


async def _ours(request: Request, exc: CrossmodalSearchError) -> Response:
    if isinstance(exc, InvalidInputError):
        return error_response(422, type(exc).__name__, str(exc))
    if isinstance(exc, ServiceError):
        logger.warning("service error during %s: %s", request.url.path, exc)
        return error_response(502, type(exc).__name__, str(exc))
    if isinstance(exc, StoreLockedError):
        return error_response(503, type(exc).__name__, str(exc), {"Retry-After": "1"})
    logger.error("%s during %s: %s", type(exc).__name__, request.url.path, exc)
    return error_response(500, type(exc).__name__, str(exc))
