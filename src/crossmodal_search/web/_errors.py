"""Every error the application answers, as one JSON shape (``ErrorResponse``).

Client errors (4xx) say what was wrong with the request. Server and service errors (5xx) say
nothing about the server's inside: the full error goes to the ``crossmodal_search.web`` log,
and the answer quotes the AWS request id (502) or a reference to that log line (500).
"""

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
from crossmodal_search.web._middleware import error_reference
from crossmodal_search.web._models import ErrorResponse
from crossmodal_search.web._requests import describe_errors

logger = logging.getLogger("crossmodal_search.web")

#: Longest error message answered; longer ones (echoing a huge input) are cut.
MAX_MESSAGE_CHARS = 1000

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
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 3] + "..."
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
    name = type(exc).__name__
    if isinstance(exc, InvalidInputError):
        return error_response(422, name, str(exc))
    if isinstance(exc, ServiceError):
        # AWS's own message can name accounts, ARNs, models and quotas: it stays in the log.
        logger.warning(
            "%s during %s (AWS code %s, request id %s): %s",
            name,
            request.url.path,
            exc.code or "-",
            exc.request_id or "-",
            exc,
        )
        request_id = f"AWS request id {exc.request_id}" if exc.request_id else "no AWS request id"
        return error_response(
            502, name, f"the embedding or vector service failed ({request_id}); see the server log"
        )
    if isinstance(exc, StoreLockedError):
        logger.warning("%s during %s: %s", name, request.url.path, exc)
        return error_response(
            503, name, "the store is being rewritten; try again in a moment", {"Retry-After": "1"}
        )
    reference = error_reference()
    logger.error("%s %s during %s: %s", name, reference, request.url.path, exc, exc_info=exc)
    return error_response(
        500, name, f"the server cannot answer; the details are in its log under {reference}"
    )
