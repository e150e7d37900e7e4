"""What the MCP tools answer (their output schemas): compact, for an agent to read and act on."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, Field

from crossmodal_search.search import Fusion, MatchedBy, SearchMode, VectorType

__all__ = [
    "FilterKey",
    "FilterKeysOutput",
    "Hit",
    "ImageSource",
    "ProductOutput",
    "QueryEcho",
    "SearchOutput",
]

#: How a query photo was given.
ImageSource: TypeAlias = Literal["image_path", "image_base64", "image_uri"]
#: Operators of the filter language, for the agent building a filter.
FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
#: Filters in the language, shown by ``list_filter_keys``.
FILTER_EXAMPLES: tuple[dict[str, Any], ...] = (
    {"color": "green"},
    {"price": {"$lt": 50}},
    {"$and": [{"product_type": "SHOES"}, {"color": {"$in": ["green", "blue"]}}]},
)


class Hit(BaseModel):
    """One product found."""

    product_id: str
    title: str
    similarity: float = Field(
        description="How close the product is to the whole query (cosine similarity; higher is "
        "closer)."
    )
    score: float = Field(
        description="What ranked it: the similarity for fusion 'mean', the reciprocal-rank "
        "score for 'rrf'; with hybrid search, the similarity and the words' BM25 fused."
    )
    part_similarities: dict[Literal["text", "image"], float] = Field(
        default_factory=dict,
        description="The similarity to each part of the query alone (why it came up).",
    )
    matched_type: VectorType = Field(description="Which stored vector matched best.")
    matched_by: MatchedBy = Field(
        default="vector",
        description="What found it: its meaning (vector), the query's words, or both.",
    )
    matched_words: list[str] = Field(
        default_factory=list, description="The query's words found in the product's text."
    )
    image: str | None = Field(
        default=None,
        description="The product photo: a path under the server's image root (usable as "
        "image_path in search_products) or an s3:// URI.",
    )
    image_url: str | None = Field(
        default=None, description="A presigned https link to an S3 photo (when enabled)."
    )
    photo_attached: bool = Field(
        default=False, description="The photo follows as image content (include_images)."
    )
    metadata: dict[str, Any] = Field(description="The product's filterable attributes.")
    segment: str | None = Field(
        default=None, description="Where a video/audio/document hit matched (1:05-1:10, p. 3)."
    )
    source: str | None = Field(default=None, description="The media file of a segment hit.")


class QueryEcho(BaseModel):
    """The query as the server understood it."""

    text: str | None = None
    image: ImageSource | None = Field(default=None, description="How the photo was given.")
    product_id: str | None = None
    mode: SearchMode
    fusion: Fusion | None = None
    text_weight: float | None = None
    top_k: int
    hybrid: bool | None = None
    lexical_weight: float | None = None
    filter: dict[str, Any] | None = None


class SearchOutput(BaseModel):
    """Products found, best first."""

    results: list[Hit]
    query: QueryEcho
    note: str | None = Field(
        default=None, description="Why nothing was found, when nothing was (what to change)."
    )


class ProductOutput(BaseModel):
    """One product as stored."""

    product_id: str
    title: str
    text: str
    image: str | None = None
    image_url: str | None = None
    photo_attached: bool = False
    metadata: dict[str, Any]
    vector_types: list[VectorType] = Field(description="Which vectors of the product are stored.")


class FilterKey(BaseModel):
    """One metadata key products can be filtered on."""

    key: str
    types: list[str] = Field(
        description="JSON types seen: string, number, boolean, 'list of string', ..."
    )
    products: int = Field(description="Sampled products that have this key.")
    examples: list[str | int | float | bool] = Field(
        description="The most common values in the sample (list items counted one by one)."
    )
    minimum: float | None = Field(default=None, description="Smallest number in the sample.")
    maximum: float | None = Field(default=None, description="Largest number in the sample.")


class FilterKeysOutput(BaseModel):
    """The filterable metadata keys, from a sample of the store."""

    keys: list[FilterKey]
    sampled_products: int
    complete: bool = Field(description="True when the sample is the whole store.")
    operators: list[str] = Field(default_factory=lambda: list(FILTER_OPERATORS))
    examples: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(example) for example in FILTER_EXAMPLES],
        description="Filters in the language (a list-valued key matches when any item does).",
    )
