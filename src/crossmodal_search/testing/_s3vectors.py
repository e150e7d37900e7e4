"""An in-process fake of the Amazon S3 Vectors service, answered at botocore's HTTP boundary.

``FakeS3Vectors`` registers a ``before-send`` handler on a real ``boto3`` ``s3vectors`` client, so
botocore's own parameter validation, JSON serialisation, error parsing and response parsing all
run; only the network hop is replaced. The fake keeps buckets, indexes and vectors in memory and
enforces the service limits server-side (as the S3 Vectors API reference documents them), so
that a client which forgets to split a batch or check metadata sizes fails here the way it
would on AWS::

    fake = FakeS3Vectors()
    client = fake.client()
    client.create_vector_bucket(vectorBucketName="shop-vectors")

Queries are exact (pre-filtered, like an ``ENHANCED`` index) and use the same filter semantics as
the local store. Options simulate a busy service: ``latency`` seconds per call, a token-bucket
``throttle`` (requests per second, answered with ``TooManyRequestsException``) and
:meth:`FakeS3Vectors.fail_next` to inject errors. Thread-safe.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import botocore.config
import numpy as np
from botocore.awsrequest import AWSResponse

from crossmodal_search.errors import InvalidFilterError
from crossmodal_search.stores._filter import compile_filter
from crossmodal_search.stores._limits import json_size as _json_size
from crossmodal_search.testing._wire import json_response, request_bytes

if TYPE_CHECKING:
    import boto3
    from botocore.awsrequest import AWSPreparedRequest
    from mypy_boto3_s3vectors import S3VectorsClient

__all__ = ["FakeRequest", "FakeS3Vectors"]

#: HTTP status of each S3 Vectors error code (botocore model; ValidationException has none: 400).
_ERROR_STATUS: dict[str, int] = {
    "ValidationException": 400,
    "KmsDisabledException": 400,
    "KmsInvalidKeyUsageException": 400,
    "KmsInvalidStateException": 400,
    "KmsNotFoundException": 400,
    "ServiceQuotaExceededException": 402,
    "AccessDeniedException": 403,
    "NotFoundException": 404,
    "RequestTimeoutException": 408,
    "ConflictException": 409,
    "TooManyRequestsException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}

MAX_PAYLOAD_BYTES = 20 * 1024 * 1024
MAX_PUT_VECTORS = 500
MAX_DELETE_VECTORS = 500
MAX_GET_VECTORS = 100
MAX_TOP_K = 100
MAX_DIMENSION = 4096
MAX_KEY_CHARS = 1024
MAX_FILTERABLE_BYTES = 2048
MAX_TOTAL_METADATA_BYTES = 40960
MAX_METADATA_KEYS = 50
MAX_NON_FILTERABLE_KEYS = 10
MAX_LIST_RESULTS = 1000
MAX_LIST_SEGMENTS = 16
MAX_TAGS = 50
#: A list_vectors page stops early once about this much data has been gathered.
LIST_PAGE_BYTES = 1024 * 1024

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_INDEX_ARN = re.compile(
    r"^arn:aws[-a-z0-9]*:s3vectors:[a-z0-9-]+:[0-9]{12}:bucket/([^/]+)/index/([^/]+)$"
)
_BUCKET_ARN = re.compile(r"^arn:aws[-a-z0-9]*:s3vectors:[a-z0-9-]+:[0-9]{12}:bucket/([^/]+)$")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_TAG_OPERATIONS = frozenset({"TagResource", "UntagResource", "ListTagsForResource"})


class _ServiceError(Exception):
    """Raised inside a handler; becomes an error response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _validation(message: str) -> _ServiceError:
    return _ServiceError("ValidationException", message)


def _snake(operation: str) -> str:
    """``PutVectors`` -> ``put_vectors``; snake-case names pass through."""
    return (
        operation if "_" in operation or operation.islower() else _CAMEL.sub("_", operation).lower()
    )


@dataclass
class _StoredVector:
    data: np.ndarray[Any, np.dtype[np.float32]]
    metadata: dict[str, Any]


@dataclass
class _Index:
    bucket: str
    name: str
    arn: str
    dimension: int
    distance_metric: str
    non_filterable: tuple[str, ...]
    creation_time: float
    vectors: dict[str, _StoredVector] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Bucket:
    name: str
    arn: str
    creation_time: float
    indexes: dict[str, _Index] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeRequest:
    """One request the fake received: boto3 operation name, parsed JSON body, size, user agent."""

    operation: str
    params: Mapping[str, Any]
    size: int
    user_agent: str = ""


class _RawBody:
    """The minimal ``urllib3`` response surface botocore reads (``stream``/``read``)."""

    def __init__(self, data: bytes) -> None:
        self._buffer = io.BytesIO(data)

    def stream(self, amt: int = 65536, decode_content: bool | None = None) -> Iterator[bytes]:
        while chunk := self._buffer.read(amt):
            yield chunk

    def read(self, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        return self._buffer.read(amt)

    def close(self) -> None:
        self._buffer.close()


class _TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = burst
        self.tokens = burst
        self.clock = clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


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
    ) -> None:
        if latency < 0:
            raise ValueError("latency must be >= 0")
        if throttle is not None and throttle <= 0:
            raise ValueError("throttle must be > 0 requests per second")
        self.latency = latency
        self.region = region
        self.account_id = account_id
        self.record_requests = record_requests
        self.calls: Counter[str] = Counter()
        self.requests: list[FakeRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.RLock()
        self._buckets: dict[str, _Bucket] = {}
        # Per operation, what the next calls do: None = answer normally, else (code, message).
        self._failures: dict[str, list[tuple[str, str] | None]] = {}
        self._throttle = (
            _TokenBucket(throttle, burst if burst is not None else max(1.0, throttle), clock)
            if throttle is not None
            else None
        )
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "CreateVectorBucket": self._create_vector_bucket,
            "GetVectorBucket": self._get_vector_bucket,
            "ListVectorBuckets": self._list_vector_buckets,
            "DeleteVectorBucket": self._delete_vector_bucket,
            "CreateIndex": self._create_index,
            "GetIndex": self._get_index,
            "ListIndexes": self._list_indexes,
            "DeleteIndex": self._delete_index,
            "PutVectors": self._put_vectors,
            "GetVectors": self._get_vectors,
            "ListVectors": self._list_vectors,
            "DeleteVectors": self._delete_vectors,
            "QueryVectors": self._query_vectors,
            "TagResource": self._tag_resource,
            "UntagResource": self._untag_resource,
            "ListTagsForResource": self._list_tags_for_resource,
        }

    def __repr__(self) -> str:
        with self._lock:
            indexes = sum(len(b.indexes) for b in self._buckets.values())
            return (
                f"FakeS3Vectors(buckets={len(self._buckets)}, indexes={indexes}, "
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
        if code not in _ERROR_STATUS:
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
            b = self._buckets.get(bucket)
            idx = b.indexes.get(index) if b else None
            return len(idx.vectors) if idx else 0

    def operation_requests(self, operation: str) -> list[FakeRequest]:
        """Recorded requests of one operation (boto3 or API name)."""
        op = _snake(operation)
        with self._lock:
            return [r for r in self.requests if r.operation == op]

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
            handler = self._handlers.get(api_name)
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
            except _ServiceError as exc:
                return self._error(exc.code, exc.message)

    def _pop_failure(self, op: str) -> tuple[str, str] | None:
        for name in (op, "*"):
            queue = self._failures.get(name)
            if queue:
                return queue.pop(0)
        return None

    @staticmethod
    def _error(code: str, message: str) -> tuple[int, dict[str, Any], str]:
        return _ERROR_STATUS.get(code, 400), {"message": message}, code

    # -- addressing -----------------------------------------------------------------------------

    def _bucket_arn(self, name: str) -> str:
        return f"arn:aws:s3vectors:{self.region}:{self.account_id}:bucket/{name}"

    def _bucket(self, params: Mapping[str, Any]) -> _Bucket:
        name = params.get("vectorBucketName")
        arn = params.get("vectorBucketArn")
        if (name is None) == (arn is None):
            raise _validation("Must specify either vectorBucketName or vectorBucketArn")
        if arn is not None:
            match = _BUCKET_ARN.match(str(arn))
            if match is None:
                raise _validation(f"Invalid vectorBucketArn: {arn}")
            name = match.group(1)
        bucket = self._buckets.get(str(name))
        if bucket is None:
            raise _ServiceError("NotFoundException", f"Vector bucket {name} does not exist")
        return bucket

    def _index(self, params: Mapping[str, Any]) -> _Index:
        arn = params.get("indexArn")
        if arn is not None:
            if "vectorBucketName" in params or "indexName" in params:
                raise _validation(
                    "Must specify either indexArn or both vectorBucketName and indexName"
                )
            match = _INDEX_ARN.match(str(arn))
            if match is None:
                raise _validation(f"Invalid indexArn: {arn}")
            bucket_name, index_name = match.group(1), match.group(2)
        else:
            if "vectorBucketName" not in params or "indexName" not in params:
                raise _validation(
                    "Must specify either indexArn or both vectorBucketName and indexName"
                )
            bucket_name, index_name = str(params["vectorBucketName"]), str(params["indexName"])
        bucket = self._buckets.get(bucket_name)
        if bucket is None:
            raise _ServiceError("NotFoundException", f"Vector bucket {bucket_name} does not exist")
        index = bucket.indexes.get(index_name)
        if index is None:
            raise _ServiceError(
                "NotFoundException", f"Index {index_name} does not exist in bucket {bucket_name}"
            )
        return index

    # -- buckets --------------------------------------------------------------------------------

    def _create_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        name = str(params.get("vectorBucketName", ""))
        if not _BUCKET_NAME.match(name):
            raise _validation(
                f"Invalid vector bucket name {name!r}: 3-63 characters of a-z, 0-9 and '-', "
                "starting and ending with a letter or digit"
            )
        if name in self._buckets:
            raise _ServiceError("ConflictException", f"Vector bucket {name} already exists")
        tags = self._check_tags(params.get("tags", {}))
        bucket = _Bucket(name, self._bucket_arn(name), time.time(), tags=tags)
        self._buckets[name] = bucket
        return {"vectorBucketArn": bucket.arn}

    def _get_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        return {
            "vectorBucket": {
                "vectorBucketName": bucket.name,
                "vectorBucketArn": bucket.arn,
                "creationTime": bucket.creation_time,
                "encryptionConfiguration": {"sseType": "AES256"},
            }
        }

    def _list_vector_buckets(self, params: dict[str, Any]) -> dict[str, Any]:
        prefix = str(params.get("prefix", ""))
        names = sorted(n for n in self._buckets if n.startswith(prefix))
        page, token = self._paginate(names, params, max_results=500)
        return {
            "vectorBuckets": [
                {
                    "vectorBucketName": n,
                    "vectorBucketArn": self._buckets[n].arn,
                    "creationTime": self._buckets[n].creation_time,
                }
                for n in page
            ],
            **({"nextToken": token} if token else {}),
        }

    def _delete_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        if bucket.indexes:
            raise _ServiceError(
                "ConflictException", f"Vector bucket {bucket.name} is not empty: delete its indexes"
            )
        del self._buckets[bucket.name]
        return {}

    # -- indexes --------------------------------------------------------------------------------

    def _create_index(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        name = str(params.get("indexName", ""))
        if not _INDEX_NAME.match(name):
            raise _validation(
                f"Invalid index name {name!r}: 3-63 characters of a-z, 0-9, '-' and '.', "
                "starting and ending with a letter or digit"
            )
        dimension = params.get("dimension")
        if not isinstance(dimension, int) or not 1 <= dimension <= MAX_DIMENSION:
            raise _validation(f"dimension must be between 1 and {MAX_DIMENSION}")
        metric = params.get("distanceMetric")
        if metric not in ("cosine", "euclidean"):
            raise _validation("distanceMetric must be 'cosine' or 'euclidean'")
        if params.get("dataType") != "float32":
            raise _validation("dataType must be 'float32'")
        config = params.get("metadataConfiguration") or {}
        non_filterable = list(config.get("nonFilterableMetadataKeys", []))
        if len(non_filterable) > MAX_NON_FILTERABLE_KEYS:
            raise _validation(
                f"nonFilterableMetadataKeys has {len(non_filterable)} keys; "
                f"the maximum is {MAX_NON_FILTERABLE_KEYS}"
            )
        for key in non_filterable:
            if not isinstance(key, str) or not 1 <= len(key) <= 63:
                raise _validation(f"Invalid non-filterable metadata key {key!r}")
        if len(set(non_filterable)) != len(non_filterable):
            raise _validation("nonFilterableMetadataKeys contains duplicates")
        if name in bucket.indexes:
            raise _ServiceError(
                "ConflictException", f"Index {name} already exists in bucket {bucket.name}"
            )
        index = _Index(
            bucket=bucket.name,
            name=name,
            arn=f"{bucket.arn}/index/{name}",
            dimension=dimension,
            distance_metric=str(metric),
            non_filterable=tuple(non_filterable),
            creation_time=time.time(),
            tags=self._check_tags(params.get("tags", {})),
        )
        bucket.indexes[name] = index
        return {"indexArn": index.arn}

    def _get_index(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        description: dict[str, Any] = {
            "vectorBucketName": index.bucket,
            "indexName": index.name,
            "indexArn": index.arn,
            "creationTime": index.creation_time,
            "dataType": "float32",
            "dimension": index.dimension,
            "distanceMetric": index.distance_metric,
            "encryptionConfiguration": {"sseType": "AES256"},
            "indexMode": "ENHANCED",
        }
        if index.non_filterable:
            description["metadataConfiguration"] = {
                "nonFilterableMetadataKeys": list(index.non_filterable)
            }
        return {"index": description}

    def _list_indexes(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        prefix = str(params.get("prefix", ""))
        names = sorted(n for n in bucket.indexes if n.startswith(prefix))
        page, token = self._paginate(names, params, max_results=500)
        return {
            "indexes": [
                {
                    "vectorBucketName": bucket.name,
                    "indexName": n,
                    "indexArn": bucket.indexes[n].arn,
                    "creationTime": bucket.indexes[n].creation_time,
                }
                for n in page
            ],
            **({"nextToken": token} if token else {}),
        }

    def _delete_index(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        del self._buckets[index.bucket].indexes[index.name]
        return {}

    # -- vectors --------------------------------------------------------------------------------

    def _put_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        vectors = params.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise _validation("vectors must contain at least 1 vector")
        if len(vectors) > MAX_PUT_VECTORS:
            raise _validation(
                f"vectors has {len(vectors)} items; the maximum per request is {MAX_PUT_VECTORS}"
            )
        staged: dict[str, _StoredVector] = {}
        for item in vectors:
            key = item.get("key")
            self._check_key(key)
            if key in staged:
                raise _validation(f"Duplicate key {key!r} in request")
            data = self._vector(item.get("data"), index, what=f"vector {key!r}")
            metadata = item.get("metadata", {})
            self._check_metadata(key, metadata, index)
            staged[key] = _StoredVector(data, dict(metadata))
        # All-or-nothing: only a fully valid request changes the index.
        index.vectors.update(staged)
        return {}

    def _get_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        keys = params.get("keys")
        if not isinstance(keys, list) or not keys:
            raise _validation("keys must contain at least 1 key")
        if len(keys) > MAX_GET_VECTORS:
            raise _validation(
                f"keys has {len(keys)} items; the maximum per request is {MAX_GET_VECTORS}"
            )
        for key in keys:
            self._check_key(key)
        wanted = set(keys)
        return_data = bool(params.get("returnData", False))
        return_metadata = bool(params.get("returnMetadata", False))
        # Like moto (and as far as the docs say), unknown keys are left out and the order is the
        # index's own, not the request's: callers must match results by key.
        return {
            "vectors": [
                self._describe(k, v, return_data, return_metadata)
                for k, v in index.vectors.items()
                if k in wanted
            ]
        }

    def _list_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        segment_count = params.get("segmentCount")
        segment_index = params.get("segmentIndex")
        if (segment_count is None) != (segment_index is None):
            raise _validation("segmentCount and segmentIndex must be specified together")
        if segment_count is not None and segment_index is not None:
            count, segment = int(segment_count), int(segment_index)
            if not 1 <= count <= MAX_LIST_SEGMENTS:
                raise _validation(f"segmentCount must be between 1 and {MAX_LIST_SEGMENTS}")
            if not 0 <= segment < count:
                raise _validation("segmentIndex must be less than segmentCount")
            keys = sorted(
                k for k in index.vectors if zlib.crc32(k.encode("utf-8")) % count == segment
            )
        else:
            keys = sorted(index.vectors)
        max_results = int(params.get("maxResults", 500))
        if not 1 <= max_results <= MAX_LIST_RESULTS:
            raise _validation(f"maxResults must be between 1 and {MAX_LIST_RESULTS}")
        start_after = self._decode_token(params.get("nextToken"), (segment_count, segment_index))
        start = 0
        if start_after is not None:
            # Keys are sorted, so resuming after the last returned key survives concurrent deletes.
            lo, hi = 0, len(keys)
            while lo < hi:
                mid = (lo + hi) // 2
                if keys[mid] <= start_after:
                    lo = mid + 1
                else:
                    hi = mid
            start = lo
        return_data = bool(params.get("returnData", False))
        return_metadata = bool(params.get("returnMetadata", False))
        out: list[dict[str, Any]] = []
        gathered = 0
        position = start
        while position < len(keys) and len(out) < max_results and gathered < LIST_PAGE_BYTES:
            key = keys[position]
            item = self._describe(key, index.vectors[key], return_data, return_metadata)
            out.append(item)
            gathered += _json_size(item)
            position += 1
        response: dict[str, Any] = {"vectors": out}
        if position < len(keys):
            response["nextToken"] = self._encode_token(
                keys[position - 1], (segment_count, segment_index)
            )
        return response

    def _delete_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        keys = params.get("keys")
        if not isinstance(keys, list) or not keys:
            raise _validation("keys must contain at least 1 key")
        if len(keys) > MAX_DELETE_VECTORS:
            raise _validation(
                f"keys has {len(keys)} items; the maximum per request is {MAX_DELETE_VECTORS}"
            )
        for key in keys:
            self._check_key(key)
        for key in keys:
            index.vectors.pop(key, None)
        return {}

    def _query_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        if "queryTexts" in params:
            raise _validation(
                "queryTexts needs full-text search, which FakeS3Vectors does not model"
            )
        top_k = params.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise _validation(f"topK must be between 1 and {MAX_TOP_K}")
        if "queryVector" not in params:
            raise _validation("queryVector is required")
        query = self._vector(params["queryVector"], index, what="queryVector")
        compiled = None
        if params.get("filter") is not None:
            try:
                compiled = compile_filter(params["filter"], non_filterable=index.non_filterable)
            except InvalidFilterError as exc:
                raise _validation(f"Invalid filter: {exc}") from exc
        candidates = [
            (k, v)
            for k, v in index.vectors.items()
            if compiled is None or compiled.matches(v.metadata)
        ]
        results: list[dict[str, Any]] = []
        if candidates:
            matrix = np.stack([v.data for _, v in candidates]).astype(np.float64)
            q = query.astype(np.float64)
            if index.distance_metric == "cosine":
                norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(q)
                distances = 1.0 - (matrix @ q) / norms
                # Identical vectors can come out a hair below 0 in floating point.
                np.clip(distances, 0.0, 2.0, out=distances)
            else:
                distances = np.linalg.norm(matrix - q, axis=1)
            # Ties are broken by key so results are deterministic.
            ranked = sorted(
                zip(distances.tolist(), range(len(candidates)), strict=True),
                key=lambda pair: (pair[0], candidates[pair[1]][0]),
            )
            for distance, i in ranked[:top_k]:
                key, stored = candidates[i]
                item: dict[str, Any] = {"key": key}
                if params.get("returnDistance"):
                    # The service computes and returns float32 distances.
                    item["distance"] = float(np.float32(distance))
                if params.get("returnMetadata"):
                    item["metadata"] = stored.metadata
                results.append(item)
        return {"vectors": results, "distanceMetric": index.distance_metric}

    # -- tags -----------------------------------------------------------------------------------

    def _tagged(self, arn: object) -> _Bucket | _Index:
        text = str(arn)
        index = _INDEX_ARN.match(text)
        if index is not None:
            return self._index({"indexArn": text})
        if _BUCKET_ARN.match(text) is None:
            raise _validation(f"Invalid resourceArn: {text}")
        return self._bucket({"vectorBucketArn": text})

    @staticmethod
    def _check_tags(tags: object) -> dict[str, str]:
        if not isinstance(tags, dict):
            raise _validation("tags must be a map of strings")
        if len(tags) > MAX_TAGS:
            raise _validation(f"{len(tags)} tags; a resource has at most {MAX_TAGS}")
        for k, v in tags.items():
            if not isinstance(k, str) or not 1 <= len(k) <= 128:
                raise _validation(f"Tag keys must be 1 to 128 characters: {k!r}")
            if not isinstance(v, str) or len(v) > 256:
                raise _validation(f"Tag values must be at most 256 characters: {v!r}")
        return dict(tags)

    def _tag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        resource = self._tagged(params.get("resourceArn"))
        merged = {**resource.tags, **self._check_tags(params.get("tags", {}))}
        resource.tags = self._check_tags(merged)
        return {}

    def _untag_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        resource = self._tagged(params.get("resourceArn"))
        for key in params.get("tagKeys", []):
            resource.tags.pop(key, None)
        return {}

    def _list_tags_for_resource(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"tags": dict(self._tagged(params.get("resourceArn")).tags)}

    # -- validation shared by handlers -----------------------------------------------------------

    @staticmethod
    def _check_key(key: object) -> None:
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
            raise _validation(f"Vector keys must be 1 to {MAX_KEY_CHARS} characters")

    @staticmethod
    def _vector(data: object, index: _Index, *, what: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        if not isinstance(data, dict) or not isinstance(data.get("float32"), list):
            raise _validation(f"{what}: data must be {{'float32': [...]}}")
        values = data["float32"]
        if len(values) != index.dimension:
            raise _validation(
                f"{what}: vector must have length {index.dimension}, got {len(values)}"
            )
        # botocore has already checked each value is a number (its float shape validation).
        try:
            wide = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _validation(f"{what}: vector values must be numbers") from exc
        if wide.ndim != 1:
            raise _validation(f"{what}: vector values must be numbers")
        if not np.isfinite(wide).all():
            raise _validation(f"{what}: vector contains NaN or Infinity")
        with np.errstate(over="ignore"):
            array = wide.astype(np.float32)
        if not np.isfinite(array).all():
            raise _validation(f"{what}: vector overflows float32")
        if index.distance_metric == "cosine" and not array.any():
            raise _validation(f"{what}: a zero vector is not allowed on a cosine index")
        return array

    @staticmethod
    def _check_metadata(key: str, metadata: object, index: _Index) -> None:
        if not isinstance(metadata, dict):
            raise _validation(f"vector {key!r}: metadata must be an object")
        if len(metadata) > MAX_METADATA_KEYS:
            raise _validation(
                f"vector {key!r}: {len(metadata)} metadata keys; the maximum is {MAX_METADATA_KEYS}"
            )
        for name, value in metadata.items():
            if not name:
                raise _validation(f"vector {key!r}: empty metadata key")
            values = value if isinstance(value, list) else [value]
            for v in values:
                if not isinstance(v, (str, int, float, bool)):
                    raise _validation(
                        f"vector {key!r}: metadata {name!r} must be a string, number, boolean "
                        "or a list of those"
                    )
                if isinstance(v, float) and not math.isfinite(v):
                    # botocore sends NaN/Infinity as bare tokens, which are not JSON.
                    raise _validation(f"vector {key!r}: metadata {name!r} is not valid JSON ({v})")
        if _json_size(metadata) > MAX_TOTAL_METADATA_BYTES:
            raise _validation(f"vector {key!r}: metadata exceeds {MAX_TOTAL_METADATA_BYTES} bytes")
        filterable = {k: v for k, v in metadata.items() if k not in index.non_filterable}
        if _json_size(filterable) > MAX_FILTERABLE_BYTES:
            raise _validation(
                f"vector {key!r}: filterable metadata exceeds {MAX_FILTERABLE_BYTES} bytes"
            )

    @staticmethod
    def _describe(
        key: str, stored: _StoredVector, return_data: bool, return_metadata: bool
    ) -> dict[str, Any]:
        item: dict[str, Any] = {"key": key}
        if return_data:
            item["data"] = {"float32": stored.data.tolist()}
        if return_metadata:
            item["metadata"] = stored.metadata
        return item

    # -- pagination -----------------------------------------------------------------------------

    @staticmethod
    def _encode_token(last: str, scope: tuple[object, object]) -> str:
        raw = json.dumps({"after": last, "scope": list(scope)}).encode("utf-8")
        return base64.urlsafe_b64encode(raw).decode("ascii")

    @staticmethod
    def _decode_token(token: object, scope: tuple[object, object]) -> str | None:
        if token is None:
            return None
        try:
            decoded = json.loads(base64.urlsafe_b64decode(str(token).encode("ascii")))
            after = decoded["after"]
            if decoded["scope"] != list(scope) or not isinstance(after, str):
                raise ValueError("scope")
        except (ValueError, KeyError, TypeError) as exc:
            raise _validation("Invalid nextToken") from exc
        return after

    def _paginate(
        self, names: list[str], params: Mapping[str, Any], *, max_results: int
    ) -> tuple[list[str], str | None]:
        limit = int(params.get("maxResults", max_results))
        if not 1 <= limit <= max_results:
            raise _validation(f"maxResults must be between 1 and {max_results}")
        after = self._decode_token(params.get("nextToken"), (None, None))
        if after is not None:
            names = [n for n in names if n > after]
        page = names[:limit]
        token = self._encode_token(page[-1], (None, None)) if len(names) > limit else None
        return page, token
