"""What the searcher returns: search results, product views and ingestion reports."""

from __future__ import annotations

from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from crossmodal_search._types import MetadataValue
from crossmodal_search.errors import IngestError
from crossmodal_search.search._schema import SegmentUnit, VectorType

__all__ = [
    "CostEstimate",
    "FailureKind",
    "IngestReport",
    "IngestStoppedError",
    "ItemFailure",
    "MatchedBy",
    "ProductView",
    "QueryPart",
    "SearchResult",
    "VariantMatch",
]

#: The parts of a query: what the shopper typed and the photo.
QueryPart: TypeAlias = Literal["text", "image"]
#: What found a product: its vector's closeness, the query's words (full-text), or both.
MatchedBy: TypeAlias = Literal["vector", "words", "both"]
#: What failed for a product that could not be indexed.
FailureKind: TypeAlias = Literal["input", "text", "image", "metadata", "video", "audio", "document"]


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


class VariantMatch(BaseModel):
    """Another member of a hit's variant group that the query also found (``collapse="variant"``).

    Attributes:
        product_id: The member.
        title: Its title.
        similarity: Its similarity to the query (as :attr:`SearchResult.similarity`).
        score: What would have ranked it (as :attr:`SearchResult.score`).
    """

    model_config = ConfigDict(frozen=True)

    product_id: str
    title: str
    similarity: float
    score: float


class SearchResult(BaseModel):
    """One product found by :meth:`CrossmodalSearcher.search` (its best-matching vector).

    Three numbers, each with one meaning in every search mode and fusion:

    * ``similarity``: how close the matched vector is to the query *as a whole* (the normalised
      weighted mean of its text and photo vectors, whatever the fusion): the cosine similarity
      on a cosine store, ``1 - d**2 / 2`` (the cosine of unit vectors) on a Euclidean one;
    * ``part_similarities``: the same for each part of the query alone (``{"text": 0.41,
      "image": 0.73}``), so a person sees why the product came up;
    * ``score``: what ranked it: the similarity for ``fusion="mean"``, the weighted
      reciprocal-rank score (``sum of weight / (60 + rank)`` over the parts) for ``"rrf"``;
      in a hybrid search, the fusion of the meaning and words rankings
      (``(1 - w) / (60 + rank) + w / (60 + rank)``, ``w`` the lexical weight).

    A hybrid search also says what found each product: ``matched_by`` (``"vector"``,
    ``"words"`` or ``"both"``), ``word_scores`` (the raw BM25 score per full-text field it
    matched) and ``matched_words`` (the query's words found in it).

    Attributes:
        product_id: The product.
        title: Its title (or the first line of its text, for products indexed without one).
        text: Its description as indexed.
        image_path: Its image (local path or ``s3://`` URI) as indexed, if any.
        similarity: See above. Higher is closer.
        part_similarities: See above (one entry for a text-only or photo-only query).
        distance: The store metric's distance between the matched vector and the whole query:
            lower is closer (``similarity`` is derived from it).
        score: See above; results are sorted by it.
        matched_type: Which stored vector matched best: ``text``, ``image``, ``combined``, or a
            segment of the product's ``video``, ``audio`` or ``document``.
        key: The matched vector's key.
        matched_by: ``"vector"`` (always, outside hybrid search), ``"words"`` or ``"both"``.
        word_scores: BM25 score per full-text field the query's words matched (hybrid only).
        matched_words: The query's words found in the product's full-text fields, as typed.
        metadata: The product's own metadata (the searcher's bookkeeping keys removed).
        segment_start: For a segment hit: where the segment starts, in ``segment_unit``
            (zero-based: PDF page ``i`` spans ``i`` to ``i + 1``).
        segment_end: For a segment hit: where it ends (exclusive), in ``segment_unit``.
        segment_unit: ``"seconds"`` (video, audio), ``"chars"`` (text documents) or
            ``"pages"`` (PDF documents); ``None`` for text, image and combined hits.
        source_uri: For a segment hit: the media file (``s3://`` URI, or ``file://`` for a
            local PDF).
        variant_group: The product's variant group (:attr:`Product.variant_group`), if any.
        variants: With ``collapse="variant"``: the other members of its group the query found,
            best first (this hit is the group's best); empty otherwise.
        matched_image: For an image hit: the photo (path or URI) whose vector matched, the
            main one or one of ``Product.images``; ``None`` when no image vector matched.
    """

    model_config = ConfigDict(frozen=True)

    product_id: str
    title: str = ""
    text: str
    image_path: str | None
    similarity: float
    part_similarities: dict[QueryPart, float] = Field(default_factory=dict)
    distance: float
    matched_type: VectorType
    score: float
    key: str
    matched_by: MatchedBy = "vector"
    word_scores: dict[str, float] = Field(default_factory=dict)
    matched_words: list[str] = Field(default_factory=list)
    metadata: dict[str, MetadataValue]
    segment_start: float | None = None
    segment_end: float | None = None
    segment_unit: SegmentUnit | None = None
    source_uri: str | None = None
    variant_group: str | None = None
    variants: tuple[VariantMatch, ...] = ()
    matched_image: str | None = None

    @model_validator(mode="after")
    def _default_title(self) -> SearchResult:
        if not self.title:
            first = self.text.strip().split("\n", 1)[0].strip()
            object.__setattr__(self, "title", first or self.product_id)
        return self

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
    title: str
    text: str
    image_path: str | None
    metadata: dict[str, MetadataValue]
    vector_types: list[VectorType]
    content_hash: str | None
    embedding_model: str | None
    variant_group: str | None = None
