"""What the AWS fakes share on the wire: clients, the raw body botocore reads, JSON responses."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

if TYPE_CHECKING:
    import boto3
    from botocore.awsrequest import AWSPreparedRequest, AWSResponse
    from botocore.config import Config
    from mypy_boto3_bedrock import BedrockClient
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

# Sessions are not thread-safe; clients built from them are. Clients get their own copy of the
# session's event hooks, so handlers attached to one client never reach another.
_SESSIONS: dict[str, boto3.session.Session] = {}
_SESSIONS_LOCK = threading.Lock()

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


@overload
def dummy_client(
    service: Literal["bedrock-runtime"], *, region_name: str, config: Config | None
) -> BedrockRuntimeClient: ...


@overload
def dummy_client(
    service: Literal["bedrock"], *, region_name: str, config: Config | None
) -> BedrockClient: ...


def dummy_client(
    service: Literal["bedrock-runtime", "bedrock"], *, region_name: str, config: Config | None
) -> BedrockRuntimeClient | BedrockClient:
    """A real boto3 client with dummy credentials whose botocore retries are off.

    ``config`` is merged over ``total_max_attempts=1``, so every retry a test sees comes from
    the SDK's own policy unless the test asks otherwise.
    """
    import boto3
    from botocore.config import Config

    # botocore's ``max_attempts`` counts *retries*; ``total_max_attempts`` counts requests.
    ours = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    merged = ours.merge(config) if config is not None else ours
    with _SESSIONS_LOCK:  # one session per region: its loader caches the service models
        session = _SESSIONS.get(region_name)
        if session is None:
            session = boto3.session.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name=region_name,
            )
            _SESSIONS[region_name] = session
        if service == "bedrock":
            return session.client("bedrock", config=merged)
        return session.client("bedrock-runtime", config=merged)
