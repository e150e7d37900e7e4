"""ASGI middleware around the whole application: security headers and the last-resort 500."""

from __future__ import annotations

import logging
import secrets

from starlette.datastructures import MutableHeaders

from crossmodal_search.web._limits import (
    ASGIApp,
    HTTPProblem,
    Message,
    Receive,
    Scope,
    Send,
    send_problem,
)

logger = logging.getLogger("crossmodal_search.web")

#: Headers every response carries unless it sets its own (the page sets a CSP for its code).
#: Nothing the API answers is a document to frame, to run code in, or to sniff as one.
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every response: pages, JSON, errors and images."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CatchAllMiddleware:
    """Answers an unexpected exception with a JSON 500 that says nothing about it.

    The full error, with its traceback, goes to the ``crossmodal_search.web`` log under a short
    reference that the answer quotes, so an operator can find it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            reference = error_reference()
            path = str(scope.get("path", ""))
            logger.error(
                "unexpected error %s answering %s %s",
                reference,
                scope.get("method", ""),
                path if len(path) <= 200 else path[:200] + "...",
                exc_info=exc,
            )
            if started:
                raise  # half an answer is out: the server can only drop the connection
            await send_problem(send, internal_error(reference))


def error_reference() -> str:
    """A short random reference for an error logged on the server."""
    return secrets.token_hex(6)


def internal_error(reference: str) -> HTTPProblem:
    """The 500 answered for an unexpected error logged under ``reference``."""
    return HTTPProblem(
        500,
        "InternalServerError",
        f"the server failed to answer; the details are in its log under {reference}",
    )
