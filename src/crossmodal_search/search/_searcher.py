"""``CrossmodalSearcher``: resumable catalog indexing and product search over any embedder/store.

Every product is stored as up to three vectors, keyed so that reruns overwrite instead of
duplicating: ``text-{id}`` (its description), ``image-{id}`` (its main image) and
``combined-{id}`` (the normalised weighted mean of the two, or the one that exists). Each vector
carries the metadata ``type``, ``product_id``, ``text``, ``image_path``, ``content_hash``,
``metadata_hash`` and ``embedding_model`` plus the product's own metadata, so a query on any
vector type can be turned back into a product.

Indexing is idempotent: ``content_hash`` is a SHA-256 of everything that determines the vectors
(embedding model, dimension, text, image bytes or S3 URI, combined-vector weight). Before
embedding, the stored vectors of each product are fetched; a product whose vectors all exist
with the expected hashes is skipped (metadata keys added by other tools, such as tags, are kept),
one whose embedding inputs are unchanged but whose metadata changed (``metadata_hash``: its
metadata, text, image path and model) is rewritten from its stored vectors without embedding
calls, and any other product is embedded again and overwritten. Either way the tags written
by :func:`~crossmodal_search.evaluation.tag_products` (``tags``, ``tag_*``) are carried over
from the stored vectors, unless the product's own metadata sets a tag key. A product that lost
its text or image has the stale vector deleted.

A product's long media (``video``, ``audio``, ``document``) are indexed per segment by
:meth:`CrossmodalSearcher.index_media`: keys ``video-{id}-{i}`` (and ``audio-``, ``document-``),
metadata ``type`` = the media kind, the product's ``text``, ``image_path`` and own metadata (so
a segment hit displays and filters like the product), and the segment's position
(``segment_start``, ``segment_end``, ``segment_unit``: seconds, characters or pages) and
``source_uri``. A search in mode ``video``, ``audio`` or ``document`` (or ``all``) reports the
product and where in the media it matched.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, computed_field

from crossmodal_search._types import EmbeddingPurpose, Filter, MetadataValue, Vector
from crossmodal_search.embeddings import SegmentedEmbeddingJobs, VideoEmbeddingMode
from crossmodal_search.embeddings._protocol import Embedder, ImageInput
from crossmodal_search.errors import (
    ConfigurationError,
    CrossmodalSearchError,
    EmbeddingJobError,
    IngestError,
    InvalidInputError,
    RetryExhaustedError,
    ServiceError,
    ServiceValidationError,
    TransientServiceError,
    UnsupportedMediaError,
)
from crossmodal_search.search._catalog import RESERVED_METADATA_KEYS, Product
from crossmodal_search.search._media_ingest import (
    SEGMENT_PROBE,
    MediaIngestReport,
    MediaItem,
    MediaKind,
    first_stored_segment,
    index_media,
)
from crossmodal_search.stores import (
    QueryMatch,
    StoreLimits,
    VectorRecord,
    VectorStore,
    validate_filter,
)
from crossmodal_search.stores._limits import validate_records

__all__ = [
    "CostEstimate",
    "CrossmodalSearcher",
    "FailureKind",
    "Fusion",
    "IngestPolicy",
    "IngestReport",
    "IngestStoppedError",
    "ItemFailure",
    "ProductVectorType",
    "ProductView",
    "SearchMode",
    "SearchResult",
    "SegmentUnit",
    "VectorType",
]

logger = logging.getLogger(__name__)

#: The vectors built from a product's text and image (keys ``{type}-{product_id}``).
ProductVectorType: TypeAlias = Literal["text", "image", "combined"]
#: Which stored vectors a query searches.
SearchMode: TypeAlias = Literal["text", "image", "combined", "video", "audio", "document", "all"]
#: How a text+image query is combined: one query with the weighted mean vector, or reciprocal
#: rank fusion of two separate queries.
Fusion: TypeAlias = Literal["mean", "rrf"]
#: The kinds of vector stored per product: one each of text, image and combined, and one per
#: segment of its video, audio and document.
VectorType: TypeAlias = Literal["text", "image", "combined", "video", "audio", "document"]
#: What failed for a product that could not be indexed.
FailureKind: TypeAlias = Literal["input", "text", "image", "metadata", "video", "audio", "document"]
#: Where a segment sits in its source: seconds of audio/video, characters of text, PDF pages.
SegmentUnit: TypeAlias = Literal["seconds", "chars", "pages"]

_PRODUCT_TYPES: tuple[ProductVectorType, ...] = ("text", "image", "combined")
_MEDIA_TYPES: tuple[MediaKind, ...] = ("video", "audio", "document")
_VECTOR_TYPES: tuple[VectorType, ...] = (*_PRODUCT_TYPES, *_MEDIA_TYPES)
#: Query purpose per search mode (Nova embeds a query for what it will be compared with).
_QUERY_PURPOSE: dict[str, EmbeddingPurpose] = {
    "text": EmbeddingPurpose.TEXT_RETRIEVAL,
    "image": EmbeddingPurpose.IMAGE_RETRIEVAL,
    "video": EmbeddingPurpose.VIDEO_RETRIEVAL,
    "audio": EmbeddingPurpose.AUDIO_RETRIEVAL,
    "document": EmbeddingPurpose.DOCUMENT_RETRIEVAL,
}
_SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
_FUSIONS: tuple[str, ...] = get_args(Fusion)
_MAX_TOP_K = 100
_RRF_K = 60
_HASH_VERSION = "crossmodal-content-v1"

#: Errors about one product's own input: the product fails, a rerun fails it again until the
#: product is fixed. Every other service error fails the product as retryable (see IngestPolicy).
_INPUT_ERRORS: tuple[type[CrossmodalSearchError], ...] = (
    InvalidInputError,
    ServiceValidationError,
    EmbeddingJobError,
)

ProgressCallback: TypeAlias = Callable[[int, int], None]


class ItemFailure(BaseModel):
    """A product that could not be indexed, and why (the rest of the catalog still lands).

    Attributes:
        product_id: The product.
        kind: ``"input"`` (the image file is unreadable), ``"text"`` or ``"image"`` (its
            embedding call failed), ``"metadata"`` (over the store's metadata limits), or the
            media kind for :meth:`CrossmodalSearcher.index_media`.
        reason: What went wrong, in one line.
        code: The AWS error code, when the service answered with one.
        request_id: The AWS request id of the failed call, for a support case.
        retryable: A rerun may succeed without changing the product: throttling or a service
            fault outlived the retries, or an access or model error that concerns the service.
            ``False`` means the product itself must be fixed (bad image, text refused, metadata
            over the limits).
    """

    model_config = ConfigDict(frozen=True)

    product_id: str
    kind: FailureKind
    reason: str
    code: str | None = None
    request_id: str | None = None
    retryable: bool = False


class CostEstimate(BaseModel):
    """What an ``index`` call would do, computed without any embedding call.

    Attributes:
        products: Products given.
        unchanged: Already indexed with identical content (skipped; needs ``check_store``).
        metadata_only: Indexed with the same embedding inputs but other metadata (rewritten
            from the stored vectors, no embedding call).
        to_embed: Products that need embedding.
        invalid: Products that would fail before any call (unreadable image, metadata limits).
        text_calls: Text embedding requests (Bedrock ``InvokeModel`` calls with Nova).
        image_calls: Image embedding requests.
        vectors: Vectors that would be written.
        stale_vectors: Vectors that would be deleted (a product lost its text or image).
        put_requests: Store write requests (``PutVectors`` calls on S3 Vectors).
        vector_bytes: float32 payload of the written vectors.
        metadata_bytes: Metadata of the written vectors, as compact UTF-8 JSON.
        image_bytes: Local image bytes sent to the embedder (``s3://`` images are read by
            Bedrock itself and not counted).
    """

    model_config = ConfigDict(frozen=True)

    products: int
    unchanged: int
    metadata_only: int
    to_embed: int
    invalid: int
    text_calls: int
    image_calls: int
    vectors: int
    stale_vectors: int
    put_requests: int
    vector_bytes: int
    metadata_bytes: int
    image_bytes: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def embed_calls(self) -> int:
        """Embedding requests in total (text + image)."""
        return self.text_calls + self.image_calls


class IngestReport(BaseModel):
    """Outcome of :meth:`CrossmodalSearcher.index`.

    Attributes:
        indexed: Products embedded (or rewritten) and written.
        skipped_unchanged: Products already stored with identical content.
        failed: Products left out, each with its reason.
        vectors_written: Vectors written to the store.
        vectors_deleted: Stale vectors deleted, including every vector of pruned products.
        embed_calls: Embedding calls made (one per text, one per image).
        seconds: Wall-clock duration.
        dry_run: True when nothing was embedded or written (see ``estimate``).
        estimate: The cost estimate, for a dry run.
        jobs: Asynchronous embedding jobs started (invocation ARNs; ``index_media`` only).
        pruned: Products deleted because they are not in the catalog (``prune=True``); for a
            dry run, the products that would be.
    """

    model_config = ConfigDict(frozen=True)

    indexed: int = 0
    skipped_unchanged: int = 0
    failed: list[ItemFailure] = Field(default_factory=list)
    vectors_written: int = 0
    vectors_deleted: int = 0
    embed_calls: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    estimate: CostEstimate | None = None
    jobs: list[str] = Field(default_factory=list)
    pruned: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def retry_ids(self) -> list[str]:
        """Products that failed for reasons a rerun may not meet again (``retryable``)."""
        return list(dict.fromkeys(f.product_id for f in self.failed if f.retryable))


class IngestStoppedError(IngestError):
    """:meth:`CrossmodalSearcher.index` stopped before the end of the catalog.

    Raised when an error concerns every product rather than one (the same service error for
    ``IngestPolicy.max_consecutive_failures`` products in a row: access denied, a missing
    model), or when the service kept throttling for longer than
    ``IngestPolicy.pause_budget_seconds``. Everything embedded before the stop is written;
    ``report`` says what was, and a rerun resumes (indexed products are skipped). The error
    that caused the stop is ``__cause__``.
    """

    def __init__(self, message: str, *, report: IngestReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True, kw_only=True)
class IngestPolicy:
    """How :meth:`CrossmodalSearcher.index` keeps going when products fail.

    The embedder's retry policy retries each call first; this policy decides what happens once
    a call's retries are spent. A product whose error concerns its own input fails at once; one
    that met throttling or a service fault is tried again later in the same run; an error that
    repeats for product after product stops the run.

    Attributes:
        max_consecutive_failures: Products failing in a row with the same service error (not
            a validation error) after which the run stops with :class:`IngestStoppedError`:
            an error every product meets (default 10).
        product_attempts: Rounds a product that met a transient error is tried in one run
            before it is reported as failed and ``retryable`` (default 3).
        storm_threshold: Products failing in a row on transient errors that pause the run
            (default 3): no new embedding call starts until the pause ends.
        pause_seconds: The first pause; pauses in a row (no product succeeded in between)
            double, up to ``max_pause_seconds`` (defaults 5 and 60).
        pause_budget_seconds: Pausing allowed in one run, in total; when the next pause would
            pass it, the run stops with :class:`IngestStoppedError` (default 600).
        sleep: The sleep function (tests pass a recorder).
    """

    max_consecutive_failures: int = 10
    product_attempts: int = 3
    storm_threshold: int = 3
    pause_seconds: float = 5.0
    max_pause_seconds: float = 60.0
    pause_budget_seconds: float = 600.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_consecutive_failures", "product_attempts", "storm_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"IngestPolicy.{name} must be an int >= 1, got {value!r}")
        for name in ("pause_seconds", "max_pause_seconds", "pause_budget_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"IngestPolicy.{name} must be a number >= 0")


class SearchResult(BaseModel):
    """One product found by :meth:`CrossmodalSearcher.search` (its best-matching vector).

    Attributes:
        product_id: The product.
        text: Its description as indexed.
        image_path: Its image (local path or ``s3://`` URI) as indexed, if any.
        similarity: Higher is closer: cosine similarity (``1 - d``) on a cosine store,
            ``1 - d**2 / 2`` (the cosine of unit vectors) on a Euclidean one.
        distance: The store's distance for the best-matching vector: lower is closer.
        matched_type: Which stored vector matched best: ``text``, ``image``, ``combined``, or a
            segment of the product's ``video``, ``audio`` or ``document``.
        score: What the ranking used: ``similarity`` for ``fusion="mean"``, the weighted
            reciprocal-rank score for ``fusion="rrf"``.
        key: The matched vector's key.
        metadata: The product's own metadata (the searcher's bookkeeping keys removed).
        segment_start: For a segment hit: where the segment starts, in ``segment_unit``
            (zero-based: PDF page ``i`` spans ``i`` to ``i + 1``).
        segment_end: For a segment hit: where it ends (exclusive), in ``segment_unit``.
        segment_unit: ``"seconds"`` (video, audio), ``"chars"`` (text documents) or
            ``"pages"`` (PDF documents); ``None`` for text, image and combined hits.
        source_uri: For a segment hit: the media file (``s3://`` URI, or ``file://`` for a
            local PDF).
    """

    model_config = ConfigDict(frozen=True)

    product_id: str
    text: str
    image_path: str | None
    similarity: float
    distance: float
    matched_type: VectorType
    score: float
    key: str
    metadata: dict[str, MetadataValue]
    segment_start: float | None = None
    segment_end: float | None = None
    segment_unit: SegmentUnit | None = None
    source_uri: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def title(self) -> str:
        """First line of ``text`` (the item name for ABO listings)."""
        return self.text.strip().split("\n", 1)[0]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def page(self) -> int | None:
        """The one-based PDF page of a document-page hit, else ``None``."""
        if self.segment_unit != "pages" or self.segment_start is None:
            return None
        return int(self.segment_start) + 1

    def segment_label(self, *, dash: str = "-") -> str:
        """Where a segment hit sits: ``1:05-1:10`` (media), ``p. 3`` (PDF), ``chars 0-1000``;
        ``""`` for a text, image or combined hit. ``dash`` joins the two ends."""
        start, end, unit = self.segment_start, self.segment_end, self.segment_unit
        if unit is None or start is None:
            return ""
        if unit == "pages":
            return f"p. {self.page}"
        if unit == "seconds":
            return _clock(start) + ("" if end is None else f"{dash}{_clock(end)}")
        return f"chars {start:g}" + ("" if end is None else f"{dash}{end:g}")


def _clock(seconds: float) -> str:
    """``65.0`` -> ``1:05``, ``3725.5`` -> ``1:02:05.5``."""
    tenths = round(seconds * 10)  # round once, so 59.96 is 1:00, not 0:59.10 or 0:59.0
    whole, tenth = divmod(tenths, 10)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    frac = f".{tenth}" if tenth else ""
    return (f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}") + frac


class ProductView(BaseModel):
    """A product as stored: what :meth:`CrossmodalSearcher.get_product` returns."""

    model_config = ConfigDict(frozen=True)

    product_id: str
    text: str
    image_path: str | None
    metadata: dict[str, MetadataValue]
    vector_types: list[VectorType]
    content_hash: str | None
    embedding_model: str | None


def _key(vtype: ProductVectorType, product_id: str) -> str:
    return f"{vtype}-{product_id}"


def _unit(v: Vector) -> Vector:
    n = float(np.linalg.norm(v))
    if not math.isfinite(n) or n == 0.0:
        raise InvalidInputError("the embedder returned a zero or non-finite vector")
    return (v / n).astype(np.float32)


def _weighted_mean(a: Vector, b: Vector, weight_a: float) -> Vector:
    mixed = weight_a * _unit(a) + (1.0 - weight_a) * _unit(b)
    if float(np.linalg.norm(mixed)) < 1e-9:  # opposite vectors at equal weight: keep ``a``
        return _unit(a)
    return _unit(mixed.astype(np.float32))


def _is_s3(value: object) -> bool:
    return isinstance(value, str) and value.startswith("s3://")


@dataclass
class _Plan:
    """Everything decided about one product before any embedding call."""

    product: Product
    content_hash: str = ""
    metadata_hash: str = ""
    image_input: bytes | str | None = None
    image_bytes: int = 0
    expected: tuple[ProductVectorType, ...] = ()
    metadata: dict[ProductVectorType, dict[str, MetadataValue]] = field(default_factory=dict)
    action: Literal["skip", "rewrite", "embed", "fail"] = "embed"
    failure: ItemFailure | None = None
    stored: dict[str, VectorRecord] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)


class CrossmodalSearcher:
    """Index products and search them by text, image or both.

    Composes any :class:`~crossmodal_search.embeddings.Embedder` with any
    :class:`~crossmodal_search.stores.VectorStore`. The searcher never prints; it logs to
    ``crossmodal_search.search``.

    Args:
        embedder: Produces the vectors; its ``dimension`` must equal the store's.
        store: Where vectors live.
        max_concurrency: Embedding calls in flight at once while indexing (default 32). An
            embedder may hold fewer: :class:`~crossmodal_search.embeddings.NovaEmbeddings`
            lowers its own limit when Bedrock throttles, so the default is safe under quotas.
        combined_text_weight: Weight of the text vector in the stored ``combined`` vector
            (the image gets ``1 - weight``). Part of the content hash: changing it re-embeds.
        batch_size: Records per ``store.put`` call (S3 Vectors accepts at most 500).
        ingest_policy: What :meth:`index` does when products fail: retry later in the run,
            pause through a throttling storm, stop when every product meets the same error
            (:class:`IngestPolicy`; the defaults suit Bedrock).

    Raises:
        ConfigurationError: The embedder and store dimensions differ, or an argument is out of
            range.

    Example:
        >>> searcher = CrossmodalSearcher(OfflineEmbedder(), LocalVectorStore(dimension=1024))
        >>> report = searcher.index(products)  # doctest: +SKIP
        >>> searcher.search("red summer dress", top_k=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        *,
        max_concurrency: int = 32,
        combined_text_weight: float = 0.5,
        batch_size: int = 500,
        ingest_policy: IngestPolicy | None = None,
    ) -> None:
        if embedder.dimension != store.dimension:
            raise ConfigurationError(
                f"the embedder produces {embedder.dimension}-dimensional vectors but the store "
                f"holds {store.dimension}-dimensional ones; use the same dimension for both"
            )
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise ConfigurationError("max_concurrency must be an int")
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not _is_weight(combined_text_weight):
            raise ConfigurationError(
                f"combined_text_weight must be a number in [0, 1], got {combined_text_weight!r}"
            )
        self._embedder = embedder
        self._store = store
        self._max_concurrency = max_concurrency
        self._weight = float(combined_text_weight)
        self._batch_size = batch_size
        self._policy = ingest_policy or IngestPolicy()
        self._limits: StoreLimits = getattr(store, "limits", None) or StoreLimits()

    def __repr__(self) -> str:
        return (
            f"CrossmodalSearcher(embedder={self._embedder!r}, store={self._store!r}, "
            f"combined_text_weight={self._weight})"
        )

    def close(self) -> None:
        """Close the store and the embedder when they hold resources (files, clients)."""
        for part in (self._store, self._embedder):
            close = getattr(part, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> CrossmodalSearcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        """The embedder used for indexing and queries."""
        return self._embedder

    @property
    def store(self) -> VectorStore:
        """The vector store searched."""
        return self._store

    @property
    def combined_text_weight(self) -> float:
        """Weight of the text vector in each stored ``combined`` vector."""
        return self._weight

    @property
    def batch_size(self) -> int:
        """Records per ``store.put`` call."""
        return self._batch_size

    @property
    def max_concurrency(self) -> int:
        """Embedding calls in flight at once while indexing."""
        return self._max_concurrency

    # ------------------------------------------------------------------ planning

    def _content_hash(self, product: Product, image_id: str | None) -> str:
        payload = json.dumps(
            [
                _HASH_VERSION,
                self._embedder.model_id,
                self._store.dimension,
                product.text,
                image_id,
                self._weight,
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _read_image(self, plan: _Plan) -> None:
        image = plan.product.image
        if image is None:
            return
        if _is_s3(image):
            plan.image_input = image
            return
        try:
            data = Path(image).read_bytes()
        except OSError as exc:
            reason = f"cannot read image {image}: {exc.strerror or exc}"
            plan.action, plan.failure = (
                "fail",
                ItemFailure(product_id=plan.product.product_id, kind="input", reason=reason),
            )
            return
        if not data:
            plan.action, plan.failure = (
                "fail",
                ItemFailure(
                    product_id=plan.product.product_id,
                    kind="input",
                    reason=f"image {image} is empty",
                ),
            )
            return
        plan.image_input = data
        plan.image_bytes = len(data)

    def _prepare(self, product: Product) -> _Plan:
        """Read the image, hash the content and build the metadata (no store or embed call)."""
        plan = _Plan(product)
        self._read_image(plan)
        if plan.action == "fail":
            return plan
        image_id: str | None = None
        if isinstance(plan.image_input, bytes):
            image_id = "sha256:" + hashlib.sha256(plan.image_input).hexdigest()
        elif isinstance(plan.image_input, str):
            image_id = plan.image_input
        plan.content_hash = self._content_hash(product, image_id)
        types: list[ProductVectorType] = []
        if product.text.strip():
            types.append("text")
        if product.image is not None:
            types.append("image")
        types.append("combined")
        plan.expected = tuple(types)
        described = [product.metadata, product.text, product.image, self._embedder.model_id]
        plan.metadata_hash = hashlib.sha256(
            json.dumps(described, sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()[:32]
        for vtype in plan.expected:
            md: dict[str, MetadataValue] = dict(product.metadata)
            md["type"] = vtype
            md["product_id"] = product.product_id
            md["text"] = product.text
            if product.image is not None:
                md["image_path"] = product.image
            md["content_hash"] = plan.content_hash
            md["metadata_hash"] = plan.metadata_hash
            md["embedding_model"] = self._embedder.model_id
            plan.metadata[vtype] = md
        too_many = self._too_many_keys(product.product_id, product.metadata, plan.metadata.values())
        if too_many is not None:
            plan.action, plan.failure = "fail", too_many
            return plan
        probe = np.zeros(self._store.dimension, dtype=np.float32)
        probe[0] = 1.0
        try:
            validate_records(
                [VectorRecord(_key(t, product.product_id), probe, plan.metadata[t]) for t in types],
                dimension=self._store.dimension,
                distance_metric=self._store.distance_metric,
                non_filterable=self._store.non_filterable_metadata_keys,
                limits=self._limits,
            )
        except InvalidInputError as exc:
            plan.action, plan.failure = (
                "fail",
                ItemFailure(product_id=product.product_id, kind="metadata", reason=str(exc)),
            )
        return plan

    def _too_many_keys(
        self,
        product_id: str,
        own: Mapping[str, MetadataValue],
        written: Iterable[Mapping[str, MetadataValue]],
    ) -> ItemFailure | None:
        """The metadata-key-count failure, counting the keys the searcher adds, or None."""
        limit = self._limits.max_metadata_keys
        total = max(len(md) for md in written)
        if total <= limit:
            return None
        mine = sum(k not in RESERVED_METADATA_KEYS for k in own)
        added = total - mine
        return ItemFailure(
            product_id=product_id,
            kind="metadata",
            reason=(
                f"{mine} product keys + {added} added by the searcher = {total} metadata keys, "
                f"over the limit of {limit} per vector: keep at most {max(limit - added, 0)} "
                "product keys"
            ),
        )

    def _decide(self, plans: Sequence[_Plan]) -> None:
        """Compare each plan with what the store holds and set its action."""
        live = [p for p in plans if p.action != "fail"]
        keys = [_key(t, p.product.product_id) for p in live for t in _PRODUCT_TYPES]
        stored = {r.key: r for r in self._store.get(keys).records} if keys else {}
        for plan in live:
            pid = plan.product.product_id
            have = {t: stored[_key(t, pid)] for t in _PRODUCT_TYPES if _key(t, pid) in stored}
            plan.stored = {r.key: r for r in have.values()}
            plan.stale = [_key(t, pid) for t in have if t not in plan.expected]
            if all(t in have for t in plan.expected) and all(
                have[t].metadata.get("content_hash") == plan.content_hash
                and have[t].metadata.get("type") == t
                for t in plan.expected
            ):
                # Keys added by other tools (tags written back, say) do not make a product
                # stale; a change of its own metadata does, and is rewritten without embedding.
                same_metadata = all(
                    have[t].metadata.get("metadata_hash") == plan.metadata_hash
                    for t in plan.expected
                )
                plan.action = "skip" if same_metadata else "rewrite"
            if plan.action != "skip":
                self._keep_tags(plan, list(have.values()))

    def _keep_tags(self, plan: _Plan, stored: Sequence[VectorRecord]) -> None:
        """Carry tags written by other tools (``tags``, ``tag_*``) over to a rewrite.

        The tags are not part of the product's metadata (nor of its hash), so a rerun that
        rewrites the product for another reason would otherwise drop them. A product whose own
        metadata sets any tag key owns its tags: nothing is carried over.
        """
        if not stored or any(_is_tag_key(k) for k in plan.product.metadata):
            return
        tags: dict[str, MetadataValue] = {}
        for record in stored:
            for k, v in record.metadata.items():
                if _is_tag_key(k):
                    tags.setdefault(k, v)
        if not tags:
            return
        for md in plan.metadata.values():
            md.update(tags)
        probe = np.zeros(self._store.dimension, dtype=np.float32)
        probe[0] = 1.0
        pid = plan.product.product_id
        try:
            validate_records(
                [VectorRecord(_key(t, pid), probe, md) for t, md in plan.metadata.items()],
                dimension=self._store.dimension,
                distance_metric=self._store.distance_metric,
                non_filterable=self._store.non_filterable_metadata_keys,
                limits=self._limits,
            )
        except InvalidInputError as exc:
            reason = f"{exc} (with the tags kept from the stored vectors)"
            plan.action, plan.failure = (
                "fail",
                ItemFailure(product_id=pid, kind="metadata", reason=reason),
            )

    def _plan(self, products: Sequence[Product], pool: ThreadPoolExecutor) -> list[_Plan]:
        plans = list(pool.map(self._prepare, products))
        self._decide(plans)
        return plans

    @staticmethod
    def _check_products(products: Iterable[Product]) -> list[Product]:
        items = list(products)
        seen: set[str] = set()
        for i, product in enumerate(items):
            if not isinstance(product, Product):
                raise InvalidInputError(
                    f"products[{i}] is a {type(product).__name__}, expected a Product"
                )
            if product.product_id in seen:
                raise InvalidInputError(f"product_id {product.product_id!r} appears twice")
            seen.add(product.product_id)
        return items

    def _windows(self, items: Sequence[Product]) -> Iterator[Sequence[Product]]:
        size = max(self._batch_size, 4 * self._max_concurrency)
        for start in range(0, len(items), size):
            yield items[start : start + size]

    # ------------------------------------------------------------------ estimate

    def estimate(self, products: Iterable[Product], *, check_store: bool = True) -> CostEstimate:
        """How many embedding calls, vectors and bytes :meth:`index` would need, without calling.

        Local images are read (and hashed); the embedder is never called. With ``check_store``
        (the default) the store is read to find products already indexed unchanged, exactly as
        ``index`` would.

        Example:
            >>> searcher.estimate(products).embed_calls  # doctest: +SKIP
            72
        """
        items = self._check_products(products)
        counts = dict.fromkeys(
            ("unchanged", "metadata_only", "to_embed", "invalid", "text", "image", "vectors"), 0
        )
        stale = vector_bytes = metadata_bytes = image_bytes = 0
        with ThreadPoolExecutor(self._max_concurrency) as pool:
            for window in self._windows(items):
                plans = list(pool.map(self._prepare, window))
                if check_store:
                    self._decide(plans)
                for plan in plans:
                    if plan.action == "fail":
                        counts["invalid"] += 1
                        continue
                    stale += len(plan.stale)
                    if plan.action == "skip":
                        counts["unchanged"] += 1
                        continue
                    counts["metadata_only" if plan.action == "rewrite" else "to_embed"] += 1
                    if plan.action == "embed":
                        counts["text"] += "text" in plan.expected
                        counts["image"] += "image" in plan.expected
                        image_bytes += plan.image_bytes
                    counts["vectors"] += len(plan.expected)
                    vector_bytes += 4 * self._store.dimension * len(plan.expected)
                    metadata_bytes += sum(
                        len(json.dumps(md, separators=(",", ":"), ensure_ascii=False).encode())
                        for md in plan.metadata.values()
                    )
        return CostEstimate(
            products=len(items),
            unchanged=counts["unchanged"],
            metadata_only=counts["metadata_only"],
            to_embed=counts["to_embed"],
            invalid=counts["invalid"],
            text_calls=counts["text"],
            image_calls=counts["image"],
            vectors=counts["vectors"],
            stale_vectors=stale,
            put_requests=math.ceil(counts["vectors"] / self._batch_size),
            vector_bytes=vector_bytes,
            metadata_bytes=metadata_bytes,
            image_bytes=image_bytes,
        )

    # ------------------------------------------------------------------ indexing

    def _embed_text(self, text: str) -> Vector:
        return self._embedder.embed_text(text, purpose=EmbeddingPurpose.GENERIC_INDEX)

    def _embed_image(self, image: bytes | str) -> Vector:
        return self._embedder.embed_image(image, purpose=EmbeddingPurpose.GENERIC_INDEX)

    def _records(
        self, plan: _Plan, vectors: Mapping[ProductVectorType, Vector]
    ) -> list[VectorRecord]:
        pid = plan.product.product_id
        out: dict[ProductVectorType, Vector] = {}
        if "text" in vectors:
            out["text"] = _unit(vectors["text"])
        if "image" in vectors:
            out["image"] = _unit(vectors["image"])
        if "text" in out and "image" in out:
            out["combined"] = _weighted_mean(out["text"], out["image"], self._weight)
        else:
            out["combined"] = out["text"] if "text" in out else out["image"]
        return [VectorRecord(_key(t, pid), out[t], plan.metadata[t]) for t in plan.expected]

    def index(
        self,
        products: Iterable[Product],
        *,
        progress: ProgressCallback | None = None,
        dry_run: bool = False,
        prune: bool = False,
    ) -> IngestReport:
        """Embed and store products; safe to rerun and to resume after an interruption.

        Products already stored with identical content are skipped without embedding calls;
        changed ones are re-embedded and overwritten; vectors are written in ``batch_size``
        batches as soon as a batch is full. A product whose image is unreadable, or that the
        embedding service rejects, is reported in ``IngestReport.failed`` and the others still
        land. Errors that concern every product (missing permissions, a missing index, a store
        write failure) propagate; what was written before stays, and a rerun continues.

        Args:
            products: The catalog (product ids must be unique).
            progress: Called as ``progress(done, total)`` after each product (on the calling
                thread).
            dry_run: Compute :meth:`estimate` and return it in the report; embed and write
                nothing.
            prune: ``products`` is the complete catalog: after indexing, delete every product
                of the store that is not in it (see :meth:`prune`). Never prune with a partial
                catalog (a ``limit``, one page of products): the rest would be deleted.

        Raises:
            InvalidInputError: ``products`` holds something other than a Product, or a product
                id twice (nothing is embedded or written).
        """
        started = time.perf_counter()
        items = self._check_products(products)
        if dry_run:
            pruned = self.prune([p.product_id for p in items], dry_run=True) if prune else None
            return IngestReport(
                dry_run=True,
                estimate=self.estimate(items),
                seconds=time.perf_counter() - started,
                pruned=pruned.pruned if pruned else 0,
            )
        run = _Run(self, len(items), progress)
        with ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="crossmodal") as pool:
            try:
                for window in self._windows(items):
                    run.window(self._plan(window, pool), pool)
                run.flush(final=True)
            except IngestStoppedError as exc:
                run.abort(pool)
                exc.report = run.report(time.perf_counter() - started)
                raise
            except BaseException:
                run.abort(pool)
                raise
        if prune:
            removed = self.prune([p.product_id for p in items])
            run.deleted += removed.vectors_deleted
            run.pruned = removed.pruned
        report = run.report(time.perf_counter() - started)
        logger.info(
            "indexed %d products (%d unchanged, %d failed), %d vectors written, %d embed calls",
            report.indexed,
            report.skipped_unchanged,
            len(report.failed),
            report.vectors_written,
            report.embed_calls,
        )
        return report

    # ------------------------------------------------------------------ long media

    def index_media(
        self,
        products: Iterable[Product],
        *,
        jobs: SegmentedEmbeddingJobs | None = None,
        output_s3_uri: str | None = None,
        segment_seconds: int = 5,
        max_length_chars: int = 32_000,
        embedding_mode: VideoEmbeddingMode = "AUDIO_VIDEO_COMBINED",
        dpi: int = 150,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Index products' ``video``, ``audio`` and ``document`` per segment; safe to rerun.

        Videos and audio (``s3://``) and plain-text documents in S3 are segmented by Nova's
        asynchronous API (``jobs``; every job is started first, then each is awaited, and the
        results are written to ``output_s3_uri``). Local PDF documents are rendered page by
        page and embedded as document images with this searcher's embedder; a local text
        document is one segment when it fits a synchronous call (8,192 characters) and is
        uploaded to ``output_s3_uri`` and segmented by a job when longer. Each segment is
        stored with the product's ``text``, ``image_path`` and metadata, so a segment hit is
        displayed and filtered like the product, plus where it sits in the media. Products
        without media are ignored; text and image are indexed by :meth:`index`.

        A source already stored with the same settings, model and product metadata is skipped;
        segments left over from a run with other settings are deleted. Failed jobs and failed
        segments are reported per product in ``IngestReport.failed`` (``kind`` = the media
        kind), and the good segments of a partly failed source are still written.

        Args:
            products: The catalog (product ids must be unique).
            jobs: Nova asynchronous jobs; needed for video, audio and text documents in S3.
                Its model and dimension must be this searcher's.
            output_s3_uri: Where Nova writes segment results (``s3://bucket/prefix/``).
            segment_seconds: Seconds per audio/video segment, 1-30.
            max_length_chars: Characters per text-document segment, 800-50,000.
            embedding_mode: ``AUDIO_VIDEO_COMBINED`` (one vector per video segment) or
                ``AUDIO_VIDEO_SEPARATE`` (a visual and an audio vector per segment).
            dpi: Rendering resolution of PDF pages.
            timeout: Seconds to wait for each job (default: ``jobs.timeout``); a job still
                running is reported as failed and keeps running in AWS.
            progress: Called as ``progress(done, total)`` each time a media source is finished
                (skipped, written or failed); ``total`` counts sources (a product with a video
                and a manual has two), not products.

        Returns:
            ``indexed`` and ``skipped_unchanged`` count media sources; ``jobs`` lists the
            asynchronous jobs started; ``embed_calls`` counts jobs plus PDF pages embedded.

        Raises:
            InvalidInputError: Bad settings, a product twice, or S3 media without ``jobs`` and
                ``output_s3_uri`` (before any call).
            ConfigurationError: ``jobs`` embeds with another model or dimension than the
                searcher; a PDF without the ``pdf`` extra (pypdfium2).

        Example:
            >>> jobs = SegmentedEmbeddingJobs(dimension=1024)  # doctest: +SKIP
            >>> out = "s3://my-bucket/embeddings/"
            >>> searcher.index_media(products, jobs=jobs, output_s3_uri=out)  # doctest: +SKIP
        """
        started = time.perf_counter()
        items = self._check_products(products)
        if jobs is not None:
            if jobs.model_id != self._embedder.model_id:
                raise ConfigurationError(
                    f"the async jobs embed with {jobs.model_id!r} but the searcher with "
                    f"{self._embedder.model_id!r}; segments and queries must share one model"
                )
            if jobs.dimension != self._store.dimension:
                raise ConfigurationError(
                    f"the async jobs embed {jobs.dimension}-dimensional vectors but the store "
                    f"holds {self._store.dimension}-dimensional ones"
                )
        media: list[MediaItem] = []
        failed: list[ItemFailure] = []
        for product in items:
            for kind in _MEDIA_TYPES:
                source = getattr(product, kind)
                if source is None:
                    continue
                item = MediaItem(product.product_id, kind, source, self._media_metadata(product))
                problem = self._check_media_metadata(item)
                if problem is not None:
                    failed.append(problem)
                else:
                    media.append(item)
        outcome: MediaIngestReport = index_media(
            self._store,
            media,
            jobs=jobs,
            embedder=self._embedder,
            output_s3_uri=output_s3_uri,
            segment_seconds=segment_seconds,
            max_length_chars=max_length_chars,
            embedding_mode=embedding_mode,
            dpi=dpi,
            timeout=timeout,
            progress=progress,
        )
        failed.extend(
            ItemFailure(product_id=f.product_id, kind=f.kind, reason=f"{f.source}: {f.reason}")
            for f in outcome.failed
        )
        report = IngestReport(
            indexed=outcome.indexed,
            skipped_unchanged=outcome.skipped_unchanged,
            failed=failed,
            vectors_written=outcome.vectors_written,
            vectors_deleted=outcome.vectors_deleted,
            embed_calls=outcome.embed_calls,
            seconds=time.perf_counter() - started,
            jobs=outcome.jobs,
        )
        logger.info(
            "indexed %d media sources (%d unchanged, %d failures), %d segment vectors written",
            report.indexed,
            report.skipped_unchanged,
            len(report.failed),
            report.vectors_written,
        )
        return report

    def _media_metadata(self, product: Product) -> dict[str, MetadataValue]:
        md: dict[str, MetadataValue] = dict(product.metadata)
        md["text"] = product.text
        if product.image is not None:
            md["image_path"] = product.image
        # A rerun compares every key stored on the first segment, so changed product
        # metadata (or text) re-indexes the media instead of leaving stale segments.
        md["metadata_hash"] = hashlib.sha256(
            json.dumps([product.metadata, product.text, product.image], sort_keys=True).encode()
        ).hexdigest()[:32]
        return md

    def _check_media_metadata(self, item: MediaItem) -> ItemFailure | None:
        """Validate the metadata a segment of ``item`` will carry, before any call."""
        md: dict[str, MetadataValue] = {
            **item.metadata,
            "type": item.kind,
            "product_id": item.product_id,
            "segment_index": 0,
            "segment_unit": "seconds",
            "segment_start": 0.0,
            "segment_end": 0.0,
            "embedding_type": "AUDIO_VIDEO_COMBINED",
            "source_uri": item.source,
            "segment_config": "AUDIO_VIDEO_SEPARATE-30s",
            "embedding_model": self._embedder.model_id,
            "segment_count": 0,
        }
        too_many = self._too_many_keys(item.product_id, item.metadata, [md])
        if too_many is not None:
            return too_many
        probe = np.zeros(self._store.dimension, dtype=np.float32)
        probe[0] = 1.0
        try:
            validate_records(
                [VectorRecord(f"{item.kind}-{item.product_id}-0", probe, md)],
                dimension=self._store.dimension,
                distance_metric=self._store.distance_metric,
                non_filterable=self._store.non_filterable_metadata_keys,
                limits=self._limits,
            )
        except InvalidInputError as exc:
            return ItemFailure(product_id=item.product_id, kind="metadata", reason=str(exc))
        return None

    def _segment_keys(self, product_ids: Sequence[str]) -> list[str]:
        """Keys of every stored segment of these products (each segment knows the count)."""
        keys: list[str] = []
        for pid in product_ids:
            for kind in _MEDIA_TYPES:
                found = first_stored_segment(self._store, kind, pid)
                if found is None:
                    continue
                count = found[1].get("segment_count")
                n = int(count) if isinstance(count, int | float) and count >= 1 else SEGMENT_PROBE
                keys.extend(f"{kind}-{pid}-{i}" for i in range(n))
                if kind == "video":  # AUDIO_VIDEO_SEPARATE keeps the audio vectors apart
                    keys.extend(f"video-{pid}-audio-{i}" for i in range(n))
        return keys

    def delete(self, product_ids: Iterable[str]) -> None:
        """Delete every stored vector of these products, segments included (unknown ids are
        ignored)."""
        ids = list(product_ids)
        keys = [_key(t, pid) for pid in ids for t in _PRODUCT_TYPES] + self._segment_keys(ids)
        for start in range(0, len(keys), self._batch_size):
            self._store.delete(keys[start : start + self._batch_size])

    def prune(self, keep: Iterable[str], *, dry_run: bool = False) -> IngestReport:
        """Delete every product of the store whose id is not in ``keep`` (the full catalog).

        All the vectors of a removed product go: text, image, combined and every segment of
        its video, audio and document. Keys the searcher did not write (not ``text-``,
        ``image-``, ``combined-``, or a segment key) are left alone. Lists every key of the
        store (``ListVectors`` pages on S3 Vectors), so it costs a scan of the index.

        Args:
            keep: The ids of every product that should stay.
            dry_run: Count what would be deleted; delete nothing.

        Returns:
            A report with ``pruned`` (products) and ``vectors_deleted``.

        Example:
            >>> searcher.prune(p.product_id for p in catalog)  # doctest: +SKIP
        """
        started = time.perf_counter()
        kept = set(keep)
        doomed: list[str] = []
        products: set[str] = set()
        unsure: list[str] = []
        listed = self._store.keys()  # a VectorStore need not be iterable itself
        for key in listed:
            owners = _key_products(key)
            if owners and not kept.intersection(owners):
                doomed.append(key)
                products.add(owners[-1])
            elif len(owners) > 1 and not kept.issuperset(owners):
                unsure.append(key)
        # A key two products could own: its metadata says which one.
        for start in range(0, len(unsure), self._batch_size):
            for record in self._store.get(unsure[start : start + self._batch_size]).records:
                owner = record.metadata.get("product_id")
                if isinstance(owner, str) and owner not in kept:
                    doomed.append(record.key)
                    products.add(owner)
        if not dry_run:
            for start in range(0, len(doomed), self._batch_size):
                self._store.delete(doomed[start : start + self._batch_size])
            if products:
                logger.info(
                    "pruned %d products (%d vectors) not in the catalog", len(products), len(doomed)
                )
        return IngestReport(
            pruned=len(products),
            vectors_deleted=0 if dry_run else len(doomed),
            dry_run=dry_run,
            seconds=time.perf_counter() - started,
        )

    def get_product(self, product_id: str) -> ProductView | None:
        """The product as stored, or ``None`` when none of its vectors exists.

        ``vector_types`` lists ``video``/``audio``/``document`` when the product has segments.
        """
        keys = [_key(t, product_id) for t in _PRODUCT_TYPES]
        keys += [f"{kind}-{product_id}-0" for kind in _MEDIA_TYPES]
        result = self._store.get(keys)
        if not result.records:
            return None
        types = {str(r.metadata.get("type")) for r in result.records}
        # Prefer a product vector's metadata: it carries the content hash.
        records = sorted(result.records, key=lambda r: r.metadata.get("type") in _MEDIA_TYPES)
        md = dict(records[0].metadata)
        return ProductView(
            product_id=product_id,
            text=str(md.get("text", "")),
            image_path=_opt_str(md.get("image_path")),
            metadata=_product_metadata(md),
            vector_types=[t for t in _VECTOR_TYPES if t in types],
            content_hash=_opt_str(md.get("content_hash")),
            embedding_model=_opt_str(md.get("embedding_model")),
        )

    # ------------------------------------------------------------------ search

    def search(
        self,
        text: str | None = None,
        image: ImageInput | None = None,
        *,
        search_mode: SearchMode = "combined",
        top_k: int = 5,
        filter: Filter | None = None,
        text_weight: float = 0.5,
        fusion: Fusion = "mean",
    ) -> list[SearchResult]:
        """Find the ``top_k`` products closest to a text, an image, or both.

        Args:
            text: What the shopper typed.
            image: A photo: bytes, a local path, an ``s3://`` URI or a Pillow image.
            search_mode: Which stored vectors to search: ``"text"``, ``"image"``,
                ``"combined"``, the segments of products' ``"video"``, ``"audio"`` or
                ``"document"`` (see :meth:`index_media`), or ``"all"`` (every type; each
                product appears once, with the vector that matched best).
            top_k: Products to return, 1..100.
            filter: Metadata filter (S3 Vectors filter language), AND-ed with the mode's
                ``type`` filter.
            text_weight: Weight of the text part when both are given (image: ``1 - w``).
            fusion: ``"mean"`` queries once with the normalised weighted mean of both query
                vectors (as the AWS sample does); ``"rrf"`` queries with each and merges the two
                rankings by weighted reciprocal rank (k = 60).

        Query embeddings use a retrieval purpose named after what is searched:
        ``TEXT_RETRIEVAL`` for text vectors, ``IMAGE_RETRIEVAL`` for image vectors,
        ``VIDEO_RETRIEVAL``, ``AUDIO_RETRIEVAL`` and ``DOCUMENT_RETRIEVAL`` for segments,
        ``GENERIC_RETRIEVAL`` for combined vectors or all types. A segment hit carries
        ``segment_start``/``segment_end``/``segment_unit`` and ``source_uri``.

        Raises:
            InvalidInputError: Bad arguments (checked before any embedding or store call);
                ``UnsupportedMediaError`` for an image file that does not exist.
            InvalidFilterError: ``filter`` is outside the filter language.
            ConfigurationError: The store holds vectors of another embedding model.

        Example:
            >>> searcher.search("red summer dress", top_k=3)  # doctest: +SKIP
            >>> searcher.search(image="photo.jpg", search_mode="image")  # doctest: +SKIP
            >>> searcher.search("in green", image="photo.jpg", fusion="rrf")  # doctest: +SKIP
            >>> hits = searcher.search("descaling", search_mode="video")  # doctest: +SKIP
            >>> hits[0].product_id, hits[0].segment_start, hits[0].segment_end  # doctest: +SKIP
            ('P-KETTLE', 80.0, 85.0)
        """
        self._validate_search(text, image, search_mode, top_k, filter, text_weight, fusion)
        purpose = _QUERY_PURPOSE.get(search_mode, EmbeddingPurpose.GENERIC_RETRIEVAL)

        # A part with weight 0 cannot change the ranking: it is not embedded at all.
        vectors: list[tuple[Vector, float]] = []
        if text is not None and (image is None or text_weight > 0):
            vec = self._embedder.embed_text(text, purpose=purpose)
            vectors.append((_unit(vec), text_weight if image is not None else 1.0))
        if image is not None and (text is None or text_weight < 1):
            vec = self._embedder.embed_image(image, purpose=purpose)
            vectors.append((_unit(vec), 1.0 - text_weight if text is not None else 1.0))

        if fusion == "mean" or len(vectors) == 1:
            query = vectors[0][0]
            if len(vectors) == 2:
                query = _weighted_mean(vectors[0][0], vectors[1][0], vectors[0][1])
            best = self._grouped(query, search_mode, filter, top_k)
            results = [self._result(m, m.similarity) for m in best]
            return results[:top_k]

        # Reciprocal rank fusion over the per-part product rankings.
        scores: dict[str, float] = {}
        chosen: dict[str, tuple[float, _Match]] = {}
        for vec, weight in vectors:
            for rank, match in enumerate(self._grouped(vec, search_mode, filter, top_k), 1):
                term = weight / (_RRF_K + rank)
                scores[match.product_id] = scores.get(match.product_id, 0.0) + term
                if match.product_id not in chosen or term > chosen[match.product_id][0]:
                    chosen[match.product_id] = (term, match)
        order = sorted(scores, key=lambda pid: (-scores[pid], chosen[pid][1].distance, pid))
        return [self._result(chosen[pid][1], scores[pid]) for pid in order[:top_k]]

    def explain_no_results(
        self, *, search_mode: SearchMode = "combined", filter: Filter | None = None
    ) -> str:
        """Why a search in ``search_mode`` with ``filter`` found nothing, in one line a person
        can act on: the store holds no vectors of that kind, or no product has a key the
        filter names (with the closest key that exists), or no product matches it. Two store
        queries, no embedding call.

        Example:
            >>> searcher.explain_no_results(filter={"colour": "red"})  # doctest: +SKIP
            "no combined vector has metadata key 'colour' (did you mean 'color'?); ..."
        """
        probe = np.zeros(self._store.dimension, dtype=np.float32)
        probe[0] = 1.0
        sample = self._store.query(
            probe, top_k=_MAX_TOP_K, filter=self._query_filter(search_mode, None)
        )
        if not sample:
            return _no_vectors_hint(search_mode)
        if not filter:
            return f"the store holds {search_mode} vectors, but none came back for this query"
        seen = {k for m in sample for k in m.metadata if k not in RESERVED_METADATA_KEYS}
        named = sorted(_filter_keys(filter) - RESERVED_METADATA_KEYS)
        unknown = [k for k in named if k not in seen]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(seen), n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            keys = ", ".join(sorted(seen)[:12]) or "none"
            return (
                f"no {search_mode} vector has metadata key {key!r}{guess}; keys seen on "
                f"products: {keys}"
            )
        return f"no {search_mode} vector matches the filter {json.dumps(filter)[:200]}"

    def _validate_search(
        self,
        text: object,
        image: object,
        search_mode: object,
        top_k: object,
        filter: object,
        text_weight: object,
        fusion: object,
    ) -> None:
        if text is None and image is None:
            raise InvalidInputError("give a query text, an image, or both")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise InvalidInputError("the query text must be a non-empty string")
        if isinstance(image, str | os.PathLike) and not _is_s3(image):
            path = Path(os.fspath(image))
            if not path.is_file():
                raise UnsupportedMediaError(f"image file not found: {path}")
        elif isinstance(image, bytes | bytearray) and not image:
            raise UnsupportedMediaError("the query image is empty")
        if search_mode not in _SEARCH_MODES:
            raise InvalidInputError(
                f"search_mode must be one of {', '.join(_SEARCH_MODES)}; got {search_mode!r}"
            )
        if fusion not in _FUSIONS:
            raise InvalidInputError(f"fusion must be one of {', '.join(_FUSIONS)}; got {fusion!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= _MAX_TOP_K:
            raise InvalidInputError(f"top_k must be an int in 1..{_MAX_TOP_K}, got {top_k!r}")
        if not _is_weight(text_weight):
            raise InvalidInputError(f"text_weight must be a number in [0, 1], got {text_weight!r}")
        if filter is not None:
            if not isinstance(filter, Mapping):
                raise InvalidInputError(
                    f"filter must be a mapping (JSON object), got {type(filter).__name__}"
                )
            validate_filter(filter, non_filterable=self._store.non_filterable_metadata_keys)

    @staticmethod
    def _query_filter(search_mode: str, user_filter: Filter | None) -> Filter:
        type_filter: dict[str, object]
        if search_mode == "all":
            type_filter = {"type": {"$in": list(_VECTOR_TYPES)}}
        else:
            type_filter = {"type": {"$eq": search_mode}}
        if not user_filter:
            return type_filter
        return {"$and": [type_filter, dict(user_filter)]}

    def _similarity(self, distance: float) -> float:
        if self._store.distance_metric == "euclidean":
            return 1.0 - distance * distance / 2.0
        return 1.0 - distance

    def _grouped(
        self, query: Vector, search_mode: str, user_filter: Filter | None, top_k: int
    ) -> list[_Match]:
        """Products closest to ``query`` (each at its best vector), best first: at least the
        ``top_k`` closest when that many match.

        One store query is enough when it returns ``top_k`` distinct products or every matching
        vector. Where products have several vectors (mode ``all``, segments) the store's topK
        cap of 100 can hold fewer than ``top_k`` products; then each vector type is queried on
        its own, and for segment types again with the products already found excluded
        (``product_id $nin``), until ``top_k`` products are known or the type is exhausted.
        A product found in a query has its best vector of that type in it, so the merge by
        best distance is exact.
        """
        per_product = 3 if search_mode == "all" else 4 if search_mode in _MEDIA_TYPES else 1
        query_filter = self._query_filter(search_mode, user_filter)
        fetch = min(_MAX_TOP_K, max(top_k, top_k * per_product * 2))
        best: dict[str, _Match] = {}
        while True:
            matches = self._store.query(query, top_k=fetch, filter=query_filter)
            self._merge(matches, best)
            if len(best) >= top_k or len(matches) < fetch:
                return self._ranked(best)
            if fetch >= _MAX_TOP_K:
                break
            fetch = min(_MAX_TOP_K, fetch * 2)
        types = _VECTOR_TYPES if search_mode == "all" else (search_mode,)
        for vtype in types:
            found: set[str] = set()
            while len(found) < top_k:
                type_filter: Filter = self._query_filter(vtype, user_filter)
                if found:
                    exclude = {"product_id": {"$nin": sorted(found)}}
                    type_filter = {"$and": [type_filter, exclude]}
                matches = self._store.query(query, top_k=_MAX_TOP_K, filter=type_filter)
                seen = self._merge(matches, best)
                if len(matches) < _MAX_TOP_K or seen <= found:
                    break
                found |= seen
        return self._ranked(best)

    def _merge(self, matches: Sequence[QueryMatch], best: dict[str, _Match]) -> set[str]:
        """Keep each product's closest match in ``best``; return the products seen."""
        seen: set[str] = set()
        for m in matches:
            md = dict(m.metadata)
            model = md.get("embedding_model")
            if model is not None and model != self._embedder.model_id:
                raise ConfigurationError(
                    f"the store holds vectors embedded with {model!r} but queries are "
                    f"embedded with {self._embedder.model_id!r}; their similarities are "
                    "meaningless. Search with the embedder that built the index, or re-index."
                )
            pid = str(md.get("product_id", m.key))
            seen.add(pid)
            if pid not in best or m.distance < best[pid].distance:
                best[pid] = _Match(pid, m.key, m.distance, self._similarity(m.distance), md)
        return seen

    @staticmethod
    def _ranked(best: Mapping[str, _Match]) -> list[_Match]:
        return sorted(best.values(), key=lambda x: (x.distance, x.product_id))

    @staticmethod
    def _result(match: _Match, score: float) -> SearchResult:
        md = match.metadata
        vtype = md.get("type")
        unit = md.get("segment_unit")
        return SearchResult(
            product_id=match.product_id,
            text=str(md.get("text", "")),
            image_path=_opt_str(md.get("image_path")),
            similarity=match.similarity,
            distance=match.distance,
            matched_type=vtype if vtype in _VECTOR_TYPES else "combined",
            score=score,
            key=match.key,
            metadata=_product_metadata(md),
            segment_start=_opt_float(md.get("segment_start")),
            segment_end=_opt_float(md.get("segment_end")),
            segment_unit=_segment_unit(unit),
            source_uri=_opt_str(md.get("source_uri")),
        )


@dataclass(frozen=True)
class _Match:
    product_id: str
    key: str
    distance: float
    similarity: float
    metadata: dict[str, MetadataValue]


@dataclass
class _Embedding:
    """One product being embedded in an ``index`` run: the vectors it has so far."""

    plan: _Plan
    vectors: dict[ProductVectorType, Vector] = field(default_factory=dict)
    jobs: dict[ProductVectorType, Future[Vector]] = field(default_factory=dict)
    rounds: int = 0
    # The run's pause epoch when each call started: a failure from before the last pause
    # was answered by that pause already.
    epochs: dict[ProductVectorType, int] = field(default_factory=dict)
    # The transient error that deferred it to a later round, if any.
    deferred_by: tuple[ProductVectorType, CrossmodalSearchError] | None = None

    def missing(self) -> list[ProductVectorType]:
        wanted: list[ProductVectorType] = []
        if "text" in self.plan.expected:
            wanted.append("text")
        if self.plan.image_input is not None:
            wanted.append("image")
        return [part for part in wanted if part not in self.vectors]


class _Run:
    """The mutable state of one ``index`` call: buffer, counters, failures and the policy's
    bookkeeping (failures in a row, pauses)."""

    def __init__(
        self, searcher: CrossmodalSearcher, total: int, progress: ProgressCallback | None
    ) -> None:
        self._s = searcher
        self._policy = searcher._policy
        self._total = total
        self._progress = progress
        self._done = 0
        self._buffer: list[VectorRecord] = []
        self._stale: list[str] = []
        self._store_failed = False
        self._lock = threading.Lock()
        self._embed_calls = 0
        self.indexed = 0
        self.skipped = 0
        self.written = 0
        self.deleted = 0
        self.pruned = 0
        self.failed: list[ItemFailure] = []
        # Products with embedding calls submitted and not yet settled (drained on a stop), and
        # products waiting for a later round (reported as retryable failures on a stop).
        self._open: list[_Embedding] = []
        self._deferred: list[_Embedding] = []
        # No call starts while the gate is closed (a pause through a throttling storm).
        self._gate = threading.Event()
        self._gate.set()
        self._same_code: tuple[str, int] = ("", 0)
        self._transient_in_row = 0
        self._next_pause = self._policy.pause_seconds
        self._paused = 0.0
        self._epoch = 0

    def _tick(self) -> None:
        self._done += 1
        if self._progress is not None:
            self._progress(self._done, self._total)

    def _call(self, item: _Embedding, part: ProductVectorType) -> Vector:
        self._gate.wait()
        with self._lock:
            self._embed_calls += 1
            item.epochs[part] = self._epoch
        if part == "text":
            return self._s._embed_text(item.plan.product.text)
        assert item.plan.image_input is not None
        return self._s._embed_image(item.plan.image_input)

    def _submit(self, item: _Embedding, pool: ThreadPoolExecutor) -> None:
        item.rounds += 1
        item.jobs = {part: pool.submit(self._call, item, part) for part in item.missing()}
        self._open.append(item)

    def window(self, plans: Sequence[_Plan], pool: ThreadPoolExecutor) -> None:
        """Settle every plan of a window: write, skip, fail, or embed (retrying products that
        met transient errors, in later rounds of the same window)."""
        embedding = {id(p): _Embedding(p) for p in plans if p.action == "embed"}
        for item in embedding.values():
            self._submit(item, pool)
        deferred: list[_Embedding] = []
        for plan in plans:
            current = embedding.get(id(plan))
            if current is None:
                self._settle_plan(plan)
            elif not self._settle(current):
                deferred.append(current)
                continue
            self._tick()
            self.flush(final=False)
        while deferred:
            for item in deferred:
                self._submit(item, pool)
            retry, deferred = deferred, []
            for item in retry:
                if self._settle(item):
                    self._tick()
                    self.flush(final=False)
                else:
                    deferred.append(item)

    def _settle_plan(self, plan: _Plan) -> None:
        """A product that needs no embedding call: failed, unchanged or metadata-only."""
        pid = plan.product.product_id
        if plan.action == "fail":
            assert plan.failure is not None
            self.failed.append(plan.failure)
            logger.info("not indexed: %s: %s", pid, plan.failure.reason)
        elif plan.action == "skip":
            self.skipped += 1
            self._stale.extend(plan.stale)
        else:  # rewrite: same embedding inputs, new metadata
            pairs = ((t, plan.stored[_key(t, pid)]) for t in plan.expected)
            self._buffer.extend(VectorRecord(r.key, r.vector, plan.metadata[t]) for t, r in pairs)
            self._stale.extend(plan.stale)
            self.indexed += 1

    def _settle(self, item: _Embedding) -> bool:
        """Wait for a product's calls. True when it is settled (buffered or failed); False
        when it met a transient error and is tried again in a later round."""
        error: tuple[ProductVectorType, CrossmodalSearchError] | None = None
        for part, fut in item.jobs.items():
            try:
                item.vectors[part] = fut.result()
            except _INPUT_ERRORS as exc:
                error = error if error is not None and _is_input(error[1]) else (part, exc)
            except ServiceError as exc:
                error = error or (part, exc)
        self._open.remove(item)
        if item.deferred_by is not None:
            self._deferred.remove(item)
            item.deferred_by = None
        pid = item.plan.product.product_id
        if error is None:
            self._buffer.extend(self._s._records(item.plan, item.vectors))
            self._stale.extend(item.plan.stale)
            self.indexed += 1
            self._same_code, self._transient_in_row = ("", 0), 0
            self._next_pause = self._policy.pause_seconds
            return True
        part, cause = error
        transient = isinstance(cause, RetryExhaustedError | TransientServiceError)
        if transient:
            with self._lock:
                fresh = item.epochs.get(part, self._epoch) == self._epoch
            if fresh:
                self._transient_in_row += 1
            if self._transient_in_row >= self._policy.storm_threshold:
                self._pause(cause)
            if item.rounds < self._policy.product_attempts:
                logger.info("%s met %s; trying it again later in this run", pid, _code(cause))
                item.deferred_by = (part, cause)
                self._deferred.append(item)
                return False
        self._fail(item, part, cause, transient=transient)
        return True

    def _fail(
        self,
        item: _Embedding,
        part: ProductVectorType,
        exc: CrossmodalSearchError,
        *,
        transient: bool,
    ) -> None:
        failure = _failure(item.plan.product.product_id, part, exc)
        logger.info("not indexed: %s: %s", failure.product_id, failure.reason)
        self.failed.append(failure)
        code = failure.code
        if transient or _is_input(exc) or code is None:
            return
        # The same service error for product after product concerns the service, not them.
        last, count = self._same_code
        self._same_code = (code, count + 1 if code == last else 1)
        if self._same_code[1] >= self._policy.max_consecutive_failures:
            raise IngestStoppedError(
                f"{self._same_code[1]} products in a row failed with {code} ({exc}); it "
                "concerns every product, so the run stopped. What was embedded is written: "
                "fix the cause and rerun, indexed products are skipped.",
                report=self.report(0.0),
            ) from exc

    def _pause(self, exc: CrossmodalSearchError) -> None:
        """Hold every new call for a while: the service is throttling or failing."""
        self._transient_in_row = 0
        pause = min(self._next_pause, self._policy.max_pause_seconds)
        if self._paused + pause > self._policy.pause_budget_seconds:
            raise IngestStoppedError(
                f"the service kept failing with {_code(exc)} through {self._paused:.0f} s of "
                "pauses, so the run stopped. What was embedded is written: rerun later, "
                "indexed products are skipped.",
                report=self.report(0.0),
            ) from exc
        logger.warning(
            "%s on %d products in a row: pausing new embedding calls for %.1f s",
            _code(exc),
            self._policy.storm_threshold,
            pause,
        )
        with self._lock:
            self._epoch += 1
        self._gate.clear()
        try:
            self._policy.sleep(pause)
        finally:
            self._gate.set()
        self._paused += pause
        self._next_pause = pause * 2

    def _put(self, records: list[VectorRecord]) -> None:
        try:
            self._s.store.put(records)
        except BaseException:
            self._store_failed = True
            raise
        self.written += len(records)

    def flush(self, *, final: bool) -> None:
        size = self._s._batch_size
        while len(self._buffer) >= size or (final and self._buffer):
            batch, self._buffer = self._buffer[:size], self._buffer[size:]
            self._put(batch)
        if final or len(self._stale) >= size:
            while self._stale:
                batch_keys, self._stale = self._stale[:size], self._stale[size:]
                self._s.store.delete(batch_keys)
                self.deleted += len(batch_keys)

    def abort(self, pool: ThreadPoolExecutor) -> None:
        """Stop embedding; keep what was already embedded unless the store itself failed.

        Products whose calls all finished are written too: their embeddings were paid for.
        """
        self._gate.set()  # threads held by a pause must not hold up the shutdown
        for item in self._open:
            for fut in item.jobs.values():
                fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        for item in list(self._open):
            jobs = item.jobs.values()
            if all(f.done() and not f.cancelled() and f.exception() is None for f in jobs):
                item.vectors.update((part, fut.result()) for part, fut in item.jobs.items())
                if not item.missing():
                    self._buffer.extend(self._s._records(item.plan, item.vectors))
                    self._stale.extend(item.plan.stale)
                    self.indexed += 1
                    if item.deferred_by is not None:
                        self._deferred.remove(item)
        self._open.clear()
        # Products that met transient errors and were waiting for another round.
        self.failed.extend(
            _failure(item.plan.product.product_id, *item.deferred_by)
            for item in self._deferred
            if item.deferred_by is not None
        )
        self._deferred.clear()
        if self._store_failed or not self._buffer:
            return
        try:
            self.flush(final=True)
        except Exception:  # the original error is what the caller needs to see
            logger.warning("could not write embedded vectors while aborting", exc_info=True)

    def report(self, seconds: float) -> IngestReport:
        return IngestReport(
            indexed=self.indexed,
            skipped_unchanged=self.skipped,
            failed=list(self.failed),
            vectors_written=self.written,
            vectors_deleted=self.deleted,
            embed_calls=self._embed_calls,
            seconds=seconds,
            pruned=self.pruned,
        )


def _failure(product_id: str, part: ProductVectorType, exc: CrossmodalSearchError) -> ItemFailure:
    return ItemFailure(
        product_id=product_id,
        kind="image" if part == "image" else "text",
        reason=f"{type(exc).__name__}: {exc}",
        code=_code(exc),
        request_id=getattr(exc, "request_id", None),
        retryable=not _is_input(exc),
    )


def _is_input(exc: BaseException) -> bool:
    return isinstance(exc, _INPUT_ERRORS)


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) and code else None


_SEGMENT_KEY = re.compile(r"(video|audio|document)-(.+)-(\d+)")


def _key_products(key: str) -> tuple[str, ...]:
    """The product ids a key written by the searcher can belong to (none for other keys).

    ``video-{id}-audio-{i}`` (a separate audio vector) is ambiguous with a product id ending in
    ``-audio``: both readings are returned, the usual one last.
    """
    for vtype in _PRODUCT_TYPES:
        if key.startswith(f"{vtype}-") and len(key) > len(vtype) + 1:
            return (key[len(vtype) + 1 :],)
    match = _SEGMENT_KEY.fullmatch(key)
    if match is None:
        return ()
    rest = match.group(2)
    if match.group(1) == "video" and rest.endswith("-audio") and len(rest) > len("-audio"):
        return (rest, rest[: -len("-audio")])
    return (rest,)


def _no_vectors_hint(search_mode: str) -> str:
    if search_mode in _MEDIA_TYPES:
        return (
            f"the store holds no {search_mode} segments: index products' {search_mode} with "
            "index_media (CLI: crossmodal index --media-s3-uri s3://...; local PDF documents "
            "are indexed by crossmodal index)"
        )
    return (
        f"the store holds no {search_mode} vectors written by crossmodal-search: index a "
        "catalog first (crossmodal index)"
    )


def _filter_keys(filter: Mapping[str, object]) -> set[str]:
    """The metadata keys a filter names (operators and ``$and``/``$or`` looked through)."""
    keys: set[str] = set()
    for key, value in filter.items():
        if key in ("$and", "$or") and isinstance(value, list):
            for part in value:
                if isinstance(part, Mapping):
                    keys |= _filter_keys(part)
        elif not key.startswith("$"):
            keys.add(key)
    return keys


def _is_tag_key(key: str) -> bool:
    # The keys evaluation.tag_products writes (TAGS_KEY and GROUP_KEY_PREFIX there; the search
    # layer cannot import evaluation).
    return key == "tags" or key.startswith("tag_")


def _is_weight(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _segment_unit(value: object) -> SegmentUnit | None:
    if value == "seconds" or value == "chars" or value == "pages":
        return value
    return None


def _opt_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _product_metadata(md: Mapping[str, MetadataValue]) -> dict[str, MetadataValue]:
    return {k: v for k, v in md.items() if k not in RESERVED_METADATA_KEYS}
