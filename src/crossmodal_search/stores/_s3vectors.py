"""``S3VectorsStore``: the :class:`VectorStore` contract on Amazon S3 Vectors.

Everything a request could be rejected for is checked before the first call (dimension, NaN,
zero vectors on cosine, key lengths, metadata types and byte sizes, filters, ``top_k``), with the
same helpers ``LocalVectorStore`` uses, so both stores fail the same way on the same input.

Writes are split to the service limits: at most 500 vectors **and** at most ``max_request_bytes``
of JSON per ``PutVectors`` call (500 vectors of 3072 dimensions are about 33 MiB, over the 20 MiB
request limit), sent with bounded parallelism. Every call goes through
:func:`crossmodal_search._aws.call_aws`, the single retry layer.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from crossmodal_search._aws import (
    DEFAULT_RETRY_POLICY,
    AdaptiveLimiter,
    RetryPolicy,
    build_client,
    call_aws,
)
from crossmodal_search._types import DistanceMetric, Filter
from crossmodal_search.errors import (
    ConfigurationError,
    IndexMismatchError,
    InvalidInputError,
    PartialWriteError,
    ResourceNotFoundError,
    ServiceError,
)
from crossmodal_search.stores._filter import normalize_filter
from crossmodal_search.stores._limits import (
    DEFAULT_NON_FILTERABLE_KEYS,
    StoreLimits,
    validate_batch,
    validate_bucket_name,
    validate_dimension,
    validate_distance_metric,
    validate_index_name,
    validate_non_filterable_keys,
    validate_query,
    validate_query_matrix,
)
from crossmodal_search.stores._models import GetResult, QueryMatch, VectorRecord

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_s3vectors import S3VectorsClient
    from mypy_boto3_s3vectors.type_defs import (
        GetOutputVectorTypeDef,
        IndexTypeDef,
        ListOutputVectorTypeDef,
        PutInputVectorTypeDef,
    )

__all__ = ["S3VectorsStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Service limits per call (S3 Vectors "Limitations and restrictions" page).
MAX_PUT_BATCH = 500
MAX_DELETE_BATCH = 500
MAX_GET_BATCH = 100
MAX_LIST_SEGMENTS = 16
_SERVICE_MAX_REQUEST_BYTES = 20 * 1024 * 1024
#: The request payload limit is 20 MiB; stay one MiB under it for the JSON envelope and headers.
DEFAULT_MAX_REQUEST_BYTES = 19 * 1024 * 1024
#: JSON bytes of the request around the ``vectors`` list (names, brackets), generously rounded.
_ENVELOPE_BYTES = 1024


class S3VectorsStore:
    """A vector index in Amazon S3 Vectors, behind the same contract as ``LocalVectorStore``.

    Example:
        >>> store = S3VectorsStore("shop-vectors", "products", dimension=1024)  # doctest: +SKIP
        >>> store.put([VectorRecord.create("sku-1", vec, {"color": "red"})])   # doctest: +SKIP
        >>> store.query(vec, top_k=5, filter={"color": "red"})                  # doctest: +SKIP

    Args:
        bucket: vector bucket name (3-63 of ``a-z 0-9 -``).
        index: index name (3-63 of ``a-z 0-9 - .``).
        client: an ``s3vectors`` boto3 client. Takes precedence over ``session``/``region_name``/
            ``config``; it keeps its own botocore retry settings.
        session: boto3 session used to build the client when ``client`` is not given.
        region_name: region of the client the store builds.
        config: botocore ``Config`` merged under the SDK's (one botocore attempt, user agent).
        dimension: vector length. ``None`` reads it from the existing index (an error if the index
            does not exist).
        distance_metric: ``"cosine"`` (distance = 1 - cosine similarity) or ``"euclidean"`` (L2).
            An existing index with another metric raises :class:`IndexMismatchError`.
        non_filterable_metadata_keys: metadata keys stored but not filterable, declared when the
            index is created (at most 10). Defaults to long text fields so a product description
            never breaks the 2 KB filterable limit. When an existing index is reused, keys passed
            explicitly must match the index's; with the default, the index's keys are adopted.
        create: create the bucket and index when missing (an existing bucket is reused).
        limits: limits checked before each call; the defaults are the S3 Vectors limits.
        retry_policy: retries of throttled and transient errors (the single retry layer).
        max_concurrency: parallel requests of one ``put``/``get``/``delete``/segmented scan,
            at most. A throttling answer (``TooManyRequestsException``) halves the requests this
            store lets run at once and successes grow it back (:attr:`concurrency_limit`), so a
            throttled index gets fewer, not more, requests while the retries back off.
        max_request_bytes: upper bound of one ``PutVectors`` request body, in bytes.

    Raises:
        IndexMismatchError: the existing index has another dimension, metric or non-filterable
            keys.
        ResourceNotFoundError: the index does not exist and ``create`` is False.
        ConfigurationError: ``dimension`` is None and the index does not exist.
        InvalidInputError: an invalid name, dimension, metric or non-filterable key list.
    """

    def __init__(
        self,
        bucket: str,
        index: str,
        *,
        client: S3VectorsClient | None = None,
        session: boto3.Session | None = None,
        region_name: str | None = None,
        config: Config | None = None,
        dimension: int | None = None,
        distance_metric: DistanceMetric = "cosine",
        non_filterable_metadata_keys: Iterable[str] = DEFAULT_NON_FILTERABLE_KEYS,
        create: bool = True,
        limits: StoreLimits | None = None,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        max_concurrency: int = 4,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        self._limits = limits or StoreLimits()
        self._bucket = validate_bucket_name(bucket)
        self._index = validate_index_name(index)
        metric = validate_distance_metric(distance_metric)
        explicit_keys = non_filterable_metadata_keys is not DEFAULT_NON_FILTERABLE_KEYS
        requested_keys = validate_non_filterable_keys(non_filterable_metadata_keys, self._limits)
        if dimension is not None:
            dimension = validate_dimension(dimension, self._limits)
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ConfigurationError("max_concurrency must be an int >= 1")
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be >= 1")
        if not 64 * 1024 <= max_request_bytes <= _SERVICE_MAX_REQUEST_BYTES:
            raise ConfigurationError(
                "max_request_bytes must be between 64 KiB and 20 MiB (the service limit)"
            )
        self._retry_policy = retry_policy
        self._max_concurrency = max_concurrency
        self._limiter = AdaptiveLimiter(max_concurrency)
        self._max_request_bytes = max_request_bytes
        self._client: S3VectorsClient = (
            client
            if client is not None
            else build_client("s3vectors", session=session, region_name=region_name, config=config)
        )

        existing = self._describe_index(must_exist=not create)
        if existing is None:
            if dimension is None:
                raise ConfigurationError(
                    f"S3 Vectors index {self._bucket}/{self._index} does not exist, so its "
                    "dimension cannot be read: pass dimension= to create it"
                )
            existing = self._create(dimension, metric, requested_keys)
        self._dimension, self._metric, self._non_filterable = self._check_compatible(
            existing, dimension, metric, requested_keys, explicit_keys=explicit_keys
        )

    # -- properties -----------------------------------------------------------------------------

    @property
    def bucket(self) -> str:
        """The vector bucket name."""
        return self._bucket

    @property
    def index(self) -> str:
        """The vector index name."""
        return self._index

    @property
    def client(self) -> S3VectorsClient:
        """The boto3 ``s3vectors`` client in use."""
        return self._client

    @property
    def dimension(self) -> int:
        """Length of every vector in the index."""
        return self._dimension

    @property
    def distance_metric(self) -> DistanceMetric:
        """``"cosine"`` (distance = 1 - cosine similarity) or ``"euclidean"`` (L2 distance)."""
        return self._metric

    @property
    def non_filterable_metadata_keys(self) -> frozenset[str]:
        """Metadata keys the index stores but cannot filter on."""
        return self._non_filterable

    @property
    def limits(self) -> StoreLimits:
        """Limits checked before every call."""
        return self._limits

    @property
    def concurrency_limit(self) -> int:
        """Requests this store lets run at once now: ``max_concurrency`` until throttled."""
        return self._limiter.limit

    def __repr__(self) -> str:
        return (
            f"S3VectorsStore(bucket={self._bucket!r}, index={self._index!r}, "
            f"dimension={self._dimension}, distance_metric={self._metric!r})"
        )

    def close(self) -> None:
        """Nothing to release (the boto3 client belongs to the caller); kept for parity."""

    def __enter__(self) -> S3VectorsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- index setup ----------------------------------------------------------------------------

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        return call_aws(
            f"s3vectors:{operation}", fn, policy=self._retry_policy, limiter=self._limiter
        )

    def _describe_index(self, *, must_exist: bool) -> IndexTypeDef | None:
        try:
            response = self._call(
                "GetIndex",
                lambda: self._client.get_index(
                    vectorBucketName=self._bucket, indexName=self._index
                ),
            )
        except ResourceNotFoundError as exc:
            if not must_exist:
                return None
            raise ResourceNotFoundError(
                f"S3 Vectors index {self._bucket}/{self._index} does not exist "
                "(create=False): create it or pass create=True",
                code=exc.code,
                request_id=exc.request_id,
                status_code=exc.status_code,
                operation=exc.operation,
            ) from exc
        return response["index"]

    def _create(
        self, dimension: int, metric: DistanceMetric, non_filterable: frozenset[str]
    ) -> IndexTypeDef:
        keys = sorted(non_filterable)
        request: dict[str, Any] = {
            "vectorBucketName": self._bucket,
            "indexName": self._index,
            "dataType": "float32",
            "dimension": dimension,
            "distanceMetric": metric,
        }
        if keys:  # older API versions required 1-10 keys when the structure is present
            request["metadataConfiguration"] = {"nonFilterableMetadataKeys": keys}

        def create_index() -> None:
            self._call("CreateIndex", lambda: self._client.create_index(**request))

        try:
            # The index first: an existing bucket then needs no CreateVectorBucket permission.
            try:
                create_index()
            except ResourceNotFoundError:
                self._create_bucket()
                create_index()
        except ServiceError as exc:
            if exc.code != "ConflictException":
                raise
            # Created concurrently by someone else: describe it and check compatibility.
            described = self._describe_index(must_exist=True)
            assert described is not None
            return described
        logger.info(
            "created S3 Vectors index %s/%s (dimension=%d, metric=%s, non-filterable=%s)",
            self._bucket,
            self._index,
            dimension,
            metric,
            keys,
        )
        # What we asked for; the create call's reply does not describe the index.
        index: IndexTypeDef = {  # type: ignore[typeddict-item]  # creationTime/arn not needed
            "vectorBucketName": self._bucket,
            "indexName": self._index,
            "dataType": "float32",
            "dimension": dimension,
            "distanceMetric": metric,
            "metadataConfiguration": {"nonFilterableMetadataKeys": keys},
        }
        return index

    def _create_bucket(self) -> None:
        try:
            self._call(
                "CreateVectorBucket",
                lambda: self._client.create_vector_bucket(vectorBucketName=self._bucket),
            )
            logger.info("created S3 vector bucket %s", self._bucket)
        except ServiceError as exc:
            if exc.code != "ConflictException":
                raise
            logger.debug("S3 vector bucket %s was created concurrently; reusing it", self._bucket)

    def _check_compatible(
        self,
        index: IndexTypeDef,
        dimension: int | None,
        metric: DistanceMetric,
        requested_keys: frozenset[str],
        *,
        explicit_keys: bool,
    ) -> tuple[int, DistanceMetric, frozenset[str]]:
        name = f"S3 Vectors index {self._bucket}/{self._index}"
        found_dim = int(index["dimension"])
        found_metric = validate_distance_metric(index["distanceMetric"])
        config = index.get("metadataConfiguration")
        found_keys = frozenset(config.get("nonFilterableMetadataKeys", ()) if config else ())
        if dimension is not None and found_dim != dimension:
            raise IndexMismatchError(
                f"{name} has dimension {found_dim}, but dimension={dimension} was requested; "
                "use another index name or the index's dimension"
            )
        if found_metric != metric:
            raise IndexMismatchError(
                f"{name} uses the {found_metric!r} distance metric, but {metric!r} was "
                "requested; an index's metric cannot be changed"
            )
        if found_keys != requested_keys:
            if explicit_keys:
                raise IndexMismatchError(
                    f"{name} declares non-filterable metadata keys {sorted(found_keys)}, but "
                    f"{sorted(requested_keys)} were requested; they cannot be changed after "
                    "creation (omit the argument to adopt the index's keys)"
                )
            logger.info("%s declares non-filterable keys %s; using them", name, sorted(found_keys))
        return found_dim, found_metric, found_keys

    # -- writes ---------------------------------------------------------------------------------

    def put(self, records: Iterable[VectorRecord]) -> None:
        """Insert or overwrite records (upsert), validating every record before the first call.

        Raises:
            InvalidInputError: a bad key, vector or metadata value (nothing is written).
            DimensionMismatchError: a vector of another length (nothing is written).
            MetadataLimitError: metadata over an S3 Vectors limit, naming the record and key.
            PartialWriteError: some batches were written and others failed after retries;
                ``written`` and ``failed`` list the keys, the cause is chained.
            ServiceError: the write failed and no batch was written.
        """
        batch = validate_batch(
            records,
            dimension=self._dimension,
            distance_metric=self._metric,
            non_filterable=self._non_filterable,
            limits=self._limits,
        )
        if not batch.keys:
            return
        rows = batch.vectors.astype(np.float32).tolist()  # plain Python floats for botocore
        items: list[PutInputVectorTypeDef] = []
        for key, row, metadata in zip(batch.keys, rows, batch.metadata, strict=True):
            item: PutInputVectorTypeDef = {"key": key, "data": {"float32": row}}
            if metadata:
                item["metadata"] = metadata
            items.append(item)
        chunks = self._split_put(items)
        logger.debug(
            "put_vectors: %d vectors in %d requests to %s/%s",
            len(items),
            len(chunks),
            self._bucket,
            self._index,
        )

        def send(chunk: list[PutInputVectorTypeDef]) -> None:
            self._call(
                "PutVectors",
                lambda: self._client.put_vectors(
                    vectorBucketName=self._bucket, indexName=self._index, vectors=chunk
                ),
            )

        self._run_batches(
            "put",
            [[item["key"] for item in chunk] for chunk in chunks],
            [functools.partial(send, chunk) for chunk in chunks],
        )

    def _split_put(self, items: list[PutInputVectorTypeDef]) -> list[list[PutInputVectorTypeDef]]:
        """Greedy batches of <= 500 vectors and <= max_request_bytes of JSON each."""
        budget = self._max_request_bytes - _ENVELOPE_BYTES
        chunks: list[list[PutInputVectorTypeDef]] = []
        current: list[PutInputVectorTypeDef] = []
        size = 0
        for item in items:
            # botocore serialises with json.dumps defaults (", " separators, ASCII escapes).
            item_bytes = len(json.dumps(item)) + 2
            if current and (len(current) >= MAX_PUT_BATCH or size + item_bytes > budget):
                chunks.append(current)
                current, size = [], 0
            current.append(item)
            size += item_bytes
        if current:
            chunks.append(current)
        return chunks

    def delete(self, keys: Sequence[str]) -> None:
        """Delete records; unknown keys are ignored.

        Raises:
            InvalidInputError: a key that is not a string (nothing deleted).
            PartialWriteError: some batches were deleted and others failed after retries.
            ServiceError: the delete failed and no batch was applied.
        """
        unique = self._check_keys(keys)
        if not unique:
            return
        chunks = [unique[i : i + MAX_DELETE_BATCH] for i in range(0, len(unique), MAX_DELETE_BATCH)]

        def send(chunk: list[str]) -> None:
            self._call(
                "DeleteVectors",
                lambda: self._client.delete_vectors(
                    vectorBucketName=self._bucket, indexName=self._index, keys=chunk
                ),
            )

        self._run_batches("delete", chunks, [functools.partial(send, chunk) for chunk in chunks])

    def _run_batches(
        self, verb: str, key_batches: list[list[str]], calls: list[Callable[[], None]]
    ) -> None:
        """Run ``calls`` with bounded parallelism; report which keys landed if some failed."""
        if len(calls) == 1:
            calls[0]()
            return
        done: list[bool] = [False] * len(calls)
        errors: list[Exception] = []
        waiting = collections.deque(range(len(calls)))
        in_flight: dict[Future[None], int] = {}
        workers = min(self._max_concurrency, len(calls))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3vectors") as pool:
            while waiting or in_flight:
                # After a failure, send nothing new (it would likely fail too); let the
                # requests already in flight finish so the report is exact.
                while waiting and len(in_flight) < workers and not errors:
                    i = waiting.popleft()
                    in_flight[pool.submit(calls[i])] = i
                if not in_flight:
                    break
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = in_flight.pop(future)
                    exc = future.exception()
                    if exc is None:
                        done[i] = True
                    elif isinstance(exc, Exception):
                        errors.append(exc)
                    else:  # KeyboardInterrupt and friends: stop now
                        raise exc
        if not errors:
            return
        written = [k for i, batch in enumerate(key_batches) if done[i] for k in batch]
        failed = [k for i, batch in enumerate(key_batches) if not done[i] for k in batch]
        first = errors[0]
        if not written:
            raise first
        raise PartialWriteError(
            f"{verb} to S3 Vectors index {self._bucket}/{self._index} was partial: "
            f"{len(written)} keys applied, {len(failed)} not ({first})",
            written=written,
            failed=failed,
        ) from first

    # -- reads ----------------------------------------------------------------------------------

    def get(self, keys: Sequence[str]) -> GetResult:
        """Fetch records in the order asked; keys not stored are listed in ``missing``.

        Raises:
            InvalidInputError: a key that is not a string.
        """
        if isinstance(keys, str | bytes):
            raise InvalidInputError("keys must be a sequence of strings, not a single string")
        asked = list(keys)
        unique = self._check_keys(asked)
        if not unique:
            return GetResult(records=(), missing=tuple(asked))
        chunks = [unique[i : i + MAX_GET_BATCH] for i in range(0, len(unique), MAX_GET_BATCH)]
        found: dict[str, VectorRecord] = {}

        def fetch(chunk: list[str]) -> list[GetOutputVectorTypeDef]:
            response = self._call(
                "GetVectors",
                lambda: self._client.get_vectors(
                    vectorBucketName=self._bucket,
                    indexName=self._index,
                    keys=chunk,
                    returnData=True,
                    returnMetadata=True,
                ),
            )
            return response["vectors"]

        if len(chunks) == 1:
            pages = [fetch(chunks[0])]
        else:
            with ThreadPoolExecutor(
                max_workers=min(self._max_concurrency, len(chunks)), thread_name_prefix="s3vectors"
            ) as pool:
                pages = list(pool.map(fetch, chunks))
        for page in pages:
            for item in page:
                found[item["key"]] = self._record(item)
        # The service answers in its own order and leaves unknown keys out: restore the order.
        return GetResult(
            records=tuple(found[k] for k in asked if k in found),
            missing=tuple(k for k in asked if k not in found),
        )

    def keys(self, *, segments: int = 1, page_size: int = 1000) -> Iterator[str]:
        """Every stored key (order unspecified), following ``nextToken``.

        Args:
            segments: split the scan into this many parallel segments (1-16).
            page_size: keys per ``ListVectors`` page (1-1000).
        """
        for page in self._scan(return_data=False, segments=segments, page_size=page_size):
            for item in page:
                yield item["key"]

    def records(self, *, segments: int = 1, page_size: int = 500) -> Iterator[VectorRecord]:
        """Every stored record with vector and metadata (order unspecified).

        Args:
            segments: split the scan into this many parallel segments (1-16).
            page_size: records per ``ListVectors`` page (1-1000; the service may return fewer).
        """
        for page in self._scan(return_data=True, segments=segments, page_size=page_size):
            for item in page:
                yield self._record(item)

    def _scan(
        self, *, return_data: bool, segments: int, page_size: int
    ) -> Iterator[list[ListOutputVectorTypeDef]]:
        if isinstance(segments, bool) or not isinstance(segments, int):
            raise InvalidInputError("segments must be an int")
        if not 1 <= segments <= MAX_LIST_SEGMENTS:
            raise InvalidInputError(f"segments must be in 1..{MAX_LIST_SEGMENTS}, got {segments}")
        if not 1 <= page_size <= 1000:
            raise InvalidInputError(f"page_size must be in 1..1000, got {page_size}")

        def page(
            segment: int, token: str | None
        ) -> tuple[list[ListOutputVectorTypeDef], str | None]:
            kwargs: dict[str, Any] = {
                "vectorBucketName": self._bucket,
                "indexName": self._index,
                "maxResults": page_size,
                "returnData": return_data,
                "returnMetadata": return_data,
            }
            if segments > 1:
                kwargs["segmentCount"] = segments
                kwargs["segmentIndex"] = segment
            if token is not None:
                kwargs["nextToken"] = token
            response = self._call("ListVectors", lambda: self._client.list_vectors(**kwargs))
            return response["vectors"], response.get("nextToken")

        if segments == 1:
            token: str | None = None
            while True:
                items, token = page(0, token)
                yield items
                if not token:
                    return
        # One page per live segment per round, fetched in parallel, so memory stays bounded.
        tokens: dict[int, str | None] = dict.fromkeys(range(segments))
        with ThreadPoolExecutor(
            max_workers=min(self._max_concurrency, segments), thread_name_prefix="s3vectors"
        ) as pool:
            while tokens:
                futures = {s: pool.submit(page, s, t) for s, t in tokens.items()}
                for segment, future in futures.items():
                    items, next_token = future.result()
                    yield items
                    if next_token:
                        tokens[segment] = next_token
                    else:
                        del tokens[segment]

    def query(
        self,
        vector: npt.ArrayLike,
        *,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[QueryMatch]:
        """The ``top_k`` (at most 100) nearest records matching ``filter``, best first.

        The filter is validated against the index's non-filterable keys and sent unchanged
        (numpy scalars become plain Python values).

        Raises:
            InvalidInputError: ``top_k`` outside 1..100, a bad vector (NaN, zero on cosine).
            DimensionMismatchError: the vector has another length than the index.
            InvalidFilterError: the filter is outside the S3 Vectors filter language or uses a
                non-filterable key.
        """
        vec = validate_query(
            vector, top_k, self._dimension, self._limits, distance_metric=self._metric
        )
        request: dict[str, Any] = {
            "vectorBucketName": self._bucket,
            "indexName": self._index,
            "topK": int(top_k),
            "queryVector": {"float32": vec.astype(np.float32).tolist()},
            "returnDistance": True,
            "returnMetadata": True,
        }
        if filter is not None:
            request["filter"] = normalize_filter(filter, non_filterable=self._non_filterable)
        response = self._call("QueryVectors", lambda: self._client.query_vectors(**request))
        return [
            QueryMatch(
                key=item["key"],
                distance=float(item.get("distance", math.nan)),
                metadata=dict(item.get("metadata") or {}),
            )
            for item in response["vectors"]
        ]

    def query_many(
        self,
        vectors: npt.ArrayLike,
        *,
        top_k: int = 10,
        filter: Filter | None = None,
    ) -> list[list[QueryMatch]]:
        """:meth:`query` for each row of an ``(n, dimension)`` matrix.

        Everything is validated before the first call; the queries then run with up to
        ``max_concurrency`` in flight. Results are in row order.
        """
        matrix = validate_query_matrix(
            vectors, top_k, self._dimension, self._limits, distance_metric=self._metric
        )
        if filter is not None:
            normalize_filter(filter, non_filterable=self._non_filterable)
        rows = list(matrix)
        if len(rows) <= 1:
            return [self.query(row, top_k=top_k, filter=filter) for row in rows]
        with ThreadPoolExecutor(
            max_workers=min(self._max_concurrency, len(rows)), thread_name_prefix="s3vectors"
        ) as pool:
            return list(pool.map(lambda row: self.query(row, top_k=top_k, filter=filter), rows))

    # -- helpers --------------------------------------------------------------------------------

    def _check_keys(self, keys: Iterable[str]) -> list[str]:
        """Keys worth sending, without duplicates, in first-occurrence order.

        A key that cannot be stored (empty, or longer than the key limit) cannot exist in the
        index: it is not sent (the service would reject the whole request), so ``get`` reports
        it missing and ``delete`` ignores it, as ``LocalVectorStore`` does.
        """
        if isinstance(keys, str | bytes):
            raise InvalidInputError("keys must be a sequence of strings, not a single string")
        unique: dict[str, None] = {}
        for key in keys:
            if not isinstance(key, str):
                raise InvalidInputError(f"keys must be strings, got {type(key).__name__}")
            if key and len(key) <= self._limits.max_key_chars:
                unique[key] = None
        return list(unique)

    @staticmethod
    def _record(item: GetOutputVectorTypeDef | ListOutputVectorTypeDef) -> VectorRecord:
        data = item.get("data") or {}
        return VectorRecord(
            item["key"],
            np.asarray(data.get("float32", ()), dtype=np.float32),
            dict(item.get("metadata") or {}),
        )
