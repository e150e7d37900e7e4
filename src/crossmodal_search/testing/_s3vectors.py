"""An in-process fake of the Amazon S3 Vectors service, answered at botocore's HTTP boundary.

``FakeS3Vectors`` registers a ``before-send`` handler on a real ``boto3`` ``s3vectors`` client, so
botocore's own parameter validation, JSON serialisation, error parsing and response parsing all
run; only the network hop is replaced. The fake keeps buckets, indexes and vectors in memory and
enforces the service limits server-side (as the S3 Vectors API reference documents them), so
that a client which forgets to split a batch or check metadata sizes fails here the way it would
on AWS::

    fake = FakeS3Vectors()
    client = fake.client()
    client.create_vector_bucket(vectorBucketName="shop-vectors")

Queries are exact and use the same filter semantics as the local store. Index modes, text search
configurations and full-text/hybrid queries (BM25, Reciprocal Rank Fusion) follow the service's
rules (``testing/_s3vectors_text.py`` says which are documented and which assumed); a bucket's
default mode follows its creation time on :attr:`FakeS3Vectors.wall_clock`. Options simulate a
busy service: ``latency`` seconds per call, a token-bucket ``throttle`` (requests per second,
answered with ``TooManyRequestsException``) and :meth:`FakeS3Vectors.fail_next` to inject errors;
:meth:`FakeS3Vectors.hold_text_builds` keeps new text configurations ``BUILDING``. Thread-safe.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import botocore.config
from botocore.awsrequest import AWSResponse

from crossmodal_search.testing._s3vectors_model import (
    ERROR_STATUS,
    MAX_PAYLOAD_BYTES,
    MAX_TOP_K,
    ServiceError,
    TokenBucket,
)
from crossmodal_search.testing._s3vectors_resources import Resources
from crossmodal_search.testing._wire import json_response, request_bytes

if TYPE_CHECKING:
    import boto3
    from botocore.awsrequest import AWSPreparedRequest
    from mypy_boto3_s3vectors import S3VectorsClient

__all__ = ["MAX_TOP_K", "FakeRequest", "FakeS3Vectors"]

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_TAG_OPERATIONS = frozenset({"TagResource", "UntagResource", "ListTagsForResource"})


def _snake(operation: str) -> str:
    """``PutVectors`` -> ``put_vectors``; snake-case names pass through."""
    return (
        operation if "_" in operation or operation.islower() else _CAMEL.sub("_", operation).lower()
    )


@dataclass(frozen=True)
class FakeRequest:
    """One request the fake received: boto3 operation name, parsed JSON body, size, user agent."""

    operation: str
    params: Mapping[str, Any]
    size: int
    user_agent: str = ""


class FakeS3Vectors:
    """In-memory S3 Vectors service for tests, attached to real boto3 clients via ``before-send``.

    Args:
        latency: seconds each call takes (slept outside the lock, so parallel calls overlap).
        throttle: requests per second accepted before answering ``TooManyRequestsException``
            (token bucket); ``None`` disables throttling.
        burst: token-bucket capacity (default: ``max(1, throttle)``).
        region: region used in ARNs.
        account_id: 12-digit account used in ARNs.
        record_requests: keep every request in :attr:`requests` (turn off for very large writes).
        clock: time source of the throttle (tests pass a manual clock for determinism).
        wall_clock: the time buckets and indexes are created at (seconds since the epoch). A
            bucket created before 30 Sep 2026 makes ``CLASSIC`` indexes, a later one ``ENHANCED``
            ones; pass (or later assign) a clock in the past to test code against old buckets.
        query_page_size: split ``QueryVectors`` results into pages of this many, joined by
            ``nextToken`` (the service pages when ``topK`` exceeds its page size); None: one page.

    Attributes:
        calls: ``Counter`` of requests received per boto3 operation name (``"put_vectors"``),
            including throttled and failed ones.
        requests: every request received, in order (:class:`FakeRequest`).
        max_in_flight: the highest number of requests that were being answered at once.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        throttle: float | None = None,
        burst: float | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        record_requests: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        query_page_size: int | None = None,
    ) -> None:
        if latency < 0:
            raise ValueError("latency must be >= 0")
        if throttle is not None and throttle <= 0:
            raise ValueError("throttle must be > 0 requests per second")
        if query_page_size is not None and query_page_size < 1:
            raise ValueError("query_page_size must be >= 1")
        self.latency = latency
        self.region = region
        self.account_id = account_id
        self.record_requests = record_requests
        self.wall_clock = wall_clock
        self.query_page_size = query_page_size
        self.calls: Counter[str] = Counter()
        self.requests: list[FakeRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.RLock()
        self._resources = Resources(self)
        # Per operation, what the next calls do: None = answer normally, else (code, message).
        self._failures: dict[str, list[tuple[str, str] | None]] = {}
        self._throttle = (
            TokenBucket(throttle, burst if burst is not None else max(1.0, throttle), clock)
            if throttle is not None
            else None
        )

    def __repr__(self) -> str:
        with self._lock:
            indexes = sum(len(b.indexes) for b in self._resources.buckets.values())
            return (
                f"FakeS3Vectors(buckets={len(self._resources.buckets)}, indexes={indexes}, "
                f"calls={sum(self.calls.values())}, latency={self.latency})"
            )

    # -- wiring ---------------------------------------------------------------------------------

    def client(
        self, *, config: botocore.config.Config | None = None, region_name: str | None = None
    ) -> S3VectorsClient:
        """Build a ``boto3`` ``s3vectors`` client with dummy credentials, attached to this fake.

        The client gets the SDK's botocore config (user agent tagged) with botocore's own retries
        off (``total_max_attempts=1``), so retries happen only in
        :func:`crossmodal_search._aws.call_aws` and tests can count them exactly.
        """
        import boto3

        from crossmodal_search._aws import sdk_config

        single_attempt = botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"}
        )
        client = boto3.client(
            "s3vectors",
            region_name=region_name or self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            config=sdk_config(config).merge(single_attempt),
        )
        return self.attach(client)

    def session(self, *, region_name: str | None = None) -> boto3.Session:
        """A ``boto3.Session`` with dummy credentials whose ``s3vectors`` clients use this fake.

        For code that builds its own client from a session, e.g.
        ``S3VectorsStore(bucket, index, session=fake.session())``.
        """
        import boto3
        import botocore.session

        core = botocore.session.get_session()
        core.set_credentials("testing", "testing", "testing")
        core.register(
            "before-send.s3vectors",
            self._on_before_send,  # type: ignore[arg-type]  # returns a response, see attach()
            unique_id=f"crossmodal-search-fake-s3vectors-{id(self)}",
        )
        return boto3.Session(botocore_session=core, region_name=region_name or self.region)

    def attach(self, client: S3VectorsClient) -> S3VectorsClient:
        """Answer every request of ``client`` from this fake (nothing leaves the process)."""
        # botocore-stubs types handlers as returning None; before-send handlers return a response.
        client.meta.events.register(
            "before-send.s3vectors",
            self._on_before_send,  # type: ignore[arg-type]
            unique_id=f"crossmodal-search-fake-s3vectors-{id(self)}",
        )
        return client

    def fail_next(
        self,
        operation: str,
        code: str = "ServiceUnavailableException",
        times: int = 1,
        *,
        after: int = 0,
        message: str | None = None,
    ) -> None:
        """Answer ``times`` calls of ``operation`` with the error ``code``.

        Args:
            operation: a boto3 name (``"put_vectors"``) or an API name (``"PutVectors"``);
                ``"*"`` matches every operation.
            code: an S3 Vectors error code, e.g. ``"TooManyRequestsException"``.
            times: how many consecutive calls fail.
            after: let this many calls of ``operation`` succeed first.
            message: the error message (default: ``"injected <code>"``).
        """
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown S3 Vectors error code {code!r}")
        if times < 1 or after < 0:
            raise ValueError("times must be >= 1 and after >= 0")
        op = "*" if operation == "*" else _snake(operation)
        failure = (code, message or f"injected {code}")
        with self._lock:
            self._failures.setdefault(op, []).extend([None] * after + [failure] * times)

    # -- inspection helpers for tests ----------------------------------------------------------

    def vector_count(self, bucket: str, index: str) -> int:
        """Number of vectors stored in ``bucket``/``index`` (0 if it does not exist)."""
        with self._lock:
            b = self._resources.buckets.get(bucket)
            idx = b.indexes.get(index) if b else None
            return len(idx.vectors) if idx else 0

    def operation_requests(self, operation: str) -> list[FakeRequest]:
        """Recorded requests of one operation (boto3 or API name)."""
        op = _snake(operation)
        with self._lock:
            return [r for r in self.requests if r.operation == op]

    def hold_text_builds(self) -> None:
        """Keep text search configurations added from now on ``BUILDING`` (not serving queries)
        until :meth:`finish_text_builds`, as S3 Vectors does while it backfills them."""
        with self._lock:
            self._resources.hold_builds = True

    def finish_text_builds(self) -> None:
        """Make every ``BUILDING`` text search configuration ``ACTIVE`` and stop holding them."""
        with self._lock:
            self._resources.hold_builds = False
            for bucket in self._resources.buckets.values():
                for index in bucket.indexes.values():
                    for config in index.text_configs.values():
                        config.status = "ACTIVE"

    # -- HTTP boundary --------------------------------------------------------------------------

    def _on_before_send(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse:
        event_name = str(kwargs.get("event_name", ""))
        api_name = event_name.rsplit(".", 1)[-1]
        op = _snake(api_name)
        raw_body = request_bytes(request)
        size = len(raw_body)
        try:
            params: dict[str, Any] = json.loads(raw_body) if raw_body else {}
        except ValueError:
            params = {}
        if api_name in _TAG_OPERATIONS:
            # The resource ARN travels in the path (/tags/{resourceArn}), tag keys in the query.
            url = urlsplit(request.url)
            params["resourceArn"] = unquote(url.path.split("/tags/", 1)[-1])
            keys = parse_qs(url.query).get("tagKeys")
            if keys is not None:
                params["tagKeys"] = keys
        with self._lock:
            self.calls[op] += 1
            if self.record_requests:
                agent = request.headers.get("User-Agent", b"")
                if isinstance(agent, bytes):
                    agent = agent.decode("utf-8", "replace")
                self.requests.append(FakeRequest(op, params, size, str(agent)))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            status, payload, code = self._answer(api_name, op, params, size)
        finally:
            with self._lock:
                self._in_flight -= 1
        return json_response(request.url, status, payload, error_code=code, qualified=False)

    def _answer(
        self, api_name: str, op: str, params: dict[str, Any], size: int
    ) -> tuple[int, dict[str, Any], str | None]:
        with self._lock:
            if self._throttle is not None and not self._throttle.take():
                return self._error("TooManyRequestsException", "Request rate exceeded")
            injected = self._pop_failure(op)
            if injected is not None:
                return self._error(*injected)
            handler = self._resources.handlers.get(api_name)
            if handler is None:
                return self._error(
                    "ValidationException", f"FakeS3Vectors does not implement {api_name}"
                )
            if size > MAX_PAYLOAD_BYTES:
                return self._error(
                    "ValidationException",
                    f"Request payload of {size} bytes exceeds the maximum of {MAX_PAYLOAD_BYTES}",
                )
            try:
                return 200, handler(params), None
            except ServiceError as exc:
                return self._error(exc.code, exc.message)

    def _pop_failure(self, op: str) -> tuple[str, str] | None:
        for name in (op, "*"):
            queue = self._failures.get(name)
            if queue:
                return queue.pop(0)
        return None

    @staticmethod
    def _error(code: str, message: str) -> tuple[int, dict[str, Any], str]:
        return ERROR_STATUS.get(code, 400), {"message": message}, code
