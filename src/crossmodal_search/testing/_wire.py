"""What the AWS fakes share on the wire: the raw body botocore reads, and JSON responses."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest, AWSResponse

#: Bedrock qualifies error codes in ``x-amzn-ErrorType`` (botocore keeps the part before ':').
_CORAL = "http://internal.amazon.com/coral/"


class RawBody(io.BytesIO):
    """The minimal ``urllib3`` response surface botocore reads as ``AWSResponse.raw``."""

    def stream(self, amt: int = 65536, decode_content: bool | None = None) -> Iterator[bytes]:
        while chunk := self.read(amt):
            yield chunk

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        return super().read(amt)


def request_bytes(request: AWSPreparedRequest) -> bytes:
    """The body botocore is sending, as bytes (it may be a str, bytes or a readable)."""
    raw: object = request.body
    if raw is not None and hasattr(raw, "read"):
        raw = raw.read()
    if isinstance(raw, str):
        return raw.encode("utf-8")
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    return b""


def json_response(
    url: str,
    status: int,
    payload: Mapping[str, Any],
    *,
    error_code: str | None = None,
    qualified: bool = True,
) -> AWSResponse:
    """A JSON response as botocore would receive it, with a fresh request id.

    ``error_code`` sets ``x-amzn-ErrorType``: ``Code:<namespace>`` as Bedrock sends it, or the
    bare code with ``qualified=False``.
    """
    from botocore.awsrequest import AWSResponse

    body = json.dumps(payload).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    if error_code is not None:
        headers["x-amzn-ErrorType"] = f"{error_code}:{_CORAL}" if qualified else error_code
    # AWSResponse wraps any mapping in HeadersDict; the stub's HTTPHeaders type is too narrow.
    return AWSResponse(url, status, headers, RawBody(body))  # type: ignore[arg-type]
