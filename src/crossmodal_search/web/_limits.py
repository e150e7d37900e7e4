"""Request limits: the body size, enforced while the body streams in, and the HTTP refusals."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Room for the form fields / JSON keys around the image itself.
_FIELDS_ALLOWANCE = 64 * 1024


class HTTPProblem(Exception):
    """An HTTP-level refusal raised by the web layer; rendered as the JSON error body."""

    def __init__(self, status_code: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = type
        self.message = message


class PayloadTooLarge(HTTPProblem):
    """413: the body, the upload or the image's pixel count is over the limit."""

    def __init__(self, message: str) -> None:
        super().__init__(413, "PayloadTooLarge", message)


class UnsupportedImageType(HTTPProblem):
    """415: the upload is not an image in one of the accepted formats."""

    def __init__(self, message: str) -> None:
        super().__init__(415, "UnsupportedMediaType", message)


def body_limit(content_type: str, max_upload_bytes: int) -> int:
    """Largest request body accepted for a content type, given the image size limit."""
    if content_type.startswith("application/json"):
        # The image travels base64 encoded: 4 characters per 3 bytes.
        return 4 * math.ceil(max_upload_bytes / 3) + _FIELDS_ALLOWANCE
    if content_type.startswith("multipart/form-data"):
        return max_upload_bytes + _FIELDS_ALLOWANCE
    return _FIELDS_ALLOWANCE


class BodySizeLimitMiddleware:
    """Refuses request bodies over the limit with 413, counting bytes as they arrive.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    that streams past it (chunked, or lying about its length) is cut off as soon as it does, so
    an oversized upload never lands in memory or on disk in full.
    """

    def __init__(self, app: ASGIApp, *, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = body_limit(content_type, self.max_upload_bytes)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and _over(declared, limit):
            too_large = PayloadTooLarge(_too_large_message(declared.decode(), limit))
            await send_problem(send, too_large)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(_too_large_message(received, limit, at_least=True))
            return message

        await self.app(scope, limited_receive, send)


def _over(declared: bytes, limit: int) -> bool:
    # int() of thousands of digits raises ValueError (and would be slow): a number that long is
    # over any limit.
    return len(declared) > len(str(limit)) or int(declared) > limit


def _too_large_message(size: int | str, limit: int, *, at_least: bool = False) -> str:
    prefix = "more than " if at_least else ""
    if isinstance(size, str) and len(size) > 20:
        size = f"a {len(size)}-digit number of"
    return f"request body is {prefix}{size} bytes; the limit is {limit} bytes"


async def send_problem(send: Send, problem: HTTPProblem) -> None:
    """Answer with ``problem`` as the JSON error body, from ASGI middleware."""
    body = json.dumps({"error": {"type": problem.type, "message": problem.message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": problem.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
