"""``S3VectorsStore``: the :class:`TextSearchStore` contract on Amazon S3 Vectors.

Everything a request could be rejected for is checked before the first call (dimension, NaN,
zero vectors on cosine, key lengths, metadata types and byte sizes, filters, ``top_k``, query
texts, index modes), with the same helpers ``LocalVectorStore`` uses, so both stores fail the same
way on the same input.

Writes are split to the service limits: at most 500 vectors **and** at most ``max_request_bytes``
of JSON per ``PutVectors`` call (500 vectors of 3072 dimensions are about 33 MiB, over the 20 MiB
request limit), sent with bounded parallelism. Every call goes through
:func:`crossmodal_search._aws.call_aws`, the single retry layer.

Full-text and hybrid search need an ``ENHANCED`` index (``stores/_s3v_index.py`` creates one, or
moves a ``CLASSIC`` one in place); queries are built and parsed in ``stores/_s3v_query.py``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    InvalidInputError,
)
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
from crossmodal_search.stores._s3v_batches import run_batches, split_put
from crossmodal_search.stores._s3v_index import (
    IndexAdmin,
    check_compatible,
    index_state,
    text_fields_to_add,
)
from crossmodal_search.stores._s3v_query import effective_mode, parse_vector_matches, query_request
from crossmodal_search.stores._s3v_text import S3TextSearch
from crossmodal_search.stores._text import IndexMode, TextField, validate_text_fields

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_s3vectors import S3VectorsClient
    from mypy_boto3_s3vectors.type_defs import (
        GetOutputVectorTypeDef,
        ListOutputVectorTypeDef,
        PutInputVectorTypeDef,
    )

__all__ = ["S3VectorsStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Service limits per call (S3 Vectors "Limitations and restrictions" page).
MAX_DELETE_BATCH = 500
MAX_GET_BATCH = 100
MAX_LIST_SEGMENTS = 16
_SERVICE_MAX_REQUEST_BYTES = 20 * 1024 * 1024
#: The request payload limit is 20 MiB; stay one MiB under it for the JSON envelope and headers.
DEFAULT_MAX_REQUEST_BYTES = 19 * 1024 * 1024
#: JSON bytes of the request around the ``vectors`` list (names, brackets), generously rounded.
_ENVELOPE_BYTES = 1024


class S3VectorsStore(S3TextSearch):
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
        text_fields: metadata keys to make full-text searchable (at most 10). A new index gets
            them at creation (an index in a bucket that still creates ``CLASSIC`` indexes is
            moved to ``ENHANCED`` first); an existing index gets those it lacks and keeps the
            others it has.
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
            keys, searches a requested text field with another language, or is ``CLASSIC`` and
            lacks requested text fields (nothing is changed).
        ResourceNotFoundError: the index does not exist and ``create`` is False.
        ConfigurationError: ``dimension`` is None and the index does not exist.
        InvalidInputError: an invalid name, dimension, metric, non-filterable key list or text
            field.
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
        text_fields: Iterable[TextField] = (),
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
        requested_text = validate_text_fields(text_fields)
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
        # No slow start: a store's requests are few and large, and a put sends its batches at once.
        self._limiter = AdaptiveLimiter(
            max_concurrency,
            initial_limit=max_concurrency,
            clock=retry_policy.clock,
            sleep=retry_policy.sleep,
        )
        self._max_request_bytes = max_request_bytes
        self._client: S3VectorsClient = (
            client
            if client is not None
            else build_client("s3vectors", session=session, region_name=region_name, config=config)
        )
        self._admin = IndexAdmin(self._client, self._bucket, self._index, self._call)

        existing = self._admin.describe(must_exist=not create)
        if existing is None:
            if dimension is None:
                raise ConfigurationError(
                    f"{self._admin.name} does not exist, so its dimension cannot be read: pass "
                    "dimension= to create it"
                )
            existing = self._admin.create(dimension, metric, requested_keys, requested_text)
        state = index_state(existing)
        # An index this handle created is empty until this handle writes to it: reads of it
        # need no request (they would find nothing; a first ingestion then starts embedding
        # without waiting for reads, which a throttled index makes slow).
        self._known_empty = self._admin.created
        check_compatible(
            state, self._admin.name, dimension, metric, requested_keys, explicit_keys=explicit_keys
        )
        self._dimension, self._metric = state.dimension, state.distance_metric
        self._non_filterable = state.non_filterable
        self._mode: IndexMode = state.mode
        self._text_fields: tuple[TextField, ...] = state.text_fields
        missing = text_fields_to_add(requested_text, state, self._admin.name)
        if missing:
            logger.info(
                "%s: adding text search configurations for %s",
                self._admin.name,
                [f.key for f in missing],
            )
            self._admin.add_text_fields(missing)
            self.refresh()

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
            f"dimension={self._dimension}, distance_metric={self._metric!r}, "
            f"index_mode={self._mode!r})"
        )

    def close(self) -> None:
        """Nothing to release (the boto3 client belongs to the caller); kept for parity."""

    def __enter__(self) -> S3VectorsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        return call_aws(
            f"s3vectors:{operation}", fn, policy=self._retry_policy, limiter=self._limiter
        )

    # -- writes ---------------------------------------------------------------------------------

    def put(self, records: Iterable[VectorRecord]) -> None:
        """Insert or overwrite records (upsert), validating every record before the first call.

        Values of text fields are indexed for full-text search as they are written.

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
        self._known_empty = False  # before the first request: a failed put may write some
        rows = batch.vectors.astype(np.float32).tolist()  # plain Python floats for botocore
        items: list[PutInputVectorTypeDef] = []
        for key, row, metadata in zip(batch.keys, rows, batch.metadata, strict=True):
            item: PutInputVectorTypeDef = {"key": key, "data": {"float32": row}}
            if metadata:
                item["metadata"] = metadata
            items.append(item)
        chunks = split_put(items, self._max_request_bytes - _ENVELOPE_BYTES)
        logger.debug(
            "put_vectors: %d vectors in %d requests to %s",
            len(items),
            len(chunks),
            self._admin.name,
        )

        def send(chunk: list[PutInputVectorTypeDef]) -> None:
            self._call(
                "PutVectors",
                lambda: self._client.put_vectors(
                    vectorBucketName=self._bucket, indexName=self._index, vectors=chunk
                ),
            )

        run_batches(
            "put",
            self._admin.name,
            [[item["key"] for item in chunk] for chunk in chunks],
            [functools.partial(send, chunk) for chunk in chunks],
            self._max_concurrency,
        )

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

        run_batches(
            "delete",
            self._admin.name,
            chunks,
            [functools.partial(send, chunk) for chunk in chunks],
            self._max_concurrency,
        )

    # -- reads ----------------------------------------------------------------------------------

    def get(self, keys: Sequence[str]) -> GetResult:
        """Fetch records in the order asked; keys not stored are listed in ``missing``.

        On an index this handle created and has not written to yet, every key is missing and
        no request is sent (vectors another process wrote into it meanwhile are not seen).

        Raises:
            InvalidInputError: a key that is not a string.
        """
        if isinstance(keys, str | bytes):
            raise InvalidInputError("keys must be a sequence of strings, not a single string")
        asked = list(keys)
        unique = self._check_keys(asked)
        if not unique or self._known_empty:
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
        query_mode: IndexMode | None = None,
    ) -> list[QueryMatch]:
        """The ``top_k`` (at most 100) nearest records matching ``filter``, best first.

        The filter is validated against the index's non-filterable keys and mode, and sent
        unchanged (numpy scalars become plain Python values): ``$startsWith`` needs an ENHANCED
        index or ``query_mode="ENHANCED"``; an ENHANCED query takes at most 100 constraints.

        Args:
            query_mode: ``"ENHANCED"`` runs this one query with pre-filtering (and
                ``$startsWith``) on a CLASSIC index; None uses the index's mode. S3 Vectors
                refuses ``"CLASSIC"`` on an ENHANCED index.

        Raises:
            InvalidInputError: ``top_k`` outside 1..100, a bad vector (NaN, zero on cosine), a
                bad ``query_mode``.
            DimensionMismatchError: the vector has another length than the index.
            InvalidFilterError: the filter is outside the S3 Vectors filter language, uses a
                non-filterable key, or what the query's mode does not allow.
        """
        vec = validate_query(
            vector, top_k, self._dimension, self._limits, distance_metric=self._metric
        )
        mode = effective_mode(self._mode, query_mode)
        request = query_request(
            self._bucket,
            self._index,
            top_k=top_k,
            vector=vec,
            filter=self._filter(filter, mode),
            query_mode=query_mode,
        )
        return parse_vector_matches(self._query_pages(request))

    def query_many(
        self,
        vectors: npt.ArrayLike,
        *,
        top_k: int = 10,
        filter: Filter | None = None,
        query_mode: IndexMode | None = None,
    ) -> list[list[QueryMatch]]:
        """:meth:`query` for each row of an ``(n, dimension)`` matrix.

        Everything is validated before the first call; the queries then run with up to
        ``max_concurrency`` in flight. Results are in row order.
        """
        matrix = validate_query_matrix(
            vectors, top_k, self._dimension, self._limits, distance_metric=self._metric
        )
        self._filter(filter, effective_mode(self._mode, query_mode))
        rows = list(matrix)

        def one(row: npt.NDArray[np.float32]) -> list[QueryMatch]:
            return self.query(row, top_k=top_k, filter=filter, query_mode=query_mode)

        if len(rows) <= 1:
            return [one(row) for row in rows]
        with ThreadPoolExecutor(
            max_workers=min(self._max_concurrency, len(rows)), thread_name_prefix="s3vectors"
        ) as pool:
            return list(pool.map(one, rows))

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
