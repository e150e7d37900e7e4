"""Request and response models of the JSON API (they make up the OpenAPI description)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crossmodal_search.search import (
    DEFAULT_LEXICAL_WEIGHT,
    Collapse,
    Fusion,
    MatchedBy,
    SearchMode,
    SegmentUnit,
    VariantMatch,
    VectorType,
)

#: Longest query text accepted; longer input is refused with 422 before any embedding call.
MAX_QUERY_CHARS = 8192
#: S3 Vectors answers at most 100 matches per query.
MAX_TOP_K = 100
#: Longest ``where`` accepted (``key=value`` pairs).
MAX_WHERE_CHARS = 4096
#: Longest ``filter`` query parameter (JSON) accepted before parsing.
MAX_FILTER_PARAM_CHARS = 16 * 1024


_COLLAPSE = (
    "`product`: one hit per product; `variant`: one per variant group (the same product in "
    "other colours or sizes), its best member, the others found in `variants`; `top_k` then "
    "counts groups."
)


class SearchRequest(BaseModel):
    """JSON body of ``POST /api/search``. Give ``text``, ``image`` or both."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(
        default=None, max_length=MAX_QUERY_CHARS, description="What the shopper describes."
    )
    image: str | None = Field(
        default=None,
        description="The query photo, base64 encoded (a `data:image/...;base64,` prefix is "
        "allowed).",
    )
    mode: SearchMode = Field(
        default="combined",
        description="Which stored vectors to search; `all` searches every type and keeps each "
        "product's best match.",
    )
    fusion: Fusion = Field(
        default="mean",
        description="`mean`: one query with the weighted mean of the text and image vectors; "
        "`rrf`: one query each, rankings merged by weighted reciprocal rank.",
    )
    text_weight: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight of the text part; the image gets 1 - it."
    )
    top_k: int = Field(default=12, ge=1, le=MAX_TOP_K, description="How many products to return.")
    hybrid: bool | None = Field(
        default=None,
        description="Rank by the text's words too (BM25 over the catalog's full-text fields: "
        "brands, model numbers, sizes match exactly). `null`: when the store has full-text "
        "fields; `true`: required (422 if the store has none); `false`: vectors only.",
    )
    lexical_weight: float = Field(
        default=DEFAULT_LEXICAL_WEIGHT,
        ge=0.0,
        le=1.0,
        description="The words' share of a hybrid score: 0 ranks by meaning only, 1 by words.",
    )
    filter: dict[str, Any] | None = Field(
        default=None, description="Metadata filter in the S3 Vectors filter language."
    )
    where: str | None = Field(
        default=None,
        max_length=MAX_WHERE_CHARS,
        description="Simple filters as `key=value` pairs separated by commas or new lines; "
        "combined with `filter` by AND.",
    )
    collapse: Collapse = Field(default="product", description=_COLLAPSE)


class SimilarQuery(BaseModel):
    """Query parameters of ``GET /api/products/{product_id}/similar``."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(default=12, ge=1, le=MAX_TOP_K, description="How many products to return.")
    mode: SearchMode = Field(
        default="combined",
        description="Which stored vectors to rank: `text` or `image` (by the product's vector of "
        "that type), `combined`, a media type or `all` (by its combined vector).",
    )
    collapse: Collapse = Field(
        default="product",
        description=_COLLAPSE + " The product's own group is left out with it.",
    )
    filter: str | None = Field(
        default=None,
        max_length=MAX_FILTER_PARAM_CHARS,
        description="Metadata filter in the S3 Vectors filter language, as a JSON string.",
    )
    where: str | None = Field(
        default=None,
        max_length=MAX_WHERE_CHARS,
        description="Simple filters as `key=value` pairs; combined with `filter` by AND.",
    )


class SearchHit(BaseModel):
    """One product in the results."""

    product_id: str
    title: str
    similarity: float = Field(
        description="How close the matched vector is to the whole query (the weighted mean of its "
        "text and photo), whatever the fusion: the cosine similarity on a cosine store. Higher "
        "is closer."
    )
    part_similarities: dict[Literal["text", "image"], float] = Field(
        default_factory=dict,
        description="The same for each part of the query alone: why the product came up.",
    )
    distance: float = Field(
        description="The store metric's distance to the whole query: lower is closer."
    )
    score: float = Field(
        description="What ranked it (results are sorted by it): the similarity for `mean` "
        "fusion, the weighted reciprocal-rank score for `rrf`; in a hybrid search, "
        "`(1 - w) * similarity + w * BM25 / best BM25` (`w` the lexical weight)."
    )
    matched_type: VectorType = Field(description="Which stored vector matched best.")
    matched_by: MatchedBy = Field(
        default="vector",
        description="What found it: its vector (`vector`), the query's words (`words`), or both.",
    )
    matched_words: list[str] = Field(
        default_factory=list, description="The query's words found in the product, as typed."
    )
    word_scores: dict[str, float] = Field(
        default_factory=dict, description="BM25 score per full-text field the words matched."
    )
    image_url: str | None = Field(description="URL of the product photo, when the server has it.")
    matched_image_url: str | None = Field(
        default=None,
        description="URL of the photo whose vector matched, for an `image` hit (the main photo "
        "or another photo of the product), when the server has it: the card shows it.",
    )
    text: str
    metadata: dict[str, Any]
    segment_start: float | None = Field(
        default=None,
        description="For a `video`, `audio` or `document` hit: where the matching segment starts, "
        "in `segment_unit` (zero-based).",
    )
    segment_end: float | None = Field(
        default=None, description="Where the matching segment ends (exclusive)."
    )
    segment_unit: SegmentUnit | None = Field(
        default=None,
        description="`seconds` (video, audio), `chars` (text documents) or `pages` (PDF pages).",
    )
    page: int | None = Field(default=None, description="The one-based page of a PDF document hit.")
    segment_label: str | None = Field(
        default=None,
        description="Where the segment sits, ready to show: `1:05–1:10`, `p. 2`, `chars 0–8000`.",
    )
    source_uri: str | None = Field(
        default=None,
        description="The media file of a segment hit when it is in S3 (`s3://...`); a file on "
        "the server is not disclosed.",
    )
    source_name: str | None = Field(
        default=None, description="The media file's name (`manual.pdf`) of a segment hit."
    )
    variant_group: str | None = Field(
        default=None, description="The product's variant group (its family), if it has one."
    )
    variants: list[VariantMatch] = Field(
        default_factory=list,
        description="With `collapse=variant`: the group's other members the query found, best "
        "first.",
    )


class QueryEcho(BaseModel):
    """The query as the server understood it, so weights and modes are never silently ignored."""

    text: str | None
    has_image: bool
    mode: SearchMode
    fusion: Fusion
    text_weight: float
    top_k: int
    filter: dict[str, Any] | None
    hybrid: bool = Field(
        default=False, description="Whether the query's words were ranked (hybrid search ran)."
    )
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT
    collapse: Collapse = "product"


class SearchResponse(BaseModel):
    """Answer of ``POST /api/search``."""

    results: list[SearchHit]
    query: QueryEcho
    took_ms: float


class SimilarEcho(BaseModel):
    """The similar-products query as the server understood it."""

    product_id: str
    mode: SearchMode
    top_k: int
    filter: dict[str, Any] | None
    collapse: Collapse


class SimilarResponse(BaseModel):
    """Answer of ``GET /api/products/{product_id}/similar``: the products closest to it."""

    results: list[SearchHit]
    query: SimilarEcho
    took_ms: float


class ProductResponse(BaseModel):
    """One catalog product (``GET /api/products/{product_id}``)."""

    product_id: str
    title: str
    text: str
    image_url: str | None
    metadata: dict[str, Any]
    vector_types: list[VectorType] = Field(description="Which vectors of the product are stored.")
    variant_group: str | None = Field(default=None, description="Its variant group, if any.")


class HealthResponse(BaseModel):
    """Answer of ``GET /healthz``."""

    status: Literal["ok"] = "ok"
    version: str


class ErrorDetail(BaseModel):
    """What went wrong: ``type`` is a stable name (e.g. ``InvalidFilterError``)."""

    type: str
    message: str


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: ErrorDetail
