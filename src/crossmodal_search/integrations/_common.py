"""What the LangChain and LlamaIndex retrievers share: the query, the settings, the metadata."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from crossmodal_search._types import Filter
from crossmodal_search.embeddings import ImageInput
from crossmodal_search.errors import InvalidInputError
from crossmodal_search.search import (
    DEFAULT_LEXICAL_WEIGHT,
    CrossmodalSearcher,
    Fusion,
    SearchMode,
    SearchResult,
)
from crossmodal_search.stores import validate_filter

__all__ = [
    "MAX_TOP_K",
    "CrossmodalQuery",
    "SearchSettings",
    "as_query",
    "page_content",
    "result_metadata",
]

#: S3 Vectors answers at most 100 matches per query.
MAX_TOP_K = 100
_QUERY_KEYS = frozenset({"text", "image", "filter"})


@dataclass(frozen=True, slots=True)
class CrossmodalQuery:
    """A query for a retriever: a text, a photo or both, and a filter for this query alone.

    Attributes:
        text: What the user describes.
        image: A photo: bytes, a local path, an ``s3://`` URI or a Pillow image.
        filter: A metadata filter (S3 Vectors filter language), AND-ed with the retriever's.

    Raises:
        InvalidInputError: neither a text nor an image, or a filter outside the language.
    """

    text: str | None = None
    image: ImageInput | None = None
    filter: Filter | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.text is not None and not isinstance(self.text, str):
            raise InvalidInputError(f"text must be a string, got {type(self.text).__name__}")
        text = self.text.strip() if self.text else None
        object.__setattr__(self, "text", text or None)
        if self.text is None and self.image is None:
            raise InvalidInputError("give a text, an image, or both")
        if self.filter is not None:
            validate_filter(self.filter)


def as_query(value: object) -> CrossmodalQuery:
    """A retriever's input as a :class:`CrossmodalQuery`: a string is a text query, a mapping
    holds ``text``, ``image`` and ``filter`` (any of them)."""
    if isinstance(value, CrossmodalQuery):
        return value
    if isinstance(value, str):
        return CrossmodalQuery(text=value)
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in _QUERY_KEYS)
        if unknown:
            raise InvalidInputError(
                f"unknown query keys {unknown}; a query holds 'text', 'image' and 'filter'"
            )
        return CrossmodalQuery(
            text=value.get("text"), image=value.get("image"), filter=value.get("filter")
        )
    raise InvalidInputError(
        "a query is a string, a CrossmodalQuery or a mapping with 'text', 'image' and "
        f"'filter'; got {type(value).__name__}"
    )


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """How a retriever searches: what :meth:`CrossmodalSearcher.search` takes besides the query.

    Checked when the retriever is built, so a typo fails there rather than at the first query.
    """

    search_mode: SearchMode = "combined"
    top_k: int = 5
    filter: Filter | None = None
    text_weight: float = 0.5
    fusion: Fusion = "mean"
    hybrid: bool | None = None
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT

    def __post_init__(self) -> None:
        if self.search_mode not in get_args(SearchMode):
            raise InvalidInputError(
                f"search_mode must be one of {list(get_args(SearchMode))}, got {self.search_mode!r}"
            )
        if self.fusion not in get_args(Fusion):
            raise InvalidInputError(
                f"fusion must be one of {list(get_args(Fusion))}, got {self.fusion!r}"
            )
        top_k = self.top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidInputError(f"top_k must be an int in 1..{MAX_TOP_K}, got {top_k!r}")
        weight = self.text_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise InvalidInputError(f"text_weight must be a number in [0, 1], got {weight!r}")
        if not (math.isfinite(weight) and 0.0 <= weight <= 1.0):
            raise InvalidInputError(f"text_weight must be a number in [0, 1], got {weight!r}")
        if self.hybrid not in (None, True, False):
            raise InvalidInputError(f"hybrid must be None, True or False, got {self.hybrid!r}")
        lexical = self.lexical_weight
        if (
            isinstance(lexical, bool)
            or not isinstance(lexical, int | float)
            or not (math.isfinite(lexical) and 0.0 <= lexical <= 1.0)
        ):
            raise InvalidInputError(f"lexical_weight must be a number in [0, 1], got {lexical!r}")
        if self.filter is not None:
            validate_filter(self.filter)

    def search(self, searcher: CrossmodalSearcher, query: CrossmodalQuery) -> list[SearchResult]:
        """Run ``query`` with these settings (its filter AND-ed with theirs)."""
        return searcher.search(
            query.text,
            query.image,
            search_mode=self.search_mode,
            top_k=self.top_k,
            filter=_both(self.filter, query.filter),
            text_weight=self.text_weight,
            fusion=self.fusion,
            hybrid=self.hybrid,
            lexical_weight=self.lexical_weight,
        )


def _both(first: Filter | None, second: Filter | None) -> Filter | None:
    parts = [dict(f) for f in (first, second) if f]
    if len(parts) < 2:
        return parts[0] if parts else None
    return {"$and": parts}


def page_content(result: SearchResult) -> str:
    """The text a language model reads for a result: its title, then its description."""
    text = result.text.strip()
    if not text or text.startswith(result.title):
        return text or result.title
    return f"{result.title}\n\n{text}"


def result_metadata(result: SearchResult) -> dict[str, Any]:
    """A result's metadata for a framework's document or node.

    The product's own metadata (``brand``, ``color``, ...), then the result's fields, which win
    over a product key of the same name: ``product_id``, ``title``, ``similarity`` (to the whole
    query), ``part_similarities``, ``score`` (what ranked it), ``distance``, ``matched_type``,
    ``key`` (the matched vector), ``image_path`` (local path or ``s3://`` URI, or ``None``),
    ``matched_by`` (``vector``, ``words`` or ``both``), and for a product its words found,
    ``word_scores`` and ``matched_words``;
    for a segment hit also ``segment_start``, ``segment_end``, ``segment_unit``,
    ``segment_label``, ``page`` (PDF pages) and ``source_uri``.
    """
    metadata: dict[str, Any] = {
        key: list(value) if isinstance(value, list) else value
        for key, value in result.metadata.items()
    }
    metadata.update(
        product_id=result.product_id,
        title=result.title,
        similarity=result.similarity,
        part_similarities=dict(result.part_similarities),
        score=result.score,
        distance=result.distance,
        matched_type=result.matched_type,
        key=result.key,
        image_path=result.image_path,
        matched_by=result.matched_by,
    )
    if result.word_scores:
        metadata.update(
            word_scores=dict(result.word_scores), matched_words=list(result.matched_words)
        )
    if result.segment_unit is not None:
        metadata.update(
            segment_start=result.segment_start,
            segment_end=result.segment_end,
            segment_unit=result.segment_unit,
            segment_label=result.segment_label(),
            page=result.page,
            source_uri=result.source_uri,
        )
    return metadata
